"""Why a script server cannot run through its #! line (pyxinetd.interpreter): the
loader warns, and a failed exec says it, instead of a bare "No such file or directory"
for a file that is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxinetd.config import load
from pyxinetd.interpreter import interpreter_problem


def script(tmp_path: Path, head: bytes) -> str:
    path = tmp_path / "chal"
    path.write_bytes(head + b"echo hi\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(("head", "problem"), [
    (b"#!/bin/sh\r\n", "its #! interpreter /bin/sh\\r does not exist; the #! line ends in a "
                       "carriage return (the file has DOS line ends)"),
    (b"#!/usr/bin/env python3\r\n", "its #! interpreter /usr/bin/env is given words ending "
                                    "in a carriage return; the #! line ends in a carriage "
                                    "return (the file has DOS line ends)"),
    (b"#! /no/such/python -u\n", "its #! interpreter /no/such/python does not exist"),
    (b"#!/etc/passwd\n", "its #! interpreter /etc/passwd is not an executable file"),
    (b"#!/etc\n", "its #! interpreter /etc is not an executable file"),
    (b"#!\n", "its #! line names no interpreter"),
])
def test_what_stops_a_script(tmp_path: Path, head: bytes, problem: str) -> None:
    assert interpreter_problem(script(tmp_path, head)) == problem


@pytest.mark.parametrize("head", [b"#!/bin/sh\n", b"#! /bin/sh -e\n", b"#!\t/bin/sh\n",
                                  b"\x7fELF", b"echo no line\n"])
def test_runnable_scripts_and_other_files_pass(tmp_path: Path, head: bytes) -> None:
    assert interpreter_problem(script(tmp_path, head)) is None


def test_an_unreadable_or_missing_file_is_not_judged(tmp_path: Path) -> None:
    assert interpreter_problem(str(tmp_path / "absent")) is None


def test_the_loader_warns_and_keeps_the_service(tmp_path: Path) -> None:
    # xinetd takes it and every exec fails: kept, with a warning at the server's line.
    server = script(tmp_path, b"#!/bin/sh\r\n")
    conf = tmp_path / "xinetd.conf"
    conf.write_text(f"service chal\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                    f"\twait = no\n\tuser = root\n\tserver = {server}\n\tport = 20931\n}}\n")
    config = load(str(conf), environ={})
    assert [s.id for s in config.services] == ["chal"]
    assert [(d.line, d.message) for d in config.diagnostics if d.severity.value == "warning"] == [
        (7, f"service chal: server {server}: its #! interpreter /bin/sh\\r does not exist; "
            "the #! line ends in a carriage return (the file has DOS line ends); every exec "
            "of it will fail")]
