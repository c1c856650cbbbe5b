"""Signals sent to the pid in the pidfile the moment it appears.

xinetd installs its signal handlers before it writes the pidfile (reference §4.1), so a
`kill -HUP $(cat pidfile)` from a script that waits for the file is always handled.
These tests poll for the file and signal at once, several times over, since the race
they guard against is a window of a few milliseconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon import children_of, free_port, read_pid, wait_until

ATTEMPTS = 6


def echo_conf(port: int) -> str:
    return (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n}}\n")


def start_and_signal(tmp_path: Path, n: int, signum: int
                     ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    conf, log, pidfile = (tmp_path / f"{n}.conf", tmp_path / f"{n}.log",
                          tmp_path / f"{n}.pid")
    conf.write_text(echo_conf(free_port()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyxinetd", "-dontfork", "-f", str(conf), "-filelog",
         str(log), "-pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 15
    while read_pid(pidfile) != proc.pid:
        if time.monotonic() > deadline or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError("the daemon never wrote its pidfile")
        time.sleep(0.0005)
    os.kill(proc.pid, signum)
    return proc, log, pidfile


def wait_for(path: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, f"the daemon died (status {proc.returncode})"
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        time.sleep(0.02)


def test_sighup_as_soon_as_the_pidfile_names_the_daemon_is_a_reload(tmp_path: Path) -> None:
    for n in range(ATTEMPTS):
        proc, log, pidfile = start_and_signal(tmp_path, n, signal.SIGHUP)
        try:
            wait_for(log, "Reconfigured:", proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert not pidfile.exists()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_sigterm_as_soon_as_the_pidfile_names_the_daemon_exits_cleanly(
        tmp_path: Path) -> None:
    for n in range(ATTEMPTS):
        proc, log, pidfile = start_and_signal(tmp_path, n, signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
            # The pidfile is removed, not left behind for `status` to report as dead.
            assert not pidfile.exists()
            assert "Exiting..." in log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_ctrl_c_while_the_configuration_loads_is_ignored_as_once_serving(
        tmp_path: Path) -> None:
    """xinetd ignores SIGINT (but with -d) from its first steps; pyxinetd holds it while
    it starts and ignores it once its handlers are in, instead of ending (killed by
    SIGINT, with a KeyboardInterrupt traceback before that) when a Ctrl-C came in its
    first second. The main file is a FIFO, so the load waits in it (its loader child
    blocked opening it) until the signal has come; then it gets its configuration."""
    fifo = tmp_path / "xinetd.conf"
    os.mkfifo(fifo)
    log, err = tmp_path / "program.log", tmp_path / "stderr"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-dontfork", "-f",
                                 str(fifo), "-filelog", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)
    try:
        wait_until(lambda: children_of(proc.pid), 15, what="the loader child")
        proc.send_signal(signal.SIGINT)
        port = free_port()
        with open(fifo, "w") as conf:
            conf.write(echo_conf(port))
        wait_for(log, "Started working: 1 available service", proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"still here\n")
            assert client.recv(100) == b"still here\n"
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert err.read_text() == ""
