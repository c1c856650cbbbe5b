"""A start that failed has decided its exit status: a signal sent once the failure is
logged (an init system stopping the daemon it sees failing) does not change it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DEADLINE = 20.0


def test_sigterm_right_after_the_failure_is_logged_leaves_status_1(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    for _ in range(5):
        log.write_text("")
        proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-dontfork",
                                 "-f", str(tmp_path / "missing.conf"), "-filelog", str(log)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + DEADLINE
            while "Exiting..." not in log.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.001)
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            assert proc.wait(timeout=DEADLINE) == 1, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "couldn't get configuration. Exiting..." in log.read_text()
