"""xinetd's command line, side by side with the real xinetd 2.3.15.3.

Each case starts both daemons the same way (detached: no -dontfork) in fresh network,
mount and pid namespaces, and compares the exit status, stdout, the last stderr line
(the usage line, the version, the log-file failure) and whether a daemon is left
serving. Differences listed in docs/compatibility.md (pyxinetd's extra first line
naming a usage error, its name in the usage and version lines) are normalised.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_daemonize import echo_conf
from tests.oracle import require_xinetd

_RUN = r"""
ip link set lo up
cd "$1"; shift
"$@" </dev/null >out 2>err
echo "status=$?"
running() {
    # Not this script's shells (their command lines name the daemon too): a subshell
    # running this function has a pid of its own.
    for p in $(ls /proc | grep '^[0-9]*$'); do
        [ "$p" = 1 ] || [ "$p" = $$ ] && continue
        comm=""
        read -r comm < "/proc/$p/comm" 2>/dev/null
        [ "$comm" = sh ] && continue
        grep -q xinetd "/proc/$p/cmdline" 2>/dev/null && echo "running"
    done
}
# Settled: the daemon serves (`Started working`) or is gone. xinetd's parent exits
# before its child has read the configuration, let alone logged anything, and a daemon
# that logged its exit may still be on its way out (Python's teardown).
i=0
while [ -n "$(running)" ] && ! grep -q "Started working" log 2>/dev/null && [ $i -lt 100 ]
do
    sleep 0.1; i=$((i+1))
done
running
true
"""


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: str
    last_stderr_line: str
    running: bool


def start(folder: Path, command: list[str], args: tuple[str, ...]) -> Outcome:
    folder.mkdir()
    (folder / "echo.conf").write_text(echo_conf(7))
    done = subprocess.run(["unshare", "-n", "-m", "-p", "--fork", "--mount-proc",
                           "sh", "-c", _RUN, "sh", str(folder), *command, *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYXINETD_SYSLOG_SOCKET": str(folder / "no")})
    assert done.returncode == 0, done.stderr
    report = done.stdout.splitlines()
    err = (folder / "err").read_text().splitlines()
    return Outcome(status=int(report[0].removeprefix("status=")),
                   stdout=(folder / "out").read_text(),
                   last_stderr_line=err[-1] if err else "",
                   running="running" in report)


def normalise(line: str) -> str:
    """pyxinetd's name where xinetd has its own (documented in compatibility.md)."""
    line = line.replace("Usage: pyxinetd ", "Usage: xinetd ")
    line = line.replace("pyxinetd: msg_init failed: can't open log file (No such file or "
                        "directory)", "xinetd: msg_init failed: can't open log file")
    return line.replace(f"pyxinetd {_version()} (compatible with xinetd 2.3.15.3)",
                        "2.3.15.3")


def _version() -> str:
    from pyxinetd import __version__
    return __version__


LOG = ("-f", "echo.conf", "-filelog", "log")
CASES = [
    ("-version",),
    ("-f", "echo.conf", "-version", "-limit", "x"),
    (*LOG, "-limit"),
    (*LOG, "-limit", "abc"),
    (*LOG, "-limit", "5x"),
    (*LOG, "-cc", "-1"),
    (*LOG, "-logprocs", "x"),
    ("-f",),
    (*LOG, "extra"),
    (*LOG, "-syslog", "daemon"),
    ("-f", "echo.conf", "-filelog", "/nonexistent/log"),
    (*LOG, "-reuse", "-limit", "0", "-logprocs", "3", "-cc", "0", "-stayalive"),
    (*LOG, "-shutdownprocs", "5"),
    (*LOG, "-syslog"),
    # A periodic check due in 68 years: both serve (pyxinetd's loop once ended on it).
    (*LOG, "-cc", "2147483647"),
    # Beyond an unsigned long (xinetd's strtoul reports ERANGE): a usage error.
    (*LOG, "-limit", "18446744073709551616"),
    (*LOG, "-logprocs", "18446744073709551616"),
    (*LOG, "-limit", "18446744073709551615"),
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_same_outcome_as_xinetd(tmp_path: Path, args: tuple[str, ...]) -> None:
    xinetd = require_xinetd()
    theirs = start(tmp_path / "xinetd", [xinetd], args)
    ours = start(tmp_path / "pyxinetd", [sys.executable, "-m", "pyxinetd"], args)
    assert ours.status == theirs.status
    assert ours.stdout == theirs.stdout == ""
    assert normalise(ours.last_stderr_line) == theirs.last_stderr_line
    assert ours.running == theirs.running


def _levels_and_texts(log: str) -> list[str]:
    """`LEVEL: text` of each line, without the date, the pid and xinetd's file names."""
    lines = []
    for line in log.splitlines():
        text = line.split("]: ", 1)[1]
        lines.append(re.sub(r"^(\w+: )\d+ ", r"\1PID ", text))
    return lines


@pytest.mark.parametrize("name", ["missing.conf", ""])
def test_an_unreadable_configuration_is_logged_as_by_xinetd(tmp_path: Path, name: str) -> None:
    # xinetd: the reason at ERROR, then `CRITICAL: PID {init_services} couldn't get
    # configuration. Exiting...`, a line log watchers know word for word. `-f ''` names
    # no file (`open(  ) failed: No such file ...`), not the current folder.
    xinetd = require_xinetd()
    args = ("-f", name, "-filelog", "log")
    start(tmp_path / "xinetd", [xinetd], args)
    ours = start(tmp_path / "pyxinetd", [sys.executable, "-m", "pyxinetd"], args)
    theirs_log = _levels_and_texts((tmp_path / "xinetd" / "log").read_text())
    ours_log = _levels_and_texts((tmp_path / "pyxinetd" / "log").read_text())
    assert theirs_log[-1] == "CRITICAL: PID {init_services} couldn't get configuration. Exiting..."
    # Both lines word for word: `ERROR: open( missing.conf ) failed: No such file or
    # directory (errno = 2)`, then the CRITICAL line; pyxinetd names the file by its
    # absolute path (it resolves -f at start-up, so that reloads find it after chdir /).
    missing = str(tmp_path / "pyxinetd" / name) if name else "open(  )"
    assert [line.replace(missing, name or "open(  )") for line in ours_log] == theirs_log
    assert theirs_log[0].startswith(f"ERROR: open( {name} ) failed: No such file")
    # The start command says why (xinetd's parent has exited 0 long before).
    assert ours.status == 1
    assert ours.last_stderr_line.startswith("pyxinetd: couldn't get configuration (")


def test_no_services_is_logged_as_by_xinetd(tmp_path: Path) -> None:
    # xinetd gives up in init_services: no start-up lines, no `Started working: 0`
    # (which a log watcher would read as a running daemon), only the CRITICAL line.
    xinetd = require_xinetd()
    conf = ("service echo\n{\n\ttype = INTERNAL\n\tsocket_type = stream\n\tprotocol = tcp\n"
            "\twait = no\n\tdisable = yes\n}\n")
    logs = []
    for name, command in (("xinetd", [xinetd]), ("pyxinetd", [sys.executable, "-m",
                                                               "pyxinetd"])):
        (tmp_path / f"{name}.conf").write_text(conf)
        outcome = start(tmp_path / name, command, ("-f", f"../{name}.conf", "-filelog", "log"))
        assert not outcome.running
        logs.append(_levels_and_texts((tmp_path / name / "log").read_text()))
    assert logs[0] == ["CRITICAL: PID {init_services} no services. Exiting..."]
    assert logs[1] == logs[0]


_IN_REMOVED_FOLDER = 'mkdir "$1" && cd "$1" && rmdir "$1" && shift && exec "$@"'


def test_a_relative_configuration_in_a_removed_folder_is_logged_as_by_xinetd(
        tmp_path: Path) -> None:
    # Started from a folder that was removed, `-f echo.conf` names no file: xinetd logs
    # the failed open and its CRITICAL line, exit 1. pyxinetd used to die on its way to
    # the absolute path (getcwd: a traceback, status 1, no log line at all).
    xinetd = require_xinetd()
    logs, statuses = [], []
    for name, command in (("xinetd", [xinetd]),
                          ("pyxinetd", [sys.executable, "-m", "pyxinetd"])):
        log = tmp_path / f"{name}.log"
        done = subprocess.run(["unshare", "-n", "-m", "sh", "-c", _IN_REMOVED_FOLDER, "sh",
                               str(tmp_path / name), *command, "-dontfork", "-f", "echo.conf",
                               "-filelog", str(log)],
                              capture_output=True, text=True, timeout=60)
        statuses.append(done.returncode)
        assert "Traceback" not in done.stderr, done.stderr
        logs.append(_levels_and_texts(log.read_text()))
    assert statuses == [1, 1]
    assert logs[0] == ["ERROR: open( echo.conf ) failed: No such file or directory (errno = 2)",
                       "CRITICAL: PID {init_services} couldn't get configuration. Exiting..."]
    assert logs[1] == logs[0]
