"""The redirect relay on a real Loop: half-close, byte counts, failures, big transfers."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from internal_support import DEADLINE, LoopThread, make_service, recv_all, wait_for

from pyxinetd import internal, redirect
from pyxinetd.config import load


class Target:
    """A plain blocking TCP server in a thread, one connection at a time."""

    def __init__(self, handler: Callable[[socket.socket], None],
                 family: int = socket.AF_INET, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before listen(): the accepted connection inherits it.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        self.sock.listen(16)
        self.sock.settimeout(DEADLINE)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(DEADLINE)
                self.handler(conn)
        except BaseException as exc:
            self.errors.append(exc)

    def close(self) -> None:
        self.thread.join(DEADLINE)
        self.sock.close()
        assert not self.errors, self.errors


def answer_after_eof(conn: socket.socket) -> None:
    """Read the whole request (until the client's FIN), then answer and close."""
    request = recv_all(conn)
    conn.sendall(b"got %d bytes\n" % len(request) + request[::-1])


def relay(lt: LoopThread, host: str, port: int, **kw: Any) -> tuple[Any, ...]:
    svc = make_service("redir", redirect=(host, port), **kw)
    return lt.listen(lambda loop, conn, peer: internal.start_redirect(
        loop, svc, conn, peer, lt.on_close("traffic"), lt.on_close("error")))


@pytest.fixture
def targets() -> Iterator[list[Target]]:
    made: list[Target] = []
    yield made
    for t in made:
        t.close()


def test_half_close_passes_through_and_bytes_are_counted(targets: list[Target]) -> None:
    target = Target(answer_after_eof)
    targets.append(target)
    request = b"0123456789" * 5000
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", target.port)
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        c.sendall(request)
        c.shutdown(socket.SHUT_WR)       # xinetd would end the session here
        reply = recv_all(c)
        assert reply == b"got 50000 bytes\n" + request[::-1]
        assert wait_for(lambda: lt.closes == [("traffic", len(request), len(reply))])


def test_large_transfer_both_ways_at_once(targets: list[Target]) -> None:
    def echo(conn: socket.socket) -> None:
        while chunk := conn.recv(65536):
            conn.sendall(chunk)
    target = Target(echo)
    targets.append(target)
    payload = bytes(range(256)) * 16384     # 4 MiB, far above the buffer limit
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", target.port, flags=frozenset({"KEEPALIVE"}))
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        sender = threading.Thread(target=lambda: (c.sendall(payload),
                                                  c.shutdown(socket.SHUT_WR)))
        sender.start()
        assert wait_for(lambda: len(lt.sessions) == 1)
        session = lt.sessions[0]
        got = recv_all(c)
        sender.join(DEADLINE)
        assert got == payload
        assert wait_for(lambda: lt.closes == [("traffic", len(payload), len(payload))])
        assert session.closed


def test_socket_options(targets: list[Target]) -> None:
    seen: list[Any] = []
    target = Target(lambda conn: seen.append(recv_all(conn)))
    targets.append(target)
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", target.port, flags=frozenset({"KEEPALIVE"}))
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        assert wait_for(lambda: len(lt.sessions) == 1)
        s = lt.sessions[0]
        assert wait_for(lambda: s._connected)
        assert s.out.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert s.out.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        assert s.conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        c.sendall(b"x")
    assert wait_for(lambda: seen == [b"x"])


def test_connection_refused_is_reported_once() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()           # nothing listens there now
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", port)
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        assert recv_all(c) == b""
        assert wait_for(lambda: len(lt.closes) == 1)
    assert lt.closes == [("error", "can't connect to remote host 127.0.0.1: "
                                   "Connection refused (errno = 111)")]


def test_greeting_reaches_the_client_when_the_target_refuses() -> None:
    """banner_success is written before the target is tried, as xinetd does."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))        # bound, never listening: refused
    svc = make_service("redir", redirect=("127.0.0.1", probe.getsockname()[1]))
    lt = LoopThread()
    addr = lt.listen(lambda loop, conn, peer: internal.start_redirect(
        loop, svc, conn, peer, lt.on_close("traffic"), lt.on_close("error"),
        greeting=b"welcome\r\n"))
    with lt, probe, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        assert recv_all(c) == b"welcome\r\n"
        assert wait_for(lambda: len(lt.closes) == 1)
    assert lt.closes[0][0] == "error"


def test_target_name_is_looked_up_when_read_and_greeting_not_counted(
        targets: list[Target], tmp_path: Path) -> None:
    # The name is looked up by the configuration's reader (xinetd's choice: its first
    # IPv4 address), so the service holds a number and the loop never asks DNS.
    target = Target(answer_after_eof)
    targets.append(target)
    conf = tmp_path / "xinetd.conf"
    conf.write_text("service redir\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                    "\tprotocol = tcp\n\twait = no\n\tport = 1\n\tuser = root\n"
                    f"\tredirect = localhost {target.port}\n}}\n")
    svc = load(str(conf)).services[0]
    assert svc.redirect == ("127.0.0.1", target.port)
    assert redirect.resolve_targets([svc]) == {}
    lt = LoopThread()
    addr = lt.listen(lambda loop, conn, peer: internal.start_redirect(
        loop, svc, conn, peer, lt.on_close("traffic"), lt.on_close("error"),
        greeting=b"hello\r\n"))
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        c.sendall(b"abc")
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b"hello\r\ngot 3 bytes\ncba"
        assert wait_for(lambda: lt.closes == [("traffic", 3, 15)])


def test_a_target_name_is_never_looked_up_in_the_loop() -> None:
    # Built without the reader (which would have looked it up), the name is refused
    # by resolve_targets() as not numeric rather than sent to DNS from the loop.
    svc = make_service("redir", redirect=("localhost", 1))
    errors = redirect.resolve_targets([svc])
    assert list(errors) == ["redir"]
    assert "localhost" in errors["redir"]


def test_ipv6_service_to_ipv4_target(targets: list[Target]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    target = Target(answer_after_eof)
    targets.append(target)
    svc = make_service("redir", redirect=("127.0.0.1", target.port),
                       family=socket.AF_INET6)
    lt = LoopThread()
    try:
        addr = lt.listen(lambda loop, conn, peer: internal.start_redirect(
            loop, svc, conn, peer, lt.on_close("traffic"), lt.on_close("error")),
            family=socket.AF_INET6)
    except OSError:
        target.sock.close()
        pytest.skip("no ::1 here")
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        c.sendall(b"v6")
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b"got 2 bytes\n6v"
        assert wait_for(lambda: len(lt.closes) == 1)
    assert lt.closes[0][0] == "traffic"


def test_client_reset_ends_the_relay(targets: list[Target]) -> None:
    done = threading.Event()

    def hold(conn: socket.socket) -> None:
        recv_all(conn)      # returns when the relay closes its side
        done.set()
    target = Target(hold)
    targets.append(target)
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", target.port)
    with lt:
        c = socket.create_connection(addr[:2], timeout=DEADLINE)
        c.sendall(b"abc")
        assert wait_for(lambda: len(lt.sessions) == 1 and lt.sessions[0]._connected)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()           # RST
        assert done.wait(DEADLINE)
        assert wait_for(lambda: len(lt.closes) == 1)
    assert lt.closes[0][0] == "traffic"


SIOCOUTQ = 0x5411       # bytes of a socket's send queue its peer has not acknowledged
STALL = 0.3             # no progress for this long: every buffer on the way is full
CYCLE = bytes(range(256)) + b"!"      # a lost or repeated chunk shows
CYCLES = CYCLE * (65536 // len(CYCLE) + 2)


def stream(start: int, size: int) -> bytes:
    """`size` bytes of the endless CYCLE stream from offset `start`."""
    if size > len(CYCLES) - len(CYCLE):
        return b"".join(stream(at, min(65536, start + size - at))
                        for at in range(start, start + size, 65536))
    offset = start % len(CYCLE)
    return CYCLES[offset:offset + size]


def send_until_stalled_then_reset(sock: socket.socket) -> int:
    """Send the stream until nothing moves, then reset: returns how many bytes reached
    the peer's kernel (what the reset does not throw away)."""
    sock.settimeout(STALL)
    sent = 0
    try:
        while True:
            sent += sock.send(stream(sent, 65536))
    except TimeoutError:
        pass
    unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return sent - int(unacked)


def test_target_reset_still_delivers_what_the_relay_read(targets: list[Target]) -> None:
    """A target that resets after a large answer (a server closing over unread input
    does): everything the relay received before the reset reaches the slow client,
    then a FIN (xinetd's child wrote each chunk before reading the next)."""
    delivered: list[int] = []
    target = Target(lambda conn: delivered.append(send_until_stalled_then_reset(conn)))
    targets.append(target)
    svc = make_service("redir", redirect=("127.0.0.1", target.port))

    def start(loop: Any, conn: socket.socket, peer: Any) -> Any:
        # A small fixed send buffer towards the client: the kernel cannot take over
        # what the relay holds, as on a slow network.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return internal.start_redirect(loop, svc, conn, peer, lt.on_close("traffic"),
                                       lt.on_close("error"))
    lt = LoopThread()
    addr = lt.listen(start)
    with lt, socket.socket() as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(DEADLINE)
        c.connect(addr[:2])
        assert wait_for(lambda: delivered != [])     # the target has reset
        got = recv_all(c)
        assert len(got) == delivered[0] and got == stream(0, len(got))
        # Done too, as a client is once it has the answer and the FIN: the relay, which
        # reads a client whose target is gone until its EOF, ends.
        c.shutdown(socket.SHUT_WR)
        assert wait_for(lambda: lt.closes == [("traffic", 0, len(got))])


def test_client_reset_still_delivers_what_the_relay_read(targets: list[Target]) -> None:
    """The mirror case: a client that sends a lot, then resets; the slow target still
    gets all the relay received from it, then a FIN."""
    go = threading.Event()
    received: list[bytes] = []

    def slow(conn: socket.socket) -> None:
        go.wait(DEADLINE)
        received.append(recv_all(conn))
    target = Target(slow, rcvbuf=4096)
    targets.append(target)
    svc = make_service("redir", redirect=("127.0.0.1", target.port))

    def start(loop: Any, conn: socket.socket, peer: Any) -> Any:
        session = internal.start_redirect(loop, svc, conn, peer, lt.on_close("traffic"),
                                          lt.on_close("error"))
        session.out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return session
    lt = LoopThread()
    addr = lt.listen(start)
    with lt:
        c = socket.create_connection(addr[:2], timeout=DEADLINE)
        delivered = send_until_stalled_then_reset(c)
        go.set()
        assert wait_for(lambda: received != [])
        assert len(received[0]) == delivered and received[0] == stream(0, delivered)
        assert wait_for(lambda: lt.closes == [("traffic", delivered, 0)])


def test_target_reset_before_the_loop_sees_the_connection(targets: list[Target]) -> None:
    """The target accepts, answers and resets before the loop notices the connection
    is up: that is not `can't connect` (the handshake succeeded, as xinetd's blocking
    connect() reports); its answer is relayed, then the relay ends."""
    gone = threading.Event()

    def answer_and_reset(conn: socket.socket) -> None:
        conn.sendall(b"bye\n")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        gone.set()
    target = Target(answer_and_reset)
    targets.append(target)
    svc = make_service("redir", redirect=("127.0.0.1", target.port))

    def start(loop: Any, conn: socket.socket, peer: Any) -> Any:
        session = internal.start_redirect(loop, svc, conn, peer, lt.on_close("traffic"),
                                          lt.on_close("error"))
        gone.wait(DEADLINE)     # hold the loop until the target has reset
        return session
    lt = LoopThread()
    addr = lt.listen(start)
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        assert recv_all(c) == b"bye\n"
        c.shutdown(socket.SHUT_WR)      # done too: the relay ends at the client's EOF
        assert wait_for(lambda: lt.closes == [("traffic", 0, 4)])


def test_what_a_reset_target_sent_is_read_after_a_failed_write() -> None:
    # The target's answer waits partly in the daemon's socket (the client reads
    # slowly) when the target resets; a write of the client's next bytes to it then
    # fails. What the target had sent is still read and relayed whole.
    payload = 100_000
    gone = threading.Event()

    def answer_then_reset(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(b"a" * payload)
        assert wait_for(lambda: struct.unpack("i", fcntl.ioctl(
            conn.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0] == 0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.set()

    target = Target(answer_then_reset)
    lt = LoopThread()
    svc = make_service("redir", redirect=("127.0.0.1", target.port))

    def start(loop: Any, conn: socket.socket, peer: Any) -> Any:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)   # a short way out
        return internal.start_redirect(loop, svc, conn, peer, lt.on_close("traffic"),
                                       lt.on_close("error"))
    addr = lt.listen(start)
    lt.start()
    try:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with client:
            client.settimeout(DEADLINE)
            client.connect(addr[:2])
            client.sendall(b"q")
            target.close()          # the target has answered and reset
            assert gone.is_set()
            client.sendall(b"more")
            assert recv_all(client) == b"a" * payload
    finally:
        lt.stop()


def test_a_silent_client_after_the_targets_fin_does_not_hold_the_relay(
        targets: list[Target], monkeypatch: pytest.MonkeyPatch) -> None:
    # The target answers and closes (an idle timeout, a greeting server); its FIN
    # reaches the client, which keeps its end open and says nothing. xinetd ends the
    # session at the target's FIN; the relay ends once the client has been quiet for
    # QUIET_SECONDS, giving back the service's slot (instances, per_source, -limit).
    monkeypatch.setattr(redirect, "QUIET_SECONDS", 0.3)

    def greet_and_close(conn: socket.socket) -> None:
        conn.sendall(b"HELLO\n")
    target = Target(greet_and_close)
    targets.append(target)
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", target.port)
    with lt:
        with socket.create_connection(addr[:2], timeout=DEADLINE) as c:
            assert recv_all(c) == b"HELLO\n"        # through the target's FIN
            assert wait_for(lambda: len(lt.closes) == 1)
            assert lt.closes[0][0] == "traffic"
            assert c.recv(10) == b""


def test_a_client_still_sending_to_a_half_closed_target_keeps_the_relay(
        targets: list[Target], monkeypatch: pytest.MonkeyPatch) -> None:
    # A target that only shut down its sending side still reads: a client that keeps
    # sending, each time within QUIET_SECONDS, is relayed to its own EOF.
    monkeypatch.setattr(redirect, "QUIET_SECONDS", 1.0)
    received: list[bytes] = []

    def greet_then_read(conn: socket.socket) -> None:
        conn.sendall(b"HELLO\n")
        conn.shutdown(socket.SHUT_WR)
        received.append(recv_all(conn))
    target = Target(greet_then_read)
    targets.append(target)
    lt = LoopThread()
    addr = relay(lt, "127.0.0.1", target.port)
    with lt:
        with socket.create_connection(addr[:2], timeout=DEADLINE) as c:
            assert recv_all(c) == b"HELLO\n"
            for n in range(8):
                # Each chunk comes after a pause of a quarter of the quiet time: 2 s
                # in all, twice QUIET_SECONDS.
                threading.Event().wait(0.25)
                c.sendall(b"chunk%d\n" % n)
            c.shutdown(socket.SHUT_WR)
            assert wait_for(lambda: len(lt.closes) == 1)
    target.close()
    targets.remove(target)
    assert received == [b"".join(b"chunk%d\n" % n for n in range(8))]
    assert lt.closes[0][0] == "traffic"
