"""A daemon started with SIGCHLD ignored (a shell's `trap '' CHLD`): it starts, reaps
its servers and stops, in the foreground and detached, as xinetd does.

An ignored SIGCHLD survives exec and makes the kernel reap children itself, so
waitpid() fails with ECHILD: before pyxinetd.process.wait_for_own_children() the
daemon could not wait for its configuration loader and exited with `[Errno 10] No
child processes` / `couldn't get configuration. Exiting...`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon import free_port, read_pid


def ignore_sigchld() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def configuration(tmp_path: Path) -> tuple[Path, Path, int, int]:
    """An external nowait and an external `wait = yes` service (which is only served
    again once its server was reaped), both logging their servers' exits."""
    nowait, wait = free_port(), free_port()
    services_log = tmp_path / "services.log"
    common = (f"\ttype = UNLISTED\n\tsocket_type = stream\n\tuser = root\n"
              f"\tbind = 127.0.0.1\n\tlog_type = FILE {services_log}\n"
              f"\tlog_on_success = PID EXIT\n")
    conf = tmp_path / "xinetd.conf"
    conf.write_text(
        f"service nowait\n{{\n{common}\twait = no\n\tport = {nowait}\n"
        f"\tserver = /bin/echo\n\tserver_args = nowait\n}}\n"
        f"service waiting\n{{\n{common}\twait = yes\n\tport = {wait}\n"
        f"\tserver = {sys.executable}\n\tserver_args = -c "
        "s=__import__('socket').socket(fileno=0);c,_=s.accept();c.sendall(b'wait')\n}\n")
    return conf, services_log, nowait, wait


def ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(10)
        data = b""
        while chunk := conn.recv(100):
            data += chunk
        return data


def wait_for_lines(path: Path, text: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while (path.read_text() if path.exists() else "").count(text) < count:
        assert time.monotonic() < deadline, (path.read_text() if path.exists() else "")
        time.sleep(0.02)


def serve_twice(log: Path, services_log: Path, nowait: int, wait: int) -> None:
    deadline = time.monotonic() + 20
    while "Started working" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
        time.sleep(0.02)
    for n in (1, 2):
        assert ask(nowait) == b"nowait\n"
        assert ask(wait) == b"wait"
        # Each server was reaped: its EXIT line, and the wait service listens again.
        wait_for_lines(services_log, "EXIT: nowait", n)
        wait_for_lines(services_log, "EXIT: waiting", n)


def test_foreground_daemon_started_with_sigchld_ignored_serves_and_reaps(
        tmp_path: Path) -> None:
    conf, services_log, nowait, wait = configuration(tmp_path)
    log = tmp_path / "program.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyxinetd", "-dontfork", "-f", str(conf), "-filelog", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=ignore_sigchld, start_new_session=True)
    try:
        serve_twice(log, services_log, nowait, wait)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_detached_daemon_started_with_sigchld_ignored_serves_and_reaps(
        tmp_path: Path) -> None:
    conf, services_log, nowait, wait = configuration(tmp_path)
    log, pidfile = tmp_path / "program.log", tmp_path / "xinetd.pid"
    done = subprocess.run(
        [sys.executable, "-m", "pyxinetd", "-f", str(conf), "-filelog", str(log),
         "-pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        preexec_fn=ignore_sigchld, check=False)
    pid = read_pid(pidfile)
    try:
        assert done.returncode == 0, done.stderr
        assert pid is not None
        serve_twice(log, services_log, nowait, wait)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            if pidfile.exists():
                os.kill(pid, signal.SIGKILL)
