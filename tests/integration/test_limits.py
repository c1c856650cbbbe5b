"""instances, per_source, -limit and cps: refusals with FAIL lines, and recovery."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import sys
import time
from pathlib import Path

from tests.daemon import HELPERS, DaemonFactory, free_port, process_state, wait_until
from tests.integration.test_dispatch import connect, logged, read_all, service_log, wait_service_log
from tests.factories import make_service
from tests.integration.test_internal_daemon import builtin


def sleeper(tmp_path: Path, name: str, port: int, **overrides: object):  # type: ignore[no-untyped-def]
    return make_service(name=name, port=port, server="/bin/sleep",
                        server_argv=("sleep", "300"), **logged(tmp_path, **overrides))


def test_instances_limit_rejects_and_frees_on_exit(daemons: DaemonFactory,
                                                   tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_services([sleeper(tmp_path, "one", port, instances=1)])
    first = connect(port)
    wait_service_log(tmp_path, r"START: one pid=\d+")
    with connect(port) as second:
        assert read_all(second) == b""
    wait_service_log(tmp_path, r"FAIL: one service_limit from=127\.0\.0\.1")
    # The running server is killed: its slot is free again.
    for pid in daemon.children():
        import os
        import signal
        os.kill(pid, signal.SIGKILL)
    wait_service_log(tmp_path, r"EXIT: one signal=9")
    first.close()
    third = connect(port)
    wait_service_log(tmp_path, r"START: one pid=\d+", 2)
    third.close()


def test_per_source_limit(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemons.start_services([sleeper(tmp_path, "ps", port, per_source=1)])
    first = connect(port)
    wait_service_log(tmp_path, r"START: ps pid=\d+")
    with connect(port) as second:
        assert read_all(second) == b""
    wait_service_log(tmp_path, r"FAIL: ps per_source_limit from=127\.0\.0\.1")
    first.close()


def test_process_limit_counts_every_service(daemons: DaemonFactory, tmp_path: Path) -> None:
    p1, p2 = free_port(), free_port()
    daemons.start_services([sleeper(tmp_path, "a", p1), sleeper(tmp_path, "b", p2)],
                           process_limit=1)
    first = connect(p1)
    wait_service_log(tmp_path, r"START: a pid=\d+")
    with connect(p2) as other:
        assert read_all(other) == b""
    wait_service_log(tmp_path, r"FAIL: b process_limit from=127\.0\.0\.1")
    first.close()


def test_access_lists_refuse_in_the_parent(daemons: DaemonFactory, tmp_path: Path) -> None:
    import ipaddress

    from pyxinetd.config.model import AddressEntry

    port = free_port()
    deny = AddressEntry("127.0.0.1", "numeric", ipaddress.ip_network("127.0.0.1/32"))
    svc = make_service(name="acl", port=port, server="/bin/echo", server_argv=("echo", "x"),
                       **logged(tmp_path, no_access=(deny,)))
    daemons.start_services([svc])
    with connect(port) as conn:
        assert read_all(conn) == b""
    wait_service_log(tmp_path, r"FAIL: acl address from=127\.0\.0\.1")


def test_cps_deactivates_then_reactivates(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    svc = make_service(name="rate", port=port, server="/bin/echo", server_argv=("echo", "r"),
                       cps=(2, 3), **logged(tmp_path))
    daemon = daemons.start_services([svc])
    refused = False
    for _ in range(20):
        try:
            with connect(port) as conn:
                read_all(conn)
        except ConnectionRefusedError:
            refused = True
            break
        except ConnectionResetError:
            pass  # queued in the backlog when the listener was closed
    daemon.wait_for_log(r"Deactivating service rate due to excessive incoming connections\.  "
                        r"Restarting in 3 seconds\.")
    wait_service_log(tmp_path, r"FAIL: rate connections per second from=127\.0\.0\.1")
    if not refused:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            refused = True
    assert refused
    daemon.wait_for_log(r"ERROR: Activating service rate")
    with connect(port) as conn:
        assert read_all(conn) == b"r\n"


def test_refused_wait_request_waits_for_a_free_slot_without_spinning(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # -limit 1 is taken by a nowait server; a wait = yes request cannot start, stays
    # queued (as in xinetd), and is served once that server exits. cps is off, so
    # nothing else stops a loop that refuses it again on every turn (each refusal
    # writes a FAIL line: they are what this test counts).
    holder_port, wait_port = free_port(), free_port()
    holder = make_service(name="holder", port=holder_port, server="/bin/cat",
                          server_argv=("cat",), **logged(tmp_path, cps=(0, 0)))
    waiter = make_service(name="waiter", port=wait_port, wait=True, server=sys.executable,
                          server_argv=("python3", "-I", "-S",
                                       str(HELPERS / "wait_stream_server.py")),
                          **logged(tmp_path, cps=(0, 0)))
    daemons.start_services([holder, waiter], process_limit=1)
    first = connect(holder_port)
    wait_service_log(tmp_path, r"START: holder pid=\d+")
    with connect(wait_port) as queued:
        queued.sendall(b"still here\n")
        wait_service_log(tmp_path, r"FAIL: waiter process_limit from=<no address>")
        first.close()  # cat sees EOF and exits: the slot is free
        reply = b""
        while b"still here\n" not in reply:
            chunk = queued.recv(4096)
            assert chunk, reply
            reply += chunk
    assert reply.startswith(b"pid=")
    # One refusal, then one look per second at most until the slot was free (not one
    # per loop turn: thousands).
    assert service_log(tmp_path).count("FAIL: waiter process_limit") <= 3


def test_wait_request_outside_access_times_is_turned_away(daemons: DaemonFactory,
                                                          tmp_path: Path) -> None:
    # access_times will not let it in for an hour at least: the waiting client is
    # closed after one FAIL line instead of kept waiting (and re-checked every second).
    hour = (time.localtime().tm_hour + 2) % 24
    window = f"{hour:02d}:00-{hour:02d}:59"
    port = free_port()
    log = tmp_path / "services.log"
    daemons.start_config(
        f"service waiter\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = yes\n"
        f"\tuser = root\n\tserver = {sys.executable}\n"
        f"\tserver_args = -I -S {HELPERS / 'wait_stream_server.py'}\n"
        f"\tbind = 127.0.0.1\n\tport = {port}\n\taccess_times = {window}\n"
        f"\tlog_type = FILE {log}\n\tlog_on_failure = HOST\n}}\n")
    for attempt in (1, 2):
        with connect(port) as conn:
            try:
                assert read_all(conn) == b""
            except ConnectionResetError:
                pass  # closed with the request unread: a reset is as good an answer
        wait_service_log(tmp_path, r"FAIL: waiter time from=<no address>", attempt)
    assert service_log(tmp_path).count("FAIL: waiter") == 2  # one per client


def test_wait_request_turned_away_without_a_descriptor_is_looked_at_later(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Turning the client away means accepting it: with no descriptor left, the
    # connection stays queued and the socket readable, so the service pauses as a
    # listener out of descriptors does, instead of refusing it again on every turn.
    hour = (time.localtime().tm_hour + 2) % 24
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(
        f"service waiter\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = yes\n"
        f"\tuser = root\n\tserver = {sys.executable}\n"
        f"\tserver_args = -I -S {HELPERS / 'wait_stream_server.py'}\n"
        f"\tbind = 127.0.0.1\n\tport = {port}\n\taccess_times = {hour:02d}:00-{hour:02d}:59\n"
        f"\tcps = 0 0\n\tlog_type = FILE {log}\n\tlog_on_failure = HOST\n}}\n")
    pid = daemon.proc.pid
    with connect(port) as first:        # one FAIL line: the service log is open now
        read_all(first)
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = min(set(range(len(used) + 1)) - used)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with connect(port) as conn:
            daemon.wait_for_log("ERROR: waiter: accept failed: Too many open files "
                                r"\(errno = 24\); retrying in 1 seconds")
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            try:
                assert read_all(conn) == b""    # turned away once it could be accepted
            except ConnectionResetError:
                pass
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert daemon.proc.poll() is None


def test_connections_queued_together_are_served_one_after_another(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    """Requests already complete in the listen queue are each served and closed before
    the next is accepted: none waits on another's slot, `instances = 1` refuses none."""
    port = free_port()
    daemon = daemons.start_services([
        builtin("echo", port, instances=1, cps=(100000, 1), **logged(tmp_path))])
    daemon.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(daemon.pid) == "T", what="daemon stopped")
        clients = [connect(port) for _ in range(10)]
        for number, c in enumerate(clients):
            c.sendall(b"%d\n" % number)
            c.shutdown(socket.SHUT_WR)
    finally:
        daemon.signal(signal.SIGCONT)
    for number, c in enumerate(clients):
        with c:
            assert read_all(c) == b"%d\n" % number
    wait_service_log(tmp_path, r"EXIT: echo status=0 pid=0", 10)
    assert "FAIL" not in service_log(tmp_path)


def test_a_server_that_exited_before_the_next_connection_frees_its_slot_for_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    """The server's exit and the next connection reach the daemon in the same turn: the
    exit is taken first (xinetd reads its signal pipe before its sockets), so the
    client the freed slot is waiting for is not refused by `instances = 1`."""
    port = free_port()
    daemon = daemons.start_services([make_service(
        name="one", port=port, server="/bin/sh", server_argv=("sh", "-c", "read x; echo $x"),
        instances=1, **logged(tmp_path))])
    first = connect(port)
    # Its START line, not the daemon's first child: that may be a helper of the daemon
    # (the server not started yet, and then never, with the daemon stopped).
    server = int(re.findall(r"START: one pid=(\d+)",
                            wait_service_log(tmp_path, r"START: one pid="))[0])
    daemon.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(daemon.pid) == "T", what="daemon stopped")
        with first:
            first.sendall(b"first\n")
            assert read_all(first) == b"first\n"
        wait_until(lambda: process_state(server) == "Z", what="the server's exit")
        second = connect(port)
    finally:
        daemon.signal(signal.SIGCONT)
    with second:
        second.sendall(b"second\n")
        assert read_all(second) == b"second\n"
    wait_service_log(tmp_path, r"EXIT: one status=0", 2)
    assert "FAIL" not in service_log(tmp_path)


def test_a_tcpmux_handover_counts_once_against_the_process_limit(daemons: DaemonFactory,
                                                                  tmp_path: Path) -> None:
    # xinetd's tcpmux child execs the TCPMUX service's server: one process. The
    # session's slot once stayed taken while that service's checks counted the
    # running servers: with -limit 1 every tcpmux client was refused (process_limit).
    port = free_port()
    log = tmp_path / "services.log"
    conf = (f"defaults\n{{\n\tlog_type = FILE {log}\n\tlog_on_failure = HOST\n"
            f"\tlog_on_success = EXIT\n}}\n"
            f"service tcpmux\n{{\n\ttype = INTERNAL UNLISTED\n\tport = {port}\n"
            f"\tbind = 127.0.0.1\n\tsocket_type = stream\n\twait = no\n}}\n"
            f"service foo\n{{\n\ttype = TCPMUX UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = /bin/echo\n"
            f"\tserver_args = hello\n}}\n")
    daemons.start_config(conf, "-limit", "1")
    for served in range(1, 3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"foo\r\n")
            reply = b""
            while data := conn.recv(100):
                reply += data
        assert reply == b"hello\n", log.read_text() if log.exists() else ""
        # The next client comes once this server is reaped (one slot in all).
        wait_until(lambda: log.exists() and log.read_text().count("EXIT: foo") == served)
    assert "FAIL" not in log.read_text()
