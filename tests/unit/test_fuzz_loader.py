"""Fuzzing the loader: whatever the text, it answers with diagnostics, never a crash.

Two sources of input: random text made of the configuration language's own pieces
(keywords, braces, operators, attribute names, plausible and implausible values, odd
whitespace, NUL and non-UTF-8 bytes), and corpus files mutated line by line (lines
deleted, duplicated, swapped, the file truncated, bytes flipped). For a readable main
file `load` must return a Configuration; ConfigError is allowed only because a
mutation can make an include point back at the main file or at something
unreadable, and must then carry a message. The `check` report is built from every
result as well.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxinetd.errors import ConfigError
from tests.compat.corpus import corpus_cases


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


CORPUS = [case.source for case in corpus_cases()]

ATTRIBUTES = [
    "id", "type", "flags", "disable", "socket_type", "protocol", "wait", "port", "user",
    "group", "groups", "server", "server_args", "instances", "per_source", "cps",
    "max_load", "only_from", "no_access", "access_times", "log_type", "log_on_success",
    "log_on_failure", "env", "passenv", "umask", "nice", "redirect", "bind", "interface",
    "banner", "banner_success", "banner_fail", "stderr", "deny_time", "rpc_version",
    "rpc_number",
    "rlimit_as", "rlimit_cpu", "rlimit_data", "rlimit_rss", "rlimit_stack", "rlimit_files",
    "v6only", "libwrap", "enabled", "disabled", "mdns", "FLAGS", "Socket_Type", "}", "{",
]
VALUES = [
    "stream", "dgram", "raw", "seqpacket", "rdm", "tcp", "udp", "icmp", "yes", "no", "YES",
    "nobody", "root", "0", "65534", "-1", "99999999999999999999", "UNLIMITED", "FOREVER",
    "NEVER", "50", "10", "0x10", "1.5", "0777", "0999", "/bin/cat", "/bin/true",
    "/nonexistent", "INTERNAL", "UNLISTED", "RPC", "TCPMUX", "TCPMUXPLUS", "SPECIAL",
    "IPv4", "IPv6", "REUSE", "NAMEINARGS", "SENSOR", "INTERCEPT", "LABELED", "HOST", "PID",
    "USERID", "EXIT", "DURATION", "TRAFFIC", "ATTEMPT", "RECORD", "SYSLOG", "FILE", "daemon",
    "authpriv", "local7", "info", "127.0.0.1", "10.0.0.0/8", "10.0.", "192.168.{1,2,3}",
    "::1", "::ffff:127.0.0.1/128", ".example.com", "localhost", "@netgroup", "0.0.0.0/0",
    "08:00-17:00", "24:00-25:00", "FOO=bar", "NOEQUALS", "PATH", "1k", "2M", "5x",
    "1-3", "3-1", "#", "# comment", "=", "+=", "-=", "{", "}", "\\", '"quoted"', "é",
    "\x00", "\r",
]
SEPARATORS = [" ", "\t", "  ", " \t ", ""]


@st.composite
def attribute_line(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(ATTRIBUTES))
    op = draw(st.sampled_from(["=", "+=", "-=", "==", "", "=+", "="]))
    values = draw(st.lists(st.sampled_from(VALUES), max_size=4))
    sep = draw(st.sampled_from(SEPARATORS))
    indent = draw(st.sampled_from(["", "\t", "    ", " \t"]))
    return indent + name + sep + op + sep + " ".join(values)


@st.composite
def config_text(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["service", "defaults", "include", "includedir",
                                     "garbage", "comment", "blank"]))
        if kind in ("service", "defaults"):
            head = "defaults" if kind == "defaults" else \
                f"service {draw(st.sampled_from(['echo', 'ftp', 'x', 'daytime', '', 'a b']))}"
            if draw(st.booleans()):
                head += draw(st.sampled_from([" {", " # c", "\r"]))
            parts.append(head)
            if draw(st.integers(0, 9)) > 0:
                parts.append(draw(st.sampled_from(["{", " {", "{ ", "{\r", "{ x", ""])))
            parts.extend(draw(st.lists(attribute_line(), max_size=10)))
            if draw(st.integers(0, 9)) > 0:
                parts.append(draw(st.sampled_from(["}", " }", "}\r", "} # end", "}}"])))
        elif kind in ("include", "includedir"):
            parts.append(kind + " " + draw(st.sampled_from(["SELF", "DIR", "/nonexistent",
                                                             "", "relative"])))
        elif kind == "garbage":
            parts.append(draw(st.text(max_size=40)))
        elif kind == "comment":
            parts.append("#" + draw(st.text(max_size=20).filter(lambda t: "\n" not in t)))
        else:
            parts.append(draw(st.sampled_from(["", " ", "\t", "\r"])))
    end = draw(st.sampled_from(["\n", "", "\r\n"]))
    return "\n".join(parts) + end


def _load_and_report(data: bytes, tweak_paths: bool = False) -> None:
    from pyxinetd.check import check_report, render_text
    from pyxinetd.config import Configuration, load

    with tempfile.TemporaryDirectory(prefix="pyxinetd-fuzz-") as tmp:
        main = Path(tmp) / "xinetd.conf"
        confd = Path(tmp) / "confd"
        confd.mkdir()
        if tweak_paths:
            # Self-includes and includes of the folder holding the main file: the
            # loader must notice the loop rather than recurse until it dies.
            data = (data.replace(b"SELF", str(main).encode())
                    .replace(b"DIR", str(confd).encode()))
            (confd / "again").write_bytes(b"include " + str(main).encode() + b"\n")
        main.write_bytes(data)
        try:
            config = load(str(main), environ={"PATH": "/usr/bin:/bin"})
        except ConfigError as exc:
            assert str(exc)
            return
        assert isinstance(config, Configuration)
        json.dumps(check_report(config))
        render_text(config)


@FUZZ
@given(config_text())
def test_random_configuration_text(text: str) -> None:
    _load_and_report(text.encode("utf-8", "surrogatepass"), tweak_paths=True)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _load_and_report(data)




@st.composite
def mutated_corpus_file(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from(CORPUS))
    lines = path.read_bytes().split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "truncate", "flip"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            joined = b"\n".join(lines)
            cut = draw(st.integers(0, len(joined)))
            lines = joined[:cut].split(b"\n")
        elif lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            flipped = lines[i][k] ^ draw(st.integers(1, 255))
            lines[i] = lines[i][:k] + bytes([flipped]) + lines[i][k + 1:]
    return b"\n".join(lines)


@pytest.mark.skipif(not CORPUS, reason="shared/corpus not found")
@settings(parent=FUZZ, max_examples=120)
@given(mutated_corpus_file())
def test_mutated_corpus_files(data: bytes) -> None:
    _load_and_report(data)


def test_unreadable_main_file_is_a_config_error() -> None:
    from pyxinetd.config import load

    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(ConfigError):
            load(os.path.join(tmp, "missing.conf"))
