"""A Ctrl-C to `pyxinetd check` ends it as SIGINT's default action ends a process.

The command holds SIGINT while it starts (as a daemon would) and lets it go once it
knows it is no daemon. Whenever the Ctrl-C comes, the command is killed by SIGINT: never
click's `Aborted!` with status 1, which for `check` means that errors were found.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def open_writer_once_read(fifo: Path, proc: subprocess.Popen[bytes]) -> int:
    """The FIFO's write end, once the command has it open for reading (it then waits
    in its read for what is never written)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
        assert proc.poll() is None, f"check ended first (status {proc.returncode})"
        assert time.monotonic() < deadline, "check never opened its configuration"
        time.sleep(0.01)


def test_ctrl_c_while_check_reads_the_configuration_kills_it_by_sigint(
        tmp_path: Path) -> None:
    fifo = tmp_path / "xinetd.conf"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "check", "-f", str(fifo)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    writer = -1
    try:
        writer = open_writer_once_read(fifo, proc)
        os.killpg(proc.pid, signal.SIGINT)     # the terminal's Ctrl-C: the whole group
        _, err = proc.communicate(timeout=15)
    finally:
        if writer >= 0:
            os.close(writer)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)
    assert b"Aborted" not in err and b"Traceback" not in err, err
