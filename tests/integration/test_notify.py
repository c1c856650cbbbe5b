"""sd_notify: the daemon reports readiness, reloads, stopping and watchdog pings.

A real datagram socket plays systemd's notification socket ($NOTIFY_SOCKET); the
daemon is the real one, in the foreground (Type=notify runs it with -dontfork).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port

RECV_TIMEOUT = 10.0


class ManagerSocket:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(RECV_TIMEOUT)

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def until(self, key: str, limit: int = 50) -> list[dict[str, str]]:
        """Messages up to and including the first with `key` (bounded)."""
        seen = []
        for _ in range(limit):
            seen.append(self.next())
            if key in seen[-1]:
                return seen
        raise AssertionError(f"no {key} in {seen}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ManagerSocket]:
    path = str(tmp_path / "notify.sock")
    end = ManagerSocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield end
    end.close()


def env_service(port: int) -> str:
    return (f"service printenv\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = /usr/bin/env\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n}}\n")


def read_all(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT) as conn:
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def start(daemons: DaemonFactory, port: int) -> Daemon:
    return daemons.start_config(env_service(port))


def test_ready_after_started_working(daemons: DaemonFactory, manager: ManagerSocket) -> None:
    port = free_port()
    daemon = start(daemons, port)
    ready = manager.until("READY")[-1]
    assert ready["READY"] == "1"
    assert ready["STATUS"] == "Started working: 1 available service"
    assert ready["MAINPID"] == str(daemon.pid)
    # The log line came first: READY means the listeners are there.
    assert "Started working: 1 available service" in daemon.log()
    assert read_all(port)


def test_servers_do_not_inherit_the_notify_variables(daemons: DaemonFactory,
                                                     manager: ManagerSocket,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("PYXINETD_TEST_MARK", "kept")
    port = free_port()
    start(daemons, port)
    manager.until("READY")
    env = read_all(port)
    assert "PYXINETD_TEST_MARK=kept" in env  # the rest of the environment is passed on
    assert "NOTIFY_SOCKET" not in env
    assert "WATCHDOG_USEC" not in env


def test_reload_reports_reloading_then_ready(daemons: DaemonFactory,
                                             manager: ManagerSocket) -> None:
    daemon = start(daemons, free_port())
    manager.until("READY")
    daemon.signal(signal.SIGHUP)
    reloading = manager.until("RELOADING")[-1]
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert reloading["STATUS"] == "Reloading the configuration (reload 1)"
    ready = manager.until("READY")[-1]
    # Worded as the start-up line: "1 available service".
    assert ready["STATUS"] == "Reconfigured: 1 available service (reload 1)"


def test_each_reload_changes_the_status_even_with_the_same_outcome(
        daemons: DaemonFactory, manager: ManagerSocket) -> None:
    # The unit's reload command waits for the status to change: a reload that ends
    # as the last one did must still say something new.
    daemon = start(daemons, free_port())
    manager.until("READY")
    statuses = []
    for _ in range(2):
        daemon.signal(signal.SIGHUP)
        statuses.append(manager.until("READY")[-1]["STATUS"])
    assert statuses == ["Reconfigured: 1 available service (reload 1)",
                        "Reconfigured: 1 available service (reload 2)"]


def test_failed_reload_still_ends_with_ready(daemons: DaemonFactory, manager: ManagerSocket,
                                            tmp_path: Path) -> None:
    daemon = start(daemons, free_port())
    manager.until("READY")
    conf = next(tmp_path.glob("daemon*.conf"))
    conf.unlink()  # the main file cannot be read: the running configuration is kept
    daemon.signal(signal.SIGHUP)
    manager.until("RELOADING")
    ready = manager.until("READY")[-1]
    assert ready["STATUS"].startswith("reconfiguration failed (")
    assert ready["STATUS"].endswith("the running configuration is kept (reload 1)")


def test_stopping_on_sigterm(daemons: DaemonFactory, manager: ManagerSocket) -> None:
    daemon = start(daemons, free_port())
    manager.until("READY")
    daemon.signal(signal.SIGTERM)
    stopping = manager.until("STOPPING")[-1]
    assert stopping["STOPPING"] == "1"
    assert daemon.wait_exit() == 0


def test_watchdog_pings(daemons: DaemonFactory, manager: ManagerSocket,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    start(daemons, free_port())
    pings = [m for m in manager.until("READY") if "WATCHDOG" in m]
    while len(pings) < 3:  # bounded by the socket timeout
        message = manager.next()
        if "WATCHDOG" in message:
            pings.append(message)
    assert all(p["WATCHDOG"] == "1" for p in pings)


def test_abstract_socket_name(daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pyxinetd-test-{os.getpid()}-{free_port()}"
    end = ManagerSocket("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        start(daemons, free_port())
        assert end.until("READY")[-1]["READY"] == "1"
    finally:
        end.close()


def test_unreachable_socket_is_logged_once(daemons: DaemonFactory, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(missing))
    daemon = start(daemons, free_port())
    daemon.signal(signal.SIGHUP)  # two more notifications: RELOADING, READY
    log = daemon.wait_for_log(r"Reconfigured")
    assert log.count("cannot notify the service manager") == 1
    assert (f"WARNING: cannot notify the service manager at {missing} (No such file or "
            f"directory (errno = 2)); further failures are not logged") in log
