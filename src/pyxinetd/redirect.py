"""`redirect = HOST PORT`: a TCP relay run in the master's loop, without forking.

xinetd forks a child per connection that copies 1500-byte chunks with blocking I/O
and ends the session at the first EOF from either side. Here the relay is two
bounded buffers on the loop, one per direction (pyxinetd.relaydirection):

- each side is read only while the buffer towards the other side holds less than
  BUFFER_LIMIT bytes, and written only on write readiness, so a slow peer slows its
  sender (TCP flow control) instead of growing memory or blocking the daemon;
- half-close is honoured: EOF from one side is passed on as shutdown(SHUT_WR) once
  its buffer is flushed, and the other direction keeps flowing until it ends too
  (protocols that send a request then shut down their writing side need this);
- a reset (or broken pipe) loses that side only: what it sent, even what is still
  queued in its socket after a failed write to it, reaches the other side, then a FIN,
  and the relay ends. When the target is the side lost, the client is read (and its
  bytes dropped) until its EOF, at most LINGER_SECONDS once it has everything: closing
  over unread input would reset the connection and lose what is still queued for it;
- once the target has finished sending (its FIN passed on), the client has QUIET_SECONDS
  at a time to send more (to a target that only shut down its writing side) or finish:
  a client keeping its end open and silent would otherwise hold the service's slot
  (instances, per_source, -limit) for ever, where xinetd ends the session at once;
- TCP_NODELAY on both sockets, SO_KEEPALIVE on the outgoing one with the KEEPALIVE
  flag; the outgoing socket gets no IPV6_V6ONLY (xinetd set it there by mistake);
- bytes are counted both ways for the TRAFFIC line: in = client -> target,
  out = target -> client (bytes handed to the kernel towards the other side).

A target named by a host name is looked up when the configuration is read
(pyxinetd.config.netvalues: in the loader child at a reload), so the service holds a
numeric address; resolve_targets() turns it into a socket address at each load without
any lookup (AI_NUMERICHOST), and neither a reload nor a connection ever waits for DNS.

The same relay carries the clients of an intercepted wait = yes server
(pyxinetd.intercept.stream), aimed at the server's private socket instead: it can start
with what the client already sent to an earlier server, end once the server is gone
and what it wrote has reached the client, or hand the client back untouched.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable

from pyxinetd import redirectloops
from pyxinetd.config.model import ServiceConfig
from pyxinetd.internal.session import Peer
from pyxinetd.listener import peer_text
from pyxinetd.loop import READ, WRITE, Loop
from pyxinetd.relaydirection import RelayDirection
from pyxinetd.timers import Timer

OnTraffic = Callable[[int, int], None]
OnError = Callable[[str], None]

Target = tuple[int, tuple[object, ...]]   # (family, sockaddr)

# How long a relay whose target is gone keeps reading (and dropping) what its client
# still sends, after the client has everything and the FIN, waiting for its EOF.
LINGER_SECONDS = 10.0
# How long a relay whose target has finished sending waits for its client to send
# anything, or its EOF, before it ends; each time the client sends, it waits again.
QUIET_SECONDS = 10.0

# (host, port) -> resolved target; filled by resolve_targets().
_targets: dict[tuple[str, int], Target] = {}
# Services whose target leads back to them (pyxinetd.redirectloops): id -> the chain.
_looping: dict[str, str] = {}


def resolve(host: str, port: int) -> Target:
    """The socket address of a numeric target; raises OSError (socket.gaierror) for
    anything else. Never a DNS lookup: this runs in the loop."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                               proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    family, _, _, _, sockaddr = infos[0]
    return int(family), tuple(sockaddr)


def _local(family: int, source: str) -> tuple[object, ...]:
    """The address a `redirect_source` binds: a zone (`fe80::1%eth0`) becomes the scope
    id, which a plain (host, port) pair would leave 0. Raises OSError."""
    if family != socket.AF_INET6 or "%" not in source:
        return (source, 0)
    infos = socket.getaddrinfo(source, 0, socket.AF_INET6, flags=socket.AI_NUMERICHOST)
    return tuple(infos[0][4])


def resolve_targets(services: Iterable[ServiceConfig]) -> dict[str, str]:
    """Resolve the redirect target of every service once (call at load and reload).

    Returns {service id: error text} for the targets that could not be resolved, and
    for those that lead back to their own service; those services fail each connection
    with the `can't connect` message until the next load.
    """
    services = list(services)
    errors: dict[str, str] = {}
    fresh: dict[tuple[str, int], Target] = {}
    for svc in services:
        if svc.redirect is None or svc.redirect in fresh:
            continue
        try:
            fresh[svc.redirect] = resolve(*svc.redirect)
        except OSError as exc:
            errors[svc.id] = f"{svc.redirect[0]}: {exc.strerror or exc}"
    _targets.clear()
    _targets.update(fresh)
    _looping.clear()
    _looping.update(redirectloops.find_loops(services, fresh))
    for service_id, chain in _looping.items():
        errors[service_id] = (f"leads back to this service ({chain}): its connections "
                              f"are closed, not relayed to this daemon again until it "
                              f"runs out of descriptors")
    return errors


def _target_of(service: ServiceConfig) -> Target:
    assert service.redirect is not None
    target = _targets.get(service.redirect)
    if target is None:
        # Not resolved at load (its resolution failed then): tried again, numerically.
        target = resolve(*service.redirect)
        _targets[service.redirect] = target
    return target


def _errno_text(code: int) -> str:
    """xinetd's %m: `<strerror> (errno = N)`."""
    return f"{os.strerror(code)} (errno = {code})"


class RedirectSession:
    """One client connection relayed to the service's redirect target.

    Exactly one of the two callbacks is called, once: `on_error(message)` when the
    target cannot be reached (the program-log text `can't connect to remote host A:
    ...`; xinetd logs no TRAFFIC then), otherwise `on_close(bytes_in, bytes_out)` when
    the relay ends or close() is called. Neither is called before the constructor
    returns.
    """

    def __init__(self, loop: Loop, service: ServiceConfig, conn: socket.socket,
                 peer: Peer, on_close: OnTraffic, on_error: OnError, *,
                 greeting: bytes = b"", target: Target | None = None,
                 sent: bytes = b"", client_done: bool = False) -> None:
        self.loop = loop
        self.service = service
        self.conn = conn
        self.peer = peer
        self._on_close = on_close
        self._on_error = on_error
        self._closed = False
        self._connected = False
        # Set once the target can take no more (an intercepted server exited): the
        # relay then ends as soon as what the target wrote has reached the client.
        self._target_gone = False
        self._target_text = service.redirect[0] if service.redirect else "?"
        self._source: str | None = None
        self._greeting = greeting
        self._linger: Timer | None = None
        self._quiet: Timer | None = None
        conn.setblocking(False)
        _nodelay(conn)
        self.out: socket.socket | None = None
        reason: str | None = None
        if target is None and service.id in _looping:
            # Relayed, the connection would come back to this service, and so on.
            self.to_target = self.to_client = None
            chain = _looping[service.id]
            loop.call_later(0, lambda: self._fail(f"redirect loop ({chain})"))
            return
        try:
            family, sockaddr = target if target is not None else _target_of(service)
            # Numeric, with the zone of a link-local target (`fe80::1%eth0`), as
            # xinetd's line names it.
            self._target_text = peer_text(sockaddr)
            self.out = socket.socket(family, socket.SOCK_STREAM)
            self.out.setblocking(False)
            if target is None and service.redirect_source is not None:
                # `redirect_source`: connect from that address (any port).
                self._source = service.redirect_source
                self.out.bind(_local(family, self._source))
            _nodelay(self.out)
            if "KEEPALIVE" in service.flags:
                self.out.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            code = self.out.connect_ex(sockaddr)
        except socket.gaierror as exc:
            # The target's (or redirect_source's) zone names an interface that is gone:
            # the resolver's words, as its negative code is not an errno.
            code, reason = errno.EADDRNOTAVAIL, str(exc.strerror or exc)
        except OSError as exc:
            code = exc.errno or errno.EINVAL
        self.to_target = RelayDirection(conn, self.out) if self.out else None
        self.to_client = RelayDirection(self.out, conn) if self.out else None
        if self.to_client is not None and greeting:
            # The banners go to the client first; they are not relayed traffic.
            self.to_client.head = memoryview(greeting)
        if self.to_target is not None:
            # What the client sent before this relay existed (a client moved from one
            # intercepted server to the next), and whether it had finished sending.
            self.to_target.buffer += sent
            self.to_target.eof = client_done
        if code in (0, errno.EINPROGRESS) and self.out is not None:
            loop.register(self.out, WRITE, self._connect_ready)
        else:
            # Report from the loop, not from inside the creator's call.
            why = reason or _errno_text(code)
            loop.call_later(0, lambda: self._fail(why))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def bytes_in(self) -> int:
        return self.to_target.count if self.to_target else 0

    @property
    def bytes_out(self) -> int:
        return self.to_client.count if self.to_client else 0

    def target_gone(self) -> None:
        """The target exited: deliver what it already wrote to the client, then end
        (a client that keeps its side open would otherwise hold the relay forever)."""
        self._target_gone = True
        if self._connected and not self._closed:
            self._update()

    def target_end(self) -> tuple[object, ...] | None:
        """The address of our connection to the target (what the target's accept()
        would give as the peer), or None before there is one."""
        try:
            return tuple(self.out.getsockname()) if self.out is not None else None
        except OSError:
            return None

    def detach_client(self) -> tuple[socket.socket, bytes, bool]:
        """End the relay but keep the client's connection open for another one: returns
        it, the bytes read from it not yet written to the target, and whether it had
        finished sending. Neither callback is called."""
        self._closed = True
        self.loop.unregister(self.conn)
        if self.out is not None:
            self.loop.unregister(self.out)
            self.out.close()
        towards = self.to_target
        if towards is None:
            return self.conn, b"", False
        return self.conn, bytes(towards.buffer), towards.eof

    def close(self) -> None:
        """End the relay now (shutdown, reload); on_close gets the counts so far."""
        if self._closed:
            return
        self._release()
        self._on_close(self.bytes_in, self.bytes_out)

    def _release(self) -> None:
        self._closed = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None
        self.loop.unregister(self.conn)
        self.conn.close()
        if self.out is not None:
            self.loop.unregister(self.out)
            self.out.close()

    def _fail(self, why: str) -> None:
        if self._closed:
            return
        if self._greeting:
            # banner_success was due before the target was tried (xinetd writes it,
            # then connects): one non-blocking send, as for a server's client.
            try:
                self.conn.send(self._greeting)
            except OSError:
                pass
        origin = f" from {self._source}" if self._source is not None else ""
        message = f"can't connect to remote host {self._target_text}{origin}: {why}"
        # Logged before the client's connection is closed, as xinetd's redirect child
        # logs and then exits: a client that sees the end finds the reason logged.
        self._closed = True
        self._on_error(message)
        self._release()

    def _connect_ready(self, mask: int) -> None:
        if self._closed:
            return
        assert self.out is not None
        code = self.out.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code in (errno.ECONNRESET, errno.EPIPE):
            # Connected, then reset before the loop came here (a refused handshake is
            # ECONNREFUSED): not a connection failure. What the target sent first is
            # still relayed, then the relay ends, as for any reset.
            assert self.to_target is not None
            self.to_target.destination_lost(drain=True)
        elif code != 0:
            self._fail(_errno_text(code))
            return
        self._connected = True
        self._update()

    def _update(self) -> None:
        """Watch exactly what each socket can usefully do now; end when both are done."""
        a, b = self.to_target, self.to_client
        assert a is not None and b is not None and self.out is not None
        if b.done and (a.settled or self._target_gone):
            self.close()
            return
        if b.done and a.done and self._linger is None:
            # The target is gone and the client has all it sent and the FIN, but the
            # client still sends: its input is read and dropped until its EOF, for at
            # most LINGER_SECONDS, so that the close does not reset the connection
            # while the end of the answer is still queued towards the client.
            self._linger = self.loop.call_later(LINGER_SECONDS, self.close)
        if b.done and self._quiet is None:
            self._await_client()
        conn_events = (READ if a.wants_read() else 0) | (WRITE if b.pending else 0)
        out_events = (READ if b.wants_read() else 0) | (WRITE if a.pending else 0)
        self.loop.set_events(self.conn, conn_events, self._conn_ready)
        self.loop.set_events(self.out, out_events, self._out_ready)

    def _await_client(self) -> None:
        """The target has finished sending: end the relay unless the client sends
        something (or its bytes reach the target) within QUIET_SECONDS."""
        towards = self.to_target
        assert towards is not None
        seen = (towards.received, towards.count)

        def quiet_over() -> None:
            self._quiet = None
            if self._closed:
                return
            if (towards.received, towards.count) != seen:
                self._await_client()    # the client is still at it: wait again
            else:
                self.close()
        self._quiet = self.loop.call_later(QUIET_SECONDS, quiet_over)

    def _conn_ready(self, mask: int) -> None:
        assert self.to_target is not None and self.to_client is not None
        self._step(mask, reader=self.to_target, writer=self.to_client)

    def _out_ready(self, mask: int) -> None:
        assert self.to_target is not None and self.to_client is not None
        self._step(mask, reader=self.to_client, writer=self.to_target)

    def _step(self, mask: int, reader: RelayDirection, writer: RelayDirection) -> None:
        """One socket is ready: `reader` reads from it, `writer` writes to it.

        A reset or a broken pipe loses that socket only: what was read from it still
        reaches the other side, followed by a FIN, and then the relay ends (xinetd's
        child wrote each chunk before it read the next, so it lost nothing either).
        """
        if self._closed:
            return
        try:
            if mask & WRITE:
                writer.flush()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            # Nothing more can be written there; what that socket already received is
            # still read below, until its EOF or error.
            self._destination_lost(writer)
        try:
            if mask & READ and reader.wants_read():
                reader.read()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            reader.source_lost()
            self._destination_lost(writer)
        try:
            reader.flush()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._destination_lost(reader)   # the other socket
        self._update()

    def _destination_lost(self, towards: RelayDirection) -> None:
        """The socket `towards` writes to can take no more. When that is the target,
        the client is read until its EOF (see _update)."""
        towards.destination_lost(drain=towards is self.to_target)


def _nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass    # not TCP (a test's socketpair) or already reset


def start_redirect(loop: Loop, service: ServiceConfig, conn: socket.socket, peer: Peer,
                   on_close: OnTraffic, on_error: OnError, *,
                   greeting: bytes = b"") -> RedirectSession:
    """Relay `conn` to service.redirect; see RedirectSession for the callbacks.

    `greeting` (banners) is written to the client before anything from the target.
    """
    return RedirectSession(loop, service, conn, peer, on_close, on_error,
                           greeting=greeting)
