"""2,000 connections leave no zombie and no leaked descriptor in the daemon; a batch of
queued connections is taken off the listen queue before the first of them is served."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, nofile_limited, open_fds, wait_until
from tests.integration.test_dispatch import connect, read_all
from tests.factories import make_service

CONNECTIONS = 2000
CLIENTS = 4


def test_burst_leaves_no_zombie_and_no_leaked_fd(daemons: DaemonFactory) -> None:
    port = free_port()
    svc = make_service(name="burst", port=port, server="/bin/echo",
                       server_argv=("echo", "b"), cps=(100_000, 1))
    daemon = daemons.start_services([svc])
    with connect(port) as conn:
        assert read_all(conn) == b"b\n"
    wait_until(lambda: not daemon.children(), what="the warm-up server to be reaped")
    before = open_fds(daemon.pid)

    errors: list[BaseException] = []
    per_client = CONNECTIONS // CLIENTS

    def client() -> None:
        try:
            for _ in range(per_client):
                with connect(port) as c:
                    assert read_all(c) == b"b\n"
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors[:3]
    wait_until(lambda: not daemon.children(), timeout=30, what="every server to be reaped")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
    assert open_fds(daemon.pid) == before
    assert daemon.proc.poll() is None


QUEUED = 10
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def listen_queue(tables: str, port: int) -> int:
    """How many connections wait in the accept queue of the TCP listener on `port`,
    read from /proc/net/tcp and tcp6 text (a listening socket's rx_queue)."""
    total = 0
    for row in tables.splitlines():
        fields = row.split()
        if len(fields) > 4 and fields[3] == "0A" and ":" in fields[1] \
                and int(fields[1].rsplit(":", 1)[1], 16) == port:
            total += int(fields[4].split(":")[1], 16)
    return total


def queued(port: int) -> int:
    return listen_queue("".join(Path(table).read_text() for table in TCP_TABLES), port)


def _queue_while_stopped(daemons: DaemonFactory, port: int, count: int,
                         wrapper: Sequence[str] = (), **overrides: object
                         ) -> tuple[list[socket.socket], object]:
    """`count` clients connected while the daemon is stopped, all of them waiting in
    its listen queue; the daemon is running again when this returns."""
    daemon = daemons.start_services([make_service(name="queued", port=port, **overrides)],
                                    wrapper=wrapper)
    daemon.signal(signal.SIGSTOP)
    try:
        clients = [connect(port) for _ in range(count)]
        wait_until(lambda: queued(port) == count, what="every client in the listen queue")
    finally:
        daemon.signal(signal.SIGCONT)
    return clients, daemon


def test_queued_clients_leave_the_listen_queue_before_the_first_server_starts(
        daemons: DaemonFactory) -> None:
    # Clients that connect while a burst is served find room in the listen queue: the
    # batch is accepted first, so no server of it sees a connection still queued.
    port = free_port()
    clients, _ = _queue_while_stopped(daemons, port, QUEUED, server="/bin/cat",
                                      server_argv=("cat", *TCP_TABLES))
    seen = []
    for conn in clients:
        with conn:
            seen.append(listen_queue(read_all(conn).decode(), port))
    assert seen == [0] * QUEUED


def test_connections_accepted_past_a_cps_trip_are_reset(daemons: DaemonFactory) -> None:
    # cps = 2: the third connection trips it and the listener closes. The connections
    # after it, already accepted with the batch, are reset as the kernel resets those a
    # closed listener still had queued, with no line of their own.
    port = free_port()
    clients, daemon = _queue_while_stopped(daemons, port, 5, server="/bin/echo",
                                           server_argv=("echo", "b"), cps=(2, 30))
    answers = []
    for conn in clients:
        with conn:
            try:
                answers.append(read_all(conn))
            except ConnectionResetError:
                answers.append(None)
    assert answers[:3] == [b"b\n", b"b\n", b""]
    assert answers[3:] == [None, None]
    log = daemon.wait_for_log("Deactivating service queued")
    assert log.count("Deactivating service") == 1, log



def test_a_batch_near_the_descriptor_limit_leaves_its_banners_descriptors(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # 40 queued clients, 32 descriptors: a batch taken up to EMFILE left none to open
    # the banner of any connection it held. The batch stops short of the limit, so
    # every client gets its banner, as from xinetd (which accepts one at a time).
    banner = tmp_path / "banner"
    banner.write_text("welcome\n")
    port = free_port()
    clients, daemon = _queue_while_stopped(daemons, port, 40, wrapper=nofile_limited(32),
                                           server="/bin/echo", server_argv=("echo", "b"),
                                           banner=str(banner))
    answers = []
    for conn in clients:
        with conn:
            answers.append(read_all(conn))
    assert answers == [b"welcome\nb\n"] * 40
    assert "open of banner" not in daemon.log()

IDLE_SCRIPT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from tests.factories import make_config, make_service
from pyxinetd.master import Master, MasterOptions
from pyxinetd.log import ProgramLog
services = [make_service(name="idle", port=0),
            make_service(name="idle2", port=0, cps=(1, 1))]
master = Master(make_config(*services), MasterOptions(dontfork=True),
                program_log=ProgramLog.to_file(sys.argv[2]))
master.start()
assert master.started and master.available_count() == 2
assert master.loop.timers.next_deadline() is None, master.loop.timers.next_deadline()
master.shutdown()
print("idle ok")
"""


def test_idle_master_has_no_timer_pending(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", IDLE_SCRIPT, root, str(tmp_path / "log")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "idle ok" in out.stdout
