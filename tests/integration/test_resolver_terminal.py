"""The name resolver helper is out of reach of the terminal's signals, as servers are.

A daemon in the foreground (-dontfork) ignores a Ctrl-C, as xinetd does, and its
servers run in sessions of their own. The helper, in the daemon's process group, took
the SIGINT's default action: an aclexec check in flight was refused for a helper that
exited, and the check's command was left running with nobody to kill it at its
deadline. The daemon is started in a session of its own (tests.daemon), so a signal
to its process group is what the terminal's Ctrl-C sends.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.daemon import DaemonFactory, read_log, wait_until
from tests.integration.test_aclexec_not_run import start_guarded

TIMEOUT = 10.0


def test_a_ctrl_c_to_the_foreground_daemon_leaves_a_running_aclexec_check_alone(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    # The check runs until the test lets it end (bounded: 20 s at most), then confirms
    # the denying rule.
    daemon, port, services = start_guarded(
        daemons, tmp_path,
        f"ALL: ALL: aclexec touch {started}; i=0; while [ ! -e {release} ] && "
        f"[ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
        client.settimeout(TIMEOUT)
        wait_until(started.exists, what="the aclexec check running")
        os.killpg(daemon.pid, signal.SIGINT)
        release.touch()
        assert client.recv(100) == b""
    daemon.wait_for_log(r"libwrap refused connection to guarded \(libwrap=echo\) "
                        r"from 127\.0\.0\.1")
    wait_until(lambda: "FAIL: guarded libwrap from=127.0.0.1" in read_log(services),
               what="FAIL: guarded libwrap")
    assert "name resolver exited" not in daemon.log()
    assert "aclexec not run" not in daemon.log()
    assert daemon.proc.poll() is None
