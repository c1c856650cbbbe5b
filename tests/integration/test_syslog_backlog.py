"""Syslog when the syslog daemon is late or away: nothing is lost, nothing blocks.

A datagram socket holds `net.unix.max_dgram_qlen` messages (10 by default); a syslog
daemon that reads them a moment late used to lose the rest of a burst, because pyxinetd
never waits on the socket. The messages now wait in the daemon, in order, and are sent
as room appears (pyxinetd.syslogsender). The test's socket is read only after a pause.
A syslog daemon that restarts (its socket closed and removed, a new one bound later)
gets what was sent meanwhile, with what waited for room in the old one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import free_port, wait_until

TIMEOUT = 10.0


@pytest.fixture
def syslog_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "log.sock"))
    try:
        yield sock
    finally:
        sock.close()


def drain(sock: socket.socket, until: str) -> list[str]:
    """Read messages until one holds `until` (bounded by TIMEOUT)."""
    got: list[str] = []
    sock.settimeout(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and not any(until in m for m in got):
        got.append(sock.recv(65536).decode(errors="replace"))
    return got


def start(tmp_path: Path, conf: str) -> subprocess.Popen[bytes]:
    path = tmp_path / "xinetd.conf"
    path.write_text(conf)
    env = {**os.environ, "PYXINETD_SYSLOG_SOCKET": str(tmp_path / "log.sock")}
    return subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(path), "-dontfork",
                             "-syslog", "daemon"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(TIMEOUT)


def test_a_late_reader_gets_the_whole_burst_in_order(tmp_path: Path,
                                                     syslog_socket: socket.socket) -> None:
    port = free_port()
    bad = "".join(f"\tbogus{n} = 1\n" for n in range(40))
    proc = start(tmp_path, f"service a\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                           f"\twait = no\n\tuser = root\n\tserver = /bin/true\n"
                           f"\tbind = 127.0.0.1\n\tport = {port}\n\tcps = 0 0\n"
                           f"\tlog_type = SYSLOG local3\n\tlog_on_success = PID\n{bad}}}\n")
    try:
        # Serving goes on while nobody reads: 30 clients are served meanwhile.
        wait_until(lambda: _connects(port), TIMEOUT, what="the service")
        for _ in range(29):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
                conn.recv(1)
        time.sleep(0.5)
        got = drain(syslog_socket, "Started working")
        wait_until(lambda: _more(syslog_socket, got, 30), TIMEOUT, what="30 START lines")
    finally:
        stop(proc)
    bogus = [m for m in got if "bogus" in m]
    assert [int(m.split("bogus", 1)[1].split()[0]) for m in bogus] == list(range(40))
    assert sum("START: a pid=" in m for m in got) == 30
    assert not any("dropped" in m for m in got)


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.recv(1)
        return True
    except OSError:
        return False


def _more(sock: socket.socket, got: list[str], starts: int) -> bool:
    sock.settimeout(0.2)
    try:
        got.append(sock.recv(65536).decode(errors="replace"))
    except TimeoutError:
        pass
    return sum("START: a pid=" in m for m in got) >= starts


def test_the_backlog_is_sent_before_the_daemon_exits(tmp_path: Path,
                                                     syslog_socket: socket.socket) -> None:
    bad = "".join(f"\tbogus{n} = 1\n" for n in range(20))
    port = free_port()
    proc = start(tmp_path, f"service a\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                           f"\twait = no\n\tuser = root\n\tserver = /bin/true\n"
                           f"\tbind = 127.0.0.1\n\tport = {port}\n{bad}}}\n")
    try:
        # Serving (so its SIGTERM handler is in place), its start-up messages waiting.
        wait_until(lambda: _connects(port), TIMEOUT, what="the service")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)             # exiting: it waits for room, up to 2 s
        got = drain(syslog_socket, "Exiting...")
        assert proc.wait(TIMEOUT) == 0
    finally:
        stop(proc)
    assert sum("bogus" in m for m in got) == 20
    assert "Started working" in "".join(got)


def test_a_restarted_syslog_daemon_gets_what_was_logged_while_it_was_away(
        tmp_path: Path, syslog_socket: socket.socket) -> None:
    port = free_port()
    proc = start(tmp_path, f"service a\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                           f"\twait = no\n\tuser = root\n\tserver = /bin/true\n"
                           f"\tbind = 127.0.0.1\n\tport = {port}\n\tcps = 0 0\n"
                           f"\tlog_type = SYSLOG local3\n\tlog_on_success = PID\n}}\n")
    qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    try:
        drain(syslog_socket, "Started working")
        # 20 STARTs the old syslog daemon does not read: what its queue took is lost
        # with it, the rest waits in pyxinetd.
        for _ in range(20):
            assert _connects(port)
        syslog_socket.close()
        os.unlink(tmp_path / "log.sock")
        for _ in range(3):          # nobody listens
            assert _connects(port)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as new:
            new.bind(str(tmp_path / "log.sock"))
            assert _connects(port)
            got: list[str] = []
            # A datagram socket's queue takes qlen + 1 messages.
            expected = max(0, 20 - qlen - 1) + 4
            wait_until(lambda: _more(new, got, expected), TIMEOUT,
                       what=f"{expected} START lines")
    finally:
        stop(proc)
    assert not any("dropped" in m for m in got)
