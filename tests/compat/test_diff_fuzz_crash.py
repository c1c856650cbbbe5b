"""scripts/diff-fuzz-config reports a crash of xinetd itself as one finding.

xinetd 2.3.15.3 gets SIGSEGV on some files (a TCPMUX service with neither socket_type
nor protocol): its log is then a run of `Unexpected signal` lines and it serves
nothing, which the line-by-line comparison would list as many differences.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from oracle import require_xinetd, run_xinetd_dump
from tests.scripts import load_script

pytestmark = pytest.mark.oracle

SERVICE = """\
service other
{
\ttype        = UNLISTED
\tsocket_type = stream
\tport        = 20113
\twait        = no
\tuser        = nobody
\tserver      = /bin/cat
}
"""
# xinetd dereferences the missing protocol in its TCPMUX check.
TCPMUX_WITHOUT_PROTOCOL = """\
service mux
{
\ttype        = UNLISTED TCPMUX
\twait        = no
\tuser        = nobody
\tserver      = /bin/cat
}
"""


def _fuzzer() -> ModuleType:
    return load_script("diff-fuzz-config")


def test_a_crash_of_xinetd_is_one_finding(tmp_path: Path) -> None:
    require_xinetd()
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text(TCPMUX_WITHOUT_PROTOCOL + SERVICE)
    run = run_xinetd_dump(main)
    report = {"status": 1, "services": [], "diagnostics": []}
    assert fuzz.differences(run, report, "") == [
        "xinetd crashed: signal 11 (Segmentation fault) (and exited)"]


def test_a_file_xinetd_survives_is_compared(tmp_path: Path) -> None:
    require_xinetd()
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text(SERVICE)
    run = run_xinetd_dump(main)
    assert run.started
    assert fuzz.xinetd_crash(run) is None


NAMEINARGS_LAST = SERVICE.replace("}\n", "\tserver_args = a b\n\tflags       = NAMEINARGS\n}\n")


def test_a_nameinargs_service_without_argv_is_a_crash_of_the_children(
        tmp_path: Path) -> None:
    # xinetd's dump shows no argv; pyxinetd takes argv from server_args (the manual).
    require_xinetd()
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text(NAMEINARGS_LAST)
    run = run_xinetd_dump(main)
    report = {"status": 0, "diagnostics": [], "services": [
        {"id": "other", "name": "other", "flags": ["NAMEINARGS"]}]}
    diff = "other: server_argv: xinetd [], pyxinetd ['a', 'b']"
    assert fuzz.children_crash(diff, report) == (
        "xinetd crashed in its children: service other: NAMEINARGS with no argv (flags "
        "after server_args; every client's child gets SIGSEGV)")
    assert fuzz.xinetd_crash(run) is None

    def connect(pid: int) -> None:
        # A client in xinetd's network namespace: the child forked for it crashes.
        subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c",
                        "import socket; s = socket.create_connection(('127.0.0.1', 20113), "
                        "timeout=5); s.settimeout(5); assert s.recv(1) == b''"],
                       check=True, timeout=15)

    run = run_xinetd_dump(main, after_start=connect)
    assert fuzz.xinetd_crash(run) == (
        "xinetd crashed: signal 11 (Segmentation fault) in a child it forked")
