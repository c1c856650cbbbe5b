"""tcpmux (RFC 1078) on a real Loop: name lookup, +Go, help, and no lost bytes."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest
from internal_support import DEADLINE, LoopThread, make_service, recv_all, wait_for

from pyxinetd import internal
from pyxinetd.config.model import ServiceConfig
from pyxinetd.internal import tcpmux

SERVICES = {
    "foo": make_service("foo", types=frozenset({"TCPMUX"}), server="/bin/cat"),
    "plus": make_service("plus", types=frozenset({"TCPMUXPLUS"}), server="/bin/cat"),
}


def lookup(name: str) -> ServiceConfig | None:
    return SERVICES.get(name.lower())


class Mux:
    def __init__(self) -> None:
        self.lt = LoopThread()
        self.launched: list[tuple[ServiceConfig, socket.socket, Any]] = []
        self.reports: list[str] = []
        mux = make_service("tcpmux", port=1)
        self.addr = self.lt.listen(lambda loop, conn, peer: internal.start_tcpmux(
            loop, mux, conn, peer, lookup, self.launch, self.lt.on_close("tcpmux"),
            names=lambda: sorted(SERVICES), report=self.reports.append))

    def launch(self, service: ServiceConfig, conn: socket.socket, peer: Any) -> None:
        # The daemon's launch runs the service's checks, acknowledges and spawns the
        # server; here the service admits every client and the test plays the server.
        tcpmux.acknowledge(service, conn)
        self.launched.append((service, conn, peer))

    def __enter__(self) -> Mux:
        self.lt.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lt.stop()
        for _, conn, _ in self.launched:
            conn.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(self.addr[:2], timeout=DEADLINE)


def test_bytes_after_the_name_reach_the_server() -> None:
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"FOO\r\nfirst bytes for the server")
        assert wait_for(lambda: len(mux.launched) == 1)
        service, conn, peer = mux.launched[0]
        assert service.name == "foo"
        assert peer[0] == "127.0.0.1"
        assert conn.getblocking()     # the server inherits the file status flags
        conn.settimeout(DEADLINE)
        assert recv_all(conn, 26) == b"first bytes for the server"
        # TCPMUX (not PLUS): nothing was sent to the client.
        conn.sendall(b"from server")
        conn.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b"from server"
        assert mux.lt.closes == [("tcpmux",)]


def test_tcpmuxplus_sends_go_first() -> None:
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"plus\r\n")
        assert wait_for(lambda: len(mux.launched) == 1)
        _, conn, _ = mux.launched[0]
        conn.sendall(b"data")
        conn.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b"+Go\r\ndata"


def test_the_session_leaves_go_to_the_launch() -> None:
    """`+Go` says the service started: the session hands a TCPMUXPLUS client over
    without it, for the launch to send once the service's own checks admitted it."""
    got: list[socket.socket] = []
    lt = LoopThread()
    mux = make_service("tcpmux", port=1)
    addr = lt.listen(lambda loop, conn, peer: internal.start_tcpmux(
        loop, mux, conn, peer, lookup, lambda svc, conn, peer: got.append(conn),
        lt.on_close("tcpmux")))
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        c.sendall(b"plus\r\n")
        assert wait_for(lambda: len(got) == 1)
        got[0].close()      # refused: closed without a byte
        assert recv_all(c) == b""


@pytest.mark.parametrize("first,second", [(b"fo", b"o\r\nrest"), (b"foo\r", b"\nrest")])
def test_name_split_over_two_segments(first: bytes, second: bytes) -> None:
    with Mux() as mux, mux.connect() as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(first)
        time.sleep(0.05)
        assert mux.launched == []
        c.sendall(second)
        assert wait_for(lambda: len(mux.launched) == 1)
        _, conn, _ = mux.launched[0]
        assert recv_all(conn, 4) == b"rest"


def test_unknown_name_is_refused_without_nul() -> None:
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"nope\r\n")
        assert recv_all(c) == b"-Service name not found\r\n"
        assert mux.launched == []
        assert wait_for(lambda: mux.lt.closes == [("tcpmux",)])


def test_help_lists_the_tcpmux_services() -> None:
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"HELP\r\n")
        assert recv_all(c) == b"foo\r\nplus\r\n"


@pytest.mark.parametrize("data", [b"\r\n", b"x" * 2000, b"foo\nno-crlf"])
def test_bad_lines_close_silently(data: bytes) -> None:
    with Mux() as mux, mux.connect() as c:
        c.sendall(data)
        if not data.endswith(b"\r\n") and len(data) < tcpmux.MAX_LINE:
            c.shutdown(socket.SHUT_WR)     # EOF before any CRLF
        try:
            assert recv_all(c) == b""
        except ConnectionResetError:
            pass        # unread bytes at close turn the FIN into a reset
        assert mux.launched == []
        assert wait_for(lambda: mux.lt.closes == [("tcpmux",)])


def closed_silently(mux: Mux, c: socket.socket) -> None:
    """No reply (an EOF, or a reset over bytes never read), no server, the session over."""
    try:
        assert recv_all(c) == b""
    except ConnectionResetError:
        pass
    assert mux.launched == []
    assert wait_for(lambda: mux.lt.closes == [("tcpmux",)])


@pytest.mark.parametrize("data", [b"foo\nmore", b"foo\nmore\r"])
def test_a_bare_lf_with_more_after_it_closes_at_once(data: bytes) -> None:
    # No CRLF can make `foo\nmore` a service name: the connection is closed without
    # waiting for the client's EOF or the name timeout, as xinetd closes it.
    with Mux() as mux, mux.connect() as c:
        c.sendall(data)
        closed_silently(mux, c)


def test_a_line_past_the_limit_in_two_segments_closes_silently() -> None:
    # 1102 bytes with the CRLF: closed without a reply, as the same line in one
    # segment is (the CRLF does not come within MAX_LINE bytes).
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"a" * 1000)
        time.sleep(0.2)     # a separate segment, read on its own
        c.sendall(b"b" * 100 + b"\r\n")
        closed_silently(mux, c)


def test_a_client_that_never_sends_its_name_is_closed_at_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # xinetd waits forever; pyxinetd closes at NAME_TIMEOUT, here made due at once.
    monkeypatch.setattr(tcpmux, "NAME_TIMEOUT", 0.0)
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"plu")       # a partial name, then nothing
        assert recv_all(c) == b""
        assert mux.launched == []
        assert wait_for(lambda: mux.lt.closes == [("tcpmux",)])


@pytest.mark.parametrize("reset", [False, True], ids=["eof", "reset"])
def test_a_client_gone_before_sending_anything_is_a_read_failure(reset: bool) -> None:
    # xinetd's tcpmux logs `read failed` when its one read of the name gets nothing.
    with Mux() as mux:
        c = mux.connect()
        if reset:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        assert wait_for(lambda: mux.lt.closes == [("tcpmux",)])
        assert mux.reports == ["read failed"]


def test_bytes_that_make_no_name_are_no_read_failure() -> None:
    # xinetd's read got them: the name is bad, and the connection closes silently.
    with Mux() as mux, mux.connect() as c:
        c.sendall(b"fo")
        c.shutdown(socket.SHUT_WR)
        closed_silently(mux, c)
        assert mux.reports == []
