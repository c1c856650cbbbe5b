"""SIGHUP checks the running servers of kept services again (xinetd(8), SIGHUP).

Real daemon, real servers that hold their connection, clients from two loopback
addresses (127.0.0.1 and 127.0.0.2) so that servers have different peers.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_reload import defaults, read_line, reload, service, \
    wait_service_log


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "0.5")


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.bind((source, 0))
    conn.connect(("127.0.0.1", port))
    return conn


def hold(port: int, source: str = "127.0.0.1") -> tuple[socket.socket, int]:
    """A client whose server holds the connection; returns it with the server's pid."""
    conn = connect(port, source)
    return conn, int(read_line(conn).split("pid=")[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ended(conn: socket.socket) -> bool:
    """The server side of `conn` is gone (EOF or reset)."""
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True


def terminated(daemon: Daemon, svc: str, pid: int, peer: str, reason: str) -> str:
    return daemon.wait_for_log(
        rf"service {svc} server {pid} from {re.escape(peer)} no longer allowed "
        rf"\(reason={reason}\); terminating")


def held(name: str, port: int, **attrs: str) -> str:
    return service(name, port, name.upper(), "hold", **attrs)


def test_refused_address_is_terminated_allowed_one_kept(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    port, waiter = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + held("s", port)
                                  + service("w", waiter, "W", "wait", "hold", wait="yes"))
    near, near_pid = hold(port, "127.0.0.1")
    far, far_pid = hold(port, "127.0.0.2")
    # A stream wait = yes server has no peer: the address lists cannot refuse it.
    waiting, waiting_pid = hold(waiter)
    with near, far, waiting:
        log = reload(daemon, defaults(tmp_path) + held("s", port, only_from="127.0.0.1")
                     + service("w", waiter, "W", "wait", "hold", wait="yes",
                               only_from="10.0.0.0/8"), 1)
        assert "Reconfigured: new=0 old=2 dropped=0 (services)" in log
        terminated(daemon, "s", far_pid, "127.0.0.2", "address")
        wait_service_log(tmp_path, rf"EXIT: s signal=15 pid={far_pid}")
        assert f"Sending signal 15 to s server {far_pid}" in daemon.log()
        assert ended(far)
        assert alive(near_pid) and alive(waiting_pid)
        assert f"server {near_pid} " not in daemon.log()
        assert f"server {waiting_pid} " not in daemon.log()
        # The kept server still serves its client.
        near.sendall(b"x")
        assert alive(near_pid)


def test_in_loop_session_from_refused_address_is_closed(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    port = free_port()

    def echo(extra: str) -> str:
        return ("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-stream\n"
                "\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
                f"\tport = {port}\n\tbind = 127.0.0.1\n{extra}}}\n")

    daemon = daemons.start_config(defaults(tmp_path) + echo(""))
    with connect(port, "127.0.0.1") as near, connect(port, "127.0.0.2") as far:
        for conn in (near, far):
            conn.sendall(b"ping\n")
            assert read_line(conn) == "ping\n"
        reload(daemon, defaults(tmp_path) + echo("\tno_access = 127.0.0.2\n"), 1)
        daemon.wait_for_log(r"service echo-stream session from 127\.0\.0\.2 no longer "
                            r"allowed \(reason=address\); closing")
        assert ended(far)
        near.sendall(b"still\n")
        assert read_line(near) == "still\n"
    assert "session from 127.0.0.1" not in daemon.log()


def _window_without_now() -> str:
    hour = time.localtime().tm_hour
    return "01:00-02:00" if hour >= 12 else "13:00-14:00"


def test_access_times_moved_away_terminates_every_server(daemons: DaemonFactory,
                                                         tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + held("t", port))
    one, pid1 = hold(port, "127.0.0.1")
    two, pid2 = hold(port, "127.0.0.2")
    with one, two:
        reload(daemon, defaults(tmp_path) + held("t", port, access_times=_window_without_now()),
               1)
        terminated(daemon, "t", pid1, "127.0.0.1", "time")
        terminated(daemon, "t", pid2, "127.0.0.2", "time")
        wait_service_log(tmp_path, rf"EXIT: t signal=15 pid={pid1}")
        wait_service_log(tmp_path, rf"EXIT: t signal=15 pid={pid2}")
        assert ended(one) and ended(two)


def test_instances_lowered_terminates_the_newest(daemons: DaemonFactory,
                                                 tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    text = (defaults(tmp_path) + held("n", port, instances="3")
            + held("u", other, instances="2", only_from="127.0.0.0/8"))
    daemon = daemons.start_config(text)
    clients = [hold(port, source) for source in ("127.0.0.1", "127.0.0.2", "127.0.0.1")]
    # The unchanged service's servers pass every check again and keep running.
    kept = [hold(other, source) for source in ("127.0.0.1", "127.0.0.2")]
    oldest, newer = clients[0], clients[1:]
    try:
        log = reload(daemon, defaults(tmp_path) + held("n", port, instances="1")
                     + held("u", other, instances="2", only_from="127.0.0.0/8"), 1)
        assert "Reconfigured: new=0 old=2 dropped=0 (services)" in log
        for (conn, pid), peer in zip(newer, ("127.0.0.2", "127.0.0.1")):
            terminated(daemon, "n", pid, peer, "instances")
            wait_service_log(tmp_path, rf"EXIT: n signal=15 pid={pid}")
            assert ended(conn)
        assert alive(oldest[1]) and all(alive(pid) for _, pid in kept)
        log = daemon.log()
        assert f"server {oldest[1]} " not in log
        assert not any(f"server {pid} " in log for _, pid in kept)
        # The limit of 1 now holds for new connections too.
        with connect(port) as late:
            assert ended(late)
        wait_service_log(tmp_path, r"FAIL: n service_limit from=127\.0\.0\.1")
    finally:
        for conn, _ in clients + kept:
            conn.close()
    wait_until(lambda: not daemon.children(), what="every server to end")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
