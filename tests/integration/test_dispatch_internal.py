"""Internal services and redirect dispatched by the master, counted as instances."""

from __future__ import annotations

import socket
from pathlib import Path

from pyxinetd.config.model import SocketType
from tests.daemon import DaemonFactory, free_port
from tests.integration.test_dispatch import (connect, logged, read_all, udp_client,
                                             wait_service_log)
from tests.factories import make_service


def builtin(name: str, port: int, **overrides: object):  # type: ignore[no-untyped-def]
    return make_service(name=name, port=port, types={"INTERNAL"}, server=None,
                        server_argv=(), environment=None, **overrides)


def test_internal_echo_stream_and_dgram(daemons: DaemonFactory, tmp_path: Path) -> None:
    tcp, udp = free_port(), free_port()
    services = [
        builtin("echo", tcp, id="echo-stream", **logged(tmp_path, instances=1)),
        builtin("echo", udp, id="echo-dgram", socket_type=SocketType.DGRAM, wait=True),
    ]
    daemons.start_services(services)
    first = connect(tcp)
    first.sendall(b"hello")
    assert first.recv(100) == b"hello"
    # The open in-loop session counts as the one allowed instance.
    with connect(tcp) as second:
        assert read_all(second) == b""
    wait_service_log(tmp_path, r"FAIL: echo-stream service_limit from=127\.0\.0\.1")
    first.close()
    wait_service_log(tmp_path, r"EXIT: echo-stream status=0 pid=0")
    with connect(tcp) as third:
        third.sendall(b"again")
        assert third.recv(100) == b"again"
    client = udp_client()
    with client:
        client.sendto(b"ping", ("127.0.0.1", udp))
        assert client.recv(100) == b"ping"


def test_redirect_relays_and_logs_traffic(daemons: DaemonFactory, tmp_path: Path) -> None:
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    with target:
        port = free_port()
        svc = make_service(name="redir", port=port, server=None, server_argv=(),
                           environment=None, redirect=("127.0.0.1", target.getsockname()[1]),
                           **logged(tmp_path, log_on_success={"PID", "HOST", "TRAFFIC",
                                                              "EXIT"}))
        daemons.start_services([svc])
        with connect(port) as conn:
            inner, _ = target.accept()
            with inner:
                conn.sendall(b"abc")
                assert inner.recv(100) == b"abc"
                inner.sendall(b"12345")
                assert conn.recv(100) == b"12345"
        wait_service_log(tmp_path, r"TRAFFIC: redir in=3\(bytes\) out=5\(bytes\)")
