"""Helpers for the configuration loader tests: write text to a file, load it."""

from __future__ import annotations

from pathlib import Path

from pyxinetd.config import Configuration, load
from pyxinetd.config.diagnostics import Severity

ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C"}


def load_text(tmp_path: Path, text: str, name: str = "xinetd.conf",
              environ: dict[str, str] | None = None) -> Configuration:
    path = tmp_path / name
    path.write_text(text)
    return load(str(path), environ=ENV if environ is None else environ)


def service_block(name: str = "svc", *lines: str, port: int = 20001,
                  base: bool = True) -> str:
    """A complete UNLISTED external service; `lines` are extra attribute lines.

    A base line is left out when an extra line sets the same attribute.
    """
    body = []
    if base:
        given = {line.split()[0].lower() for line in lines if line.strip()}
        body = [line for line in ("type = UNLISTED", "socket_type = stream", "protocol = tcp",
                                  "wait = no", "user = nobody", "server = /bin/cat",
                                  f"port = {port}")
                if line.split()[0] not in given]
    body.extend(lines)
    inner = "".join(f"\t{line}\n" for line in body)
    return f"service {name}\n{{\n{inner}}}\n"


def messages(config: Configuration, severity: Severity | None = None) -> list[str]:
    return [str(d) for d in config.diagnostics if severity is None or d.severity is severity]


def warnings(config: Configuration) -> list[str]:
    return messages(config, Severity.WARNING)


def errors(config: Configuration) -> list[str]:
    return messages(config, Severity.ERROR)


def dropped_reasons(config: Configuration) -> list[str]:
    return [d.reason for d in config.dropped]
