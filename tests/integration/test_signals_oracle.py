"""Signals to a running daemon, side by side with the real xinetd 2.3.15.3.

Each run starts one daemon in the foreground (-dontfork, -filelog) in fresh network,
mount and pid namespaces with a private /run (xinetd's dump path, /var/run/xinetd.dump,
is fixed), lets a shell snippet act on it (`$pid` is the daemon), and returns the exit
status and the program log without stamps and pids. The snippet may call `wait_log
GREP-ARGUMENTS` (at most 10 s).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyxinetd import faultsignals
from tests.integration.test_daemonize import echo_conf
from tests.oracle import require_xinetd

_RUN = r"""
wait_log() {   # GREP-ARGUMENTS: until the log has it, at most 10 s
    i=0
    while ! grep -q "$@" log 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
}
ip link set lo up
mount -t tmpfs tmpfs /run
cd "$1"; steps=$2; shift 2
# An absolute -f: xinetd works from / once started, -dontfork or not.
"$@" -dontfork -f "$PWD/conf" -filelog log </dev/null >out 2>err &
pid=$!
wait_log -e "Started working" -e Exiting
eval "$steps"
kill -TERM $pid
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL $pid 2>/dev/null
wait $pid
echo "status=$?"
"""


def run(folder: Path, command: list[str], steps: str) -> tuple[int, list[str]]:
    folder.mkdir()
    (folder / "conf").write_text(echo_conf(7))
    done = subprocess.run(["unshare", "-n", "-m", "-p", "--fork", "--mount-proc",
                           "sh", "-c", _RUN, "sh", str(folder), steps, *command],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = int(done.stdout.splitlines()[-1].removeprefix("status="))
    lines = [re.sub(r"^\S+ xinetd\[\d+\]: ", "", line)
             for line in (folder / "log").read_text().splitlines()]
    return status, [line for line in lines if " started with " not in line]


def both(tmp_path: Path, steps: str) -> tuple[tuple[int, list[str]], tuple[int, list[str]]]:
    return (run(tmp_path / "xinetd", [require_xinetd()], steps),
            run(tmp_path / "pyxinetd", [sys.executable, "-m", "pyxinetd"], steps))


@pytest.mark.parametrize("make", [
    "mkdir /run/xinetd.dump",                     # a folder where the file would be
    "ln -s /run/missing/dump /run/xinetd.dump",   # a link into a folder that is not there
])
def test_a_dump_file_that_cannot_be_opened_is_reported_in_xinetds_words(
        tmp_path: Path, make: str) -> None:
    theirs, ours = both(tmp_path, f"{make}; kill -USR1 $pid; wait_log dump")
    assert ours == theirs
    assert theirs[1][1].startswith("ERROR: failed to open /var/run/xinetd.dump: ")


def test_a_main_file_replaced_by_a_folder_is_not_read_as_an_empty_configuration(
        tmp_path: Path) -> None:
    # xinetd opens the folder, reads nothing from it and drops every service; pyxinetd
    # refuses it as it refuses a missing file and keeps serving (compatibility.md).
    theirs, ours = both(tmp_path, "rm conf; mkdir conf; kill -HUP $pid; "
                                  "wait_log -e Reconfigured -e 'reconfiguration failed'")
    assert theirs == (0, ["NOTICE: Started working: 1 available service",
                          "NOTICE: Starting reconfiguration",
                          "NOTICE: Swapping defaults",
                          "NOTICE: service echo deactivated",
                          "NOTICE: Reconfigured: new=0 old=0 dropped=1 (services)",
                          "WARNING: Exiting..."])
    folder = tmp_path / "pyxinetd" / "conf"
    assert ours == (0, ["NOTICE: Started working: 1 available service",
                        "NOTICE: Starting reconfiguration",
                        f"ERROR: open( {folder} ) failed: Is a directory (errno = 21)",
                        "WARNING: reconfiguration failed",
                        "WARNING: Exiting..."])


@pytest.mark.skipif(not faultsignals.guard_available(),
                    reason="the C extension's fault guard is not built or not enabled")
def test_fault_signals_sent_with_kill_are_logged_or_ignored_as_xinetd_takes_them(
        tmp_path: Path) -> None:
    # SIGFPE, SIGILL, SIGTRAP and SIGSYS first (ignored: were one to kill the daemon,
    # the SIGSEGV line would never come), then SIGSEGV and SIGBUS, each logged.
    steps = ("for s in FPE ILL TRAP SYS; do kill -$s $pid; done; "
             "kill -SEGV $pid; wait_log 'Segmentation fault'; "
             "kill -BUS $pid; wait_log 'Bus error'")
    theirs, ours = both(tmp_path, steps)
    masked = [(status, [re.sub(r"^CRITICAL: \d+ \{general_handler\} \(\d+\)",
                               "CRITICAL: PID {general_handler} (PID)", line) for line in lines])
              for status, lines in (theirs, ours)]
    assert masked[1] == masked[0]
    assert masked[0] == (0, [
        "NOTICE: Started working: 1 available service",
        "CRITICAL: PID {general_handler} (PID) Unexpected signal: 11 (Segmentation fault)",
        "CRITICAL: PID {general_handler} (PID) Unexpected signal: 7 (Bus error)",
        "WARNING: Exiting...",
    ])
