"""A stream session's optimistic I/O: what it does at once, and what it leaves to the loop.

Driven by hand on one thread: the test owns the Loop and turns it with run_once(), so it
can look at the selector and at on_close between steps.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest
from internal_support import DEADLINE, make_service

from pyxinetd import internal
from pyxinetd.internal import session
from pyxinetd.loop import READ, WRITE, Loop


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server side) of one accepted loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=DEADLINE)
        conn, _ = listener.accept()
    yield client, conn
    client.close()
    conn.close()


def _registered(loop: Loop) -> dict[int, int]:
    return {key.fd: key.events for key in loop.selector.get_map().values()}


def _recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_queued_request_is_answered_before_start_returns(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = pair
    client.sendall(b"hello\n")
    client.shutdown(socket.SHUT_WR)
    loop, closes = Loop(), []
    try:
        # Wait until the request and its EOF are both queued on the server side.
        poller = select.poll()
        poller.register(conn, select.POLLRDHUP)
        assert poller.poll(DEADLINE * 1000)
        session = internal.start_stream(loop, make_service("echo"), conn, ("127.0.0.1", 1),
                                        lambda: closes.append("closed"))
        # Served and closed inside start_stream, without touching the selector, but
        # on_close waits for the loop.
        assert session.closed
        assert conn.fileno() == -1
        assert _registered(loop) == {}
        assert closes == []
        loop.run_once()
        assert closes == ["closed"]
        assert _recv_all(client) == b"hello\n"
    finally:
        loop.close()


def test_request_not_yet_sent_waits_for_read_only(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = pair
    loop, closes = Loop(), []
    try:
        session = internal.start_stream(loop, make_service("echo"), conn, ("127.0.0.1", 1),
                                        lambda: closes.append("closed"))
        assert not session.closed
        assert _registered(loop) == {conn.fileno(): READ}    # nothing to write: no WRITE
        client.sendall(b"ping\n")
        loop.run_once()
        assert client.recv(5) == b"ping\n"                  # echoed in the same turn
        assert _registered(loop) == {conn.fileno(): READ}
        client.shutdown(socket.SHUT_WR)
        loop.run_once()
        assert session.closed and closes == ["closed"]
        assert _registered(loop) == {}
        assert _recv_all(client) == b""
    finally:
        loop.close()


def test_peer_not_reading_leaves_output_for_write_readiness(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    loop, closes = Loop(), []
    try:
        session = internal.start_stream(loop, make_service("chargen"), conn,
                                        ("127.0.0.1", 1), lambda: closes.append("closed"))
        # chargen writes at once until the socket is full, then waits for WRITE only.
        assert _registered(loop) == {conn.fileno(): WRITE}
        assert client.recv(74).endswith(b"\r\n")
        session.close()
        assert closes == ["closed"]                         # after start: called at once
        assert _registered(loop) == {}
    finally:
        loop.close()


def test_reply_session_sends_and_closes_at_once(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = pair
    loop, closes = Loop(), []
    try:
        session = internal.start_stream(loop, make_service("time"), conn, ("127.0.0.1", 1),
                                        lambda: closes.append("closed"))
        assert session.closed and _registered(loop) == {}
        loop.run_once()
        assert closes == ["closed"]
        assert len(_recv_all(client)) == 4
    finally:
        loop.close()


def _queued(conn: socket.socket, size: int) -> None:
    """Wait until `size` bytes the client sent are queued on the server side."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    assert poller.poll(DEADLINE * 1000)
    assert len(conn.recv(size, socket.MSG_PEEK | socket.MSG_WAITALL)) == size


@pytest.mark.parametrize("sent", [b"\r\n", b"x" * 300_000], ids=["newline", "flood"])
def test_reply_reaches_a_client_that_sent_something_first(
        pair: tuple[socket.socket, socket.socket], sent: bytes) -> None:
    # A client that types a line at daytime: the unread input must not turn the close
    # into a reset that throws the reply away.
    client, conn = pair
    client.setblocking(False)
    try:
        client.send(sent)       # as much as fits: the flood fills the daemon's buffer
    except BlockingIOError:
        pass
    client.setblocking(True)
    client.settimeout(DEADLINE)
    _queued(conn, min(len(sent), 65536))
    loop, closes = Loop(), []
    try:
        session = internal.start_stream(loop, make_service("daytime"), conn,
                                        ("127.0.0.1", 1), lambda: closes.append("closed"))
        assert session.closed
        loop.run_once()
        assert closes == ["closed"]
        reply = client.recv(100)
        assert reply.endswith(b"\r\n") and len(reply) > 20, reply
        if len(sent) < 65536:
            assert client.recv(100) == b""      # a FIN, not a reset
    finally:
        loop.close()


def test_tcpmux_reply_reaches_a_client_that_sent_more_after_the_name(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = pair
    request = b"nosuch\r\nand then some"
    client.sendall(request)
    _queued(conn, len(request))
    loop = Loop()
    try:
        session = internal.start_tcpmux(loop, make_service("tcpmux"), conn,
                                        ("127.0.0.1", 1), lambda name: None,
                                        lambda svc, c, peer: None, lambda: None)
        for _ in range(10):
            if session.closed:
                break
            loop.run_once()
        assert session.closed
        assert _recv_all(client) == b"-Service name not found\r\n"
    finally:
        loop.close()


def test_input_arriving_after_the_discard_cannot_reset_away_the_reply(
        pair: tuple[socket.socket, socket.socket]) -> None:
    # The client's line arrives between the last read of discard_input and the close:
    # the close resets the connection, but the reply (written with MSG_MORE, as a
    # finishing session writes it) and the FIN must already be on their way.
    client, conn = pair
    conn.send(b"27 NOV 2026 08:25:06 UTC\r\n", socket.MSG_MORE)
    session.discard_input(conn)
    client.sendall(b"hello\r\n")
    _queued(conn, 7)
    conn.close()
    client.settimeout(DEADLINE)
    assert client.recv(100) == b"27 NOV 2026 08:25:06 UTC\r\n"
    assert client.recv(100) == b""      # the FIN came before the reset
