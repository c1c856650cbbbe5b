"""inetd.conf `host:` forms read as OpenBSD's inetd reads them (its getconfigent/skip)."""

from __future__ import annotations

from pathlib import Path

from pyxinetd.config import Configuration, Severity, load
from pyxinetd.convert import convert

CAT = "/bin/cat"


def load_inetd(tmp_path: Path, text: str) -> Configuration:
    main = tmp_path / "xinetd.conf"
    main.write_text("defaults\n{\n}\n")
    inetd = tmp_path / "inetd.conf"
    inetd.write_text(text)
    return load(str(main), inetd_compat=True, inetd_path=str(inetd))


def binds(config: Configuration) -> dict[str, tuple[str | None, int]]:
    return {s.id: (s.bind, s.origin.line) for s in config.services}


def test_host_colon_then_blank_is_the_entrys_address(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "127.0.0.1: daytime\tstream\ttcp\tnowait\troot\tinternal\n"
                                  f"[::1]:\ttime stream tcp6 nowait nobody {CAT} cat -u\n"
                                  "echo stream tcp nowait root internal\n")
    assert not [d for d in config.diagnostics
                if d.severity in (Severity.WARNING, Severity.ERROR)]
    assert binds(config) == {"daytime-stream": ("127.0.0.1", 1), "time": ("::1", 2),
                             "echo-stream": (None, 3)}
    time = config.service("time")
    assert time is not None and time.server_argv == ("cat", "-u")


def test_lone_host_with_trailing_blanks_sets_the_default(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "127.0.0.1: \t\n"
                                  "daytime stream tcp nowait root internal\n"
                                  "*:  \n"
                                  "echo stream tcp nowait root internal\n")
    assert binds(config) == {"daytime-stream": ("127.0.0.1", 2), "echo-stream": (None, 4)}


def test_lone_host_before_an_indented_line_is_that_entrys_only(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "127.0.0.2:\n"
                                  "echo stream tcp nowait root internal\n"
                                  "[::1]:\n"
                                  "\tdaytime stream tcp6 nowait root internal\n"
                                  "chargen stream tcp nowait root internal\n")
    assert binds(config) == {"echo-stream": ("127.0.0.2", 2), "daytime-stream": ("::1", 4),
                             "chargen-stream": ("127.0.0.2", 5)}
    infos = [str(d) for d in config.diagnostics if d.severity is Severity.INFO]
    assert any("inetd.conf:3: info: address for the entry of line 4 only" in m
               for m in infos), infos


def test_converter_agrees(tmp_path: Path) -> None:
    text = ("127.0.0.1: daytime stream tcp nowait root internal\n"
            "[::1]:\n\ttime stream tcp6 nowait root internal\n")
    result = convert(text)
    blocks = result.text.split("service ")[1:]
    assert len(blocks) == 2, result.text
    assert "bind            = 127.0.0.1" in blocks[0] and "bind            = ::1" in blocks[1]
    assert "# [::1]:" in result.text and "# time" not in result.text
