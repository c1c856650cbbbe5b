"""The four dispatch models, end to end: a real daemon, real sockets, real servers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyxinetd.config.model import FileTarget, SocketType
from tests.daemon import HELPERS, DaemonFactory, free_port, open_fds, python_server, read_log, \
    wait_log_lines
from tests.factories import make_service
from tests.oracle import require_xinetd

TIMEOUT = 10.0
LOGGED = {"PID", "HOST", "EXIT", "DURATION"}


def logged(tmp_path: Path, **overrides: object) -> dict[str, object]:
    return {"log_type": FileTarget(str(tmp_path / "services.log")),
            "log_on_success": LOGGED, "log_on_failure": {"HOST"}, **overrides}


def service_log(tmp_path: Path) -> str:
    return read_log(tmp_path / "services.log")


def wait_service_log(tmp_path: Path, pattern: str, count: int = 1) -> str:
    return wait_log_lines(tmp_path / "services.log", pattern, count, TIMEOUT)


def connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return conn


def read_all(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = conn.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def udp_client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def test_stream_nowait_serves_each_connection(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"), **logged(tmp_path))
    daemons.start_services([svc])
    for _ in range(5):
        with connect(port) as conn:
            assert read_all(conn) == b"hello\n"
    text = wait_service_log(tmp_path, r"EXIT: hello status=0 pid=\d+ duration=\d+\(sec\)", 5)
    assert len(re.findall(r"START: hello pid=\d+ from=127\.0\.0\.1", text)) == 5


def test_stream_nowait_dual_stack_logs_mapped_peer(daemons: DaemonFactory,
                                                   tmp_path: Path) -> None:
    port = free_port()
    svc = make_service(name="dual", port=port, bind=None, family=socket.AF_INET6,
                       server="/bin/echo", server_argv=("echo", "x"), **logged(tmp_path))
    daemons.start_services([svc])
    with connect(port) as conn:
        assert read_all(conn) == b"x\n"
    wait_service_log(tmp_path, r"START: dual pid=\d+ from=::ffff:127\.0\.0\.1")


def test_stream_wait_suspends_until_the_server_exits(daemons: DaemonFactory,
                                                     tmp_path: Path) -> None:
    port = free_port()
    svc = make_service(name="waiter", port=port, wait=True,
                       **python_server("wait_stream_server.py", "hold"), **logged(tmp_path))
    daemon = daemons.start_services([svc])
    first = connect(port)
    first_pid = first.recv(100).decode()
    assert first_pid.startswith("pid=")
    # A second client is queued in the backlog: no second server while the first runs.
    second = connect(port)
    wait_service_log(tmp_path, r"START: waiter pid=\d+ from=<no address>")
    assert len(daemon.children()) == 1
    assert len(re.findall("START: waiter", service_log(tmp_path))) == 1
    first.sendall(b"ping")
    assert first.recv(100) == b"ping"
    first.close()
    # The first server exits, is reaped, the service resumes, the queued client is served.
    second_pid = second.recv(100).decode()
    assert second_pid.startswith("pid=") and second_pid != first_pid
    second.sendall(b"pong")
    assert second.recv(100) == b"pong"
    second.close()
    wait_service_log(tmp_path, r"EXIT: waiter status=0", 2)


def test_dgram_wait_drains_what_the_server_left(daemons: DaemonFactory,
                                                tmp_path: Path) -> None:
    port = free_port()
    svc = make_service(name="udpwait", port=port, socket_type=SocketType.DGRAM, wait=True,
                       **python_server("udp_wait_server.py", "0.5"), **logged(tmp_path))
    daemons.start_services([svc])
    client = udp_client()
    with client:
        client.sendto(b"one", ("127.0.0.1", port))
        reply = client.recv(1000).decode()
        assert reply.startswith("pid=") and reply.endswith("got=one")
        # Queued while the server sleeps: it never reads them; the master drains them.
        client.sendto(b"two", ("127.0.0.1", port))
        client.sendto(b"three", ("127.0.0.1", port))
        wait_service_log(tmp_path, r"EXIT: udpwait status=0")
        # The EXIT line is written just before the drain: a datagram sent in between is
        # drained too, so "four" is sent again until it is answered.
        client.settimeout(0.5)
        deadline = time.monotonic() + TIMEOUT
        while True:
            client.sendto(b"four", ("127.0.0.1", port))
            try:
                reply2 = client.recv(1000).decode()
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "four was never answered"
        assert reply2.endswith("got=four")
        assert reply2.split()[0] != reply.split()[0]
    assert len(re.findall("START: udpwait", service_log(tmp_path))) == 2


def test_dgram_wait_drain_stops_at_an_empty_datagram_as_xinetds(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd's drain() reads until recv() returns 0: an empty datagram ends it, and
    # what follows starts the next server (a client sending a, b, <empty>, c gets two).
    port = free_port()
    svc = make_service(name="udpwait", port=port, socket_type=SocketType.DGRAM, wait=True,
                       **python_server("udp_wait_server.py", "0.5"), **logged(tmp_path))
    daemons.start_services([svc])
    with udp_client() as client:
        client.settimeout(TIMEOUT)
        for data in (b"a", b"b", b"", b"c"):
            client.sendto(data, ("127.0.0.1", port))
        first = client.recv(1000).decode()
        second = client.recv(1000).decode()
    assert first.endswith("got=a") and second.endswith("got=c")
    assert first.split()[0] != second.split()[0]
    wait_service_log(tmp_path, r"EXIT: udpwait status=0", 2)
    assert len(re.findall("START: udpwait", service_log(tmp_path))) == 2


def test_dgram_nowait_runs_one_server_per_peer(daemons: DaemonFactory,
                                               tmp_path: Path) -> None:
    port = free_port()
    svc = make_service(name="udpnowait", port=port, socket_type=SocketType.DGRAM, wait=False,
                       **python_server("dgram_nowait_server.py", "1.5"), **logged(tmp_path))
    daemons.start_services([svc])
    a, b = udp_client(), udp_client()
    with a, b:
        a.sendto(b"a1", ("127.0.0.1", port))
        b.sendto(b"b1", ("127.0.0.1", port))
        reply_a = a.recv(1000).decode()
        reply_b = b.recv(1000).decode()
        assert reply_a.endswith("got=a1") and reply_b.endswith("got=b1")
        assert reply_a.split()[0] != reply_b.split()[0]
        # The same peer's next datagram goes to its running server.
        a.sendto(b"a2", ("127.0.0.1", port))
        reply_a2 = a.recv(1000).decode()
        assert reply_a2 == f"{reply_a.split()[0]} got=a2"
        # Replies come from the service's own address.
        a.sendto(b"a3", ("127.0.0.1", port))
        data, source = a.recvfrom(1000)
        assert source == ("127.0.0.1", port)
    wait_service_log(tmp_path, r"EXIT: udpnowait status=0", 2)


def test_broken_servers_never_wedge_a_service(daemons: DaemonFactory, tmp_path: Path) -> None:
    ports = [free_port() for _ in range(5)]
    services = [
        make_service(name="good", port=ports[0], server="/bin/echo",
                     server_argv=("echo", "ok"), **logged(tmp_path)),
        make_service(name="hang", port=ports[1], server="/bin/sleep",
                     server_argv=("sleep", "300"), **logged(tmp_path)),
        make_service(name="crash", port=ports[2], socket_type=SocketType.DGRAM, wait=True,
                     server="/bin/sh", server_argv=("sh", "-c", "kill -9 $$"),
                     **logged(tmp_path)),
        make_service(name="quick", port=ports[3], socket_type=SocketType.DGRAM, wait=True,
                     server="/bin/true", server_argv=("true",), **logged(tmp_path)),
        make_service(name="noexec", port=ports[4], server="/nonexistent/server",
                     server_argv=("server",), **logged(tmp_path)),
    ]
    daemon = daemons.start_services(services)
    hung = connect(ports[1])
    wait_service_log(tmp_path, r"START: hang pid=\d+")
    with connect(ports[4]) as conn:
        assert read_all(conn) == b""
    client = udp_client()
    with client:
        for round_ in (1, 2):
            client.sendto(b"x", ("127.0.0.1", ports[2]))
            wait_service_log(tmp_path, r"EXIT: crash signal=9", round_)
            client.sendto(b"x", ("127.0.0.1", ports[3]))
            wait_service_log(tmp_path, r"EXIT: quick status=0", round_)
    with connect(ports[0]) as conn:
        assert read_all(conn) == b"ok\n"
    assert re.search(r"ERROR: noexec: .*/nonexistent/server", daemon.log())
    assert "FAIL: noexec fork from=127.0.0.1" in service_log(tmp_path)
    hung.close()
    assert daemon.proc.poll() is None


def test_bind_failure_deactivates_only_that_service(daemons: DaemonFactory,
                                                    tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken:
        busy_port = taken.getsockname()[1]
        port = free_port()
        services = [
            make_service(name="busy", port=busy_port),
            make_service(name="fine", port=port, server="/bin/echo",
                         server_argv=("echo", "fine")),
        ]
        daemon = daemons.start_services(services)
        log = daemon.wait_for_log(r"Started working: 1 available service\n")
        assert "bind failed (Address already in use (errno = 98)). service = busy" in log
        assert "bind retry attempt 10" in log
        assert "Service busy failed to start and is deactivated." in log
        with connect(port) as conn:
            assert read_all(conn) == b"fine\n"


def test_no_services_exits_1_unless_stayalive(daemons: DaemonFactory) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken:
        svc = make_service(name="busy", port=taken.getsockname()[1])
        daemon = daemons.start_services([svc], ready=False, dontfork=False)
        assert daemon.wait_exit() == 1
        assert "no services. Exiting..." in daemon.log()
        alive = daemons.start_services([svc], dontfork=False, stayalive=True)
        alive.wait_for_log("Started working: 0 available services")
        assert alive.proc.poll() is None


def test_command_line_serves_a_configuration_file(daemons: DaemonFactory,
                                                  tmp_path: Path) -> None:
    port = free_port()
    conf = f"""
defaults
{{
    log_type = FILE {tmp_path / "services.log"}
    log_on_success = PID HOST EXIT
}}

service hello
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    user = root
    server = /bin/echo
    server_args = hello
    bind = 127.0.0.1
}}
"""
    daemon = daemons.start_config(conf, "-inetd_ipv6")
    assert "Started working: 1 available service" in daemon.log()
    with connect(port) as conn:
        assert read_all(conn) == b"hello\n"
    wait_service_log(tmp_path, r"EXIT: hello status=0 pid=\d+")
    daemon.signal(15)
    assert daemon.wait_exit() == 0


def test_a_service_log_that_is_a_fifo_without_reader_never_stalls_the_daemon(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Opening a FIFO for writing waits for a reader: the daemon opens its logs without
    # waiting, reports the failure, and goes on serving.
    fifo = tmp_path / "services.fifo"
    os.mkfifo(fifo)
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"),
                       **logged(tmp_path, log_type=FileTarget(str(fifo))))
    daemon = daemons.start_services([svc])
    for _ in range(2):
        with connect(port) as conn:
            assert read_all(conn) == b"hello\n"
    line = daemon.wait_for_log("Cannot open")
    assert f"Cannot open {fifo}: No such device or address (errno = 6)" in line


def test_udp_services_serve_when_the_daemon_starts_with_descriptors_0_to_2_closed(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd-org/xinetd PR 22: a socket that lands on descriptor 0, 1 or 2 is taken for
    # the server's stdin/stdout/stderr (FreeBSD, pfSense: UDP services broken). The
    # daemon puts /dev/null on a closed 0-2 before it opens anything, as xinetd does.
    builtin, waiting, nowait, stream = (free_port() for _ in range(4))

    def udp(name: str, port: int, extra: str, kind: str = "UNLISTED") -> str:
        return (f"service {name}\n{{\n\ttype = {kind}\n\tsocket_type = dgram\n"
                f"\tprotocol = udp\n\tuser = root\n\tbind = 127.0.0.1\n\tport = {port}\n"
                + extra + "}\n")

    daemon = daemons.start_config(
        udp("echo", builtin, "\twait = yes\n", "INTERNAL UNLISTED")
        + udp("udpwait", waiting, f"\twait = yes\n\tserver = {sys.executable}\n"
                                  f"\tserver_args = {HELPERS / 'udp_wait_server.py'}\n")
        + udp("udpnowait", nowait, f"\twait = no\n\tserver = {sys.executable}\n"
                                   f"\tserver_args = {HELPERS / 'dgram_nowait_server.py'}\n")
        + f"service hello\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
          f"\tuser = root\n\tbind = 127.0.0.1\n\tport = {stream}\n\tserver = /bin/echo\n"
          f"\tserver_args = hello\n}}\n",
        wrapper=("sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh"))
    assert [open_fds(daemon.pid)[fd] for fd in (0, 1, 2)] == ["/dev/null"] * 3
    with udp_client() as client:
        client.sendto(b"ping", ("127.0.0.1", builtin))
        assert client.recv(1000) == b"ping"
        client.sendto(b"one", ("127.0.0.1", waiting))
        assert client.recv(1000).decode().endswith("got=one")
        client.sendto(b"two", ("127.0.0.1", nowait))
        assert client.recv(1000).decode().endswith("got=two")
    with connect(stream) as conn:
        assert read_all(conn) == b"hello\n"


def labeled_conf(port: int, tmp_path: Path) -> str:
    return (f"service lab\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tbind = 127.0.0.1\n\tport = {port}\n\tflags = LABELED\n"
            f"\tserver = /bin/echo\n\tserver_args = hello\n"
            f"\tlog_type = FILE {tmp_path / 'services.log'}\n"
            f"\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}}\n")


@pytest.mark.skipif(os.path.exists("/sys/fs/selinux/enforce"), reason="SELinux is enabled")
def test_a_labeled_service_serves_where_selinux_is_off(daemons: DaemonFactory,
                                                      tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(labeled_conf(port, tmp_path))
    assert "service lab: flags = LABELED ignored: SELinux is not enabled" in daemon.log()
    with connect(port) as conn:
        assert read_all(conn) == b"hello\n"
    wait_service_log(tmp_path, r"EXIT: lab status=0")


@pytest.mark.skipif(os.path.exists("/sys/fs/selinux/enforce"), reason="SELinux is enabled")
def test_xinetd_refuses_every_client_of_a_labeled_service_where_selinux_is_off(
        tmp_path: Path) -> None:
    # What the warning above says of xinetd (xinetd/child.c: the context change fails,
    # the child exits 1 before exec).
    xinetd = require_xinetd()
    port = free_port()
    conf, log = tmp_path / "x.conf", tmp_path / "x.log"
    conf.write_text(labeled_conf(port, tmp_path))
    proc = subprocess.Popen([xinetd, "-dontfork", "-f", str(conf), "-filelog", str(log),
                             "-pidfile", str(tmp_path / "x.pid")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_log_lines(log, "Started working", 1, TIMEOUT)
        with connect(port) as conn:
            assert read_all(conn) == b""
        wait_log_lines(log, "ERROR: Changing process context failed for lab", 1, TIMEOUT)
        wait_service_log(tmp_path, r"EXIT: lab status=1")
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
