"""The stream and dgram builtins on a real Loop, with real sockets on loopback."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from typing import Any

import pytest
from internal_support import DEADLINE, LoopThread, make_service, recv_all, wait_for

from pyxinetd import internal
from pyxinetd.config.model import SocketType
from pyxinetd.internal import chargen, session
from pyxinetd.internal.status import ServerInfo

DAYTIME = re.compile(rb"^\d\d (JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC) \d{4} "
                     rb"\d\d:\d\d:\d\d \S+\r\n$")


class View:
    def __init__(self) -> None:
        self.services = [make_service("echo", port=7),
                         make_service("tcpmux", id="tcpmux"),
                         make_service("foo", types=frozenset({"TCPMUX"}))]
        self.servers = [ServerInfo(4242, "ftp", "127.0.0.1", 0.0)]

    def active_services(self) -> list[Any]:
        return self.services

    def port_of(self, svc: Any) -> int | None:
        port: int | None = svc.port
        return port

    def running_servers(self) -> list[ServerInfo]:
        return self.servers

    def datagram_builtin_ports(self) -> frozenset[int]:
        return frozenset(s.port for s in self.services if s.is_internal and s.port is not None
                         and s.socket_type is SocketType.DGRAM)


def serve(lt: LoopThread, name: str, **kw: Any) -> tuple[Any, ...]:
    svc = make_service(name)
    return lt.listen(lambda loop, conn, peer: internal.start_stream(
        loop, svc, conn, peer, lt.on_close(name), **kw))


def connect(addr: tuple[Any, ...]) -> socket.socket:
    return socket.create_connection(addr[:2], timeout=DEADLINE)


def test_echo_returns_every_byte_and_ends_on_eof() -> None:
    payload = bytes(range(256)) * 4096      # 1 MiB: more than any buffer
    lt = LoopThread()
    addr = serve(lt, "echo")
    with lt:
        with connect(addr) as c:
            sender = threading.Thread(target=lambda: (c.sendall(payload),
                                                      c.shutdown(socket.SHUT_WR)))
            sender.start()
            got = recv_all(c)
            sender.join(DEADLINE)
        assert got == payload
        assert wait_for(lambda: lt.closes == [("echo",)])


def test_greeting_comes_before_the_echo() -> None:
    lt = LoopThread()
    addr = serve(lt, "echo", greeting=b"welcome\r\n")
    with lt:
        with connect(addr) as c:
            c.sendall(b"ping")
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"welcome\r\nping"


def test_many_concurrent_echo_sessions() -> None:
    lt = LoopThread()
    addr = serve(lt, "echo")
    with lt:
        clients = [connect(addr) for _ in range(100)]
        try:
            for i, c in enumerate(clients):
                c.sendall(b"client %d\n" % i)
            for i, c in enumerate(clients):
                assert recv_all(c, len(b"client %d\n" % i)) == b"client %d\n" % i
        finally:
            for c in clients:
                c.close()
        assert wait_for(lambda: len(lt.closes) == 100)


def _fill_without_reading(c: socket.socket, total: int) -> int:
    """Send up to `total` bytes without ever reading; stop when the kernel pushes back."""
    c.setblocking(False)
    sent = 0
    stalls = 0
    while sent < total and stalls < 50:
        try:
            sent += c.send(b"x" * 65536)
            stalls = 0
        except BlockingIOError:
            stalls += 1
            time.sleep(0.01)
    return sent


def test_stalled_clients_do_not_stall_others_and_memory_stays_bounded() -> None:
    lt = LoopThread()
    echo_addr = serve(lt, "echo")
    chargen_addr = serve(lt, "chargen")
    with lt:
        # Two clients that never read: one on chargen, one flooding echo.
        stalled_chargen = connect(chargen_addr)
        stalled_echo = connect(echo_addr)
        stalled_chargen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            assert wait_for(lambda: len(lt.sessions) == 2)
            _fill_without_reading(stalled_echo, 64 * 1024 * 1024)
            # Another client is served normally meanwhile.
            with connect(echo_addr) as c:
                c.sendall(b"still alive")
                assert recv_all(c, 11) == b"still alive"
            for s in lt.sessions[:2]:
                assert not s.closed
                assert s.pending <= session.OUTPUT_LIMIT + session.RECV_SIZE + 8192
        finally:
            stalled_chargen.close()
            stalled_echo.close()


def test_chargen_stream_matches_xinetds_lines() -> None:
    chargen.DATAGRAM_CYCLE.position = 0     # as in a daemon that answered no datagram
    lt = LoopThread()
    addr = serve(lt, "chargen")
    with lt:
        with connect(addr) as c:
            got = recv_all(c, 74 * 300)
        assert got == b"".join(chargen.line(k) for k in range(300))
        assert got[:74] == b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
        lines = got.split(b"\r\n")[:-1]
        assert all(len(line) == 72 for line in lines)
        # The counter wraps at 95: lines 93 and 94 restart at '!' and '"', 95 is line 0.
        assert [line[:1] for line in lines[92:97]] == [b"}", b"!", b'"', b"!", b'"']
        assert lines[95] == lines[0]
        assert wait_for(lambda: lt.closes == [("chargen",)])


def test_discard_reads_until_eof() -> None:
    lt = LoopThread()
    addr = serve(lt, "discard")
    with lt:
        with connect(addr) as c:
            c.sendall(b"y" * 300000)
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b""
        assert wait_for(lambda: lt.closes == [("discard",)])


def test_daytime_and_time_reply_and_close() -> None:
    lt = LoopThread()
    day = serve(lt, "daytime")
    tim = serve(lt, "time")
    with lt:
        with connect(day) as c:
            text = recv_all(c)
        assert DAYTIME.match(text), text
        before = int(time.time()) + 2208988800
        with connect(tim) as c:
            raw = recv_all(c)
        after = int(time.time()) + 2208988800
        assert len(raw) == 4
        assert before <= struct.unpack("!I", raw)[0] <= after
        assert wait_for(lambda: sorted(lt.closes) == [("daytime",), ("time",)])


def test_servers_and_services_listings() -> None:
    view = View()
    lt = LoopThread()
    servers = serve(lt, "servers", view=view)
    services = serve(lt, "services", view=view)
    with lt:
        with connect(services) as c:
            assert recv_all(c) == b"echo tcp 7\r\ntcpmux tcp -\r\nfoo tcp -\r\n"
        with connect(servers) as c:
            text = recv_all(c)
        assert re.fullmatch(rb"4242 ftp 127\.0\.0\.1 1970-01-01T\d\d:\d\d:\d\d[+-]\d{4}\r\n",
                            text), text


def test_close_from_the_master_calls_on_close_once() -> None:
    lt = LoopThread()
    addr = serve(lt, "echo")
    with lt:
        c = connect(addr)
        assert wait_for(lambda: len(lt.sessions) == 1)
    # Leaving the block stopped the loop and closed the open session, as the master
    # does at shutdown; a second close() changes nothing.
    try:
        s = lt.sessions[0]
        assert s.closed
        s.close()
        assert lt.closes == [("echo",)]
        assert recv_all(c) == b""
    finally:
        c.close()


def test_builtin_table() -> None:
    assert internal.is_builtin(make_service("echo"))
    assert not internal.is_builtin(make_service("echo", types=frozenset()))
    assert not internal.is_builtin(make_service("tcpmux", socket_type=SocketType.DGRAM))
    assert internal.supports("servers", SocketType.STREAM)
    # On dgram a forged source would get the whole list: stream only, as xinetd had them.
    assert not internal.supports("servers", SocketType.DGRAM)
    assert not internal.supports("services", SocketType.DGRAM)
    assert not internal.supports("nosuch", SocketType.STREAM)


# ---------------------------------------------------------------- datagrams

@pytest.fixture
def udp_pair() -> Any:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(DEADLINE)
    yield server, client
    server.close()
    client.close()


def ask(server: socket.socket, client: socket.socket, name: str, data: bytes,
        **kw: Any) -> bytes:
    client.sendto(data, server.getsockname())
    internal.handle_datagram(make_service(name, socket_type=SocketType.DGRAM), server, **kw)
    return client.recv(65536)


def test_dgram_echo_truncates_at_2048(udp_pair: Any) -> None:
    server, client = udp_pair
    assert ask(server, client, "echo", b"hello") == b"hello"
    assert ask(server, client, "echo", b"a" * 3000) == b"a" * 2048


def test_dgram_chargen_rotation_persists(udp_pair: Any) -> None:
    server, client = udp_pair
    start = chargen.DATAGRAM_CYCLE.position
    replies = [ask(server, client, "chargen", b"") for _ in range(8)]
    assert all(len(r) == 1024 for r in replies)
    for i, reply in enumerate(replies):
        first = start + 14 * i
        assert reply == chargen.lines(first, 13) + chargen.line(first + 13, 60)


def test_dgram_daytime_and_time(udp_pair: Any) -> None:
    server, client = udp_pair
    assert DAYTIME.match(ask(server, client, "daytime", b"?"))
    assert len(ask(server, client, "time", b"?")) == 4


def test_dgram_discard_replies_nothing(udp_pair: Any) -> None:
    server, client = udp_pair
    client.sendto(b"gone", server.getsockname())
    internal.handle_datagram(make_service("discard", socket_type=SocketType.DGRAM), server)
    # The datagram was consumed, and an echo that follows is answered normally.
    assert ask(server, client, "echo", b"next") == b"next"


def test_dgram_never_answers_builtin_ports(udp_pair: Any) -> None:
    server, _ = udp_pair
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 19))
    except OSError:
        peer.close()
        pytest.skip("port 19 is taken or reserved here")
    with peer:
        peer.sendto(b"loop?", server.getsockname())
        internal.handle_datagram(make_service("echo", socket_type=SocketType.DGRAM), server)
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(100)


def test_dgram_with_nothing_queued_does_not_raise(udp_pair: Any) -> None:
    server, _ = udp_pair
    internal.handle_datagram(make_service("echo", socket_type=SocketType.DGRAM), server)


def test_chargen_stream_starts_where_the_datagrams_left_off() -> None:
    """xinetd's forked chargen starts from its copy of the daemon's dgram position."""
    chargen.DATAGRAM_CYCLE.position = 31
    lt = LoopThread()
    addr = serve(lt, "chargen")
    with lt, connect(addr) as c:
        got = recv_all(c, 74 * 2)
    assert got[:1] == b"@" and got[74:75] == b"A"
    assert chargen.DATAGRAM_CYCLE.position == 31
