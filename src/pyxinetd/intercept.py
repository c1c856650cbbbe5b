"""`flags = INTERCEPT`: an access-checking relay in front of a wait = yes server.

Reference §4.13. A wait = yes server reads the service socket itself, so the master
only ever sees the request that starts it: later clients of the same server are never
checked. With INTERCEPT the server gets a private socket instead (the service's type and
protocol, on the loopback address of the service's family, an ephemeral port), and the
master keeps reading the service socket while that server runs:

  stream  every connection is accepted here and checked like a wait = no service's:
          the SENSOR deny list, only_from/no_access and TCP Wrappers (AccessGate), then
          access_times. Refused: one `FAIL` line and the connection is closed. Admitted:
          `START` with the server's pid, and the connection is relayed to the server's
          socket (a RedirectSession aimed at it: bounded buffers, half-close).
  dgram   every datagram is read here. A sender's first datagram is checked the same
          way; a refused sender's datagrams are dropped for the rest of this server's
          life (one `FAIL` line); an admitted sender gets a channel, a loopback socket
          connected to the server's: its datagrams go in through it, the server's
          replies come back through it and leave from the service socket, to it.

The server sees its clients as the loopback address. When it exits, the relays deliver
what it wrote and end, the channels forward the replies still queued, and the service
socket goes back to the dispatcher (the usual wait = yes resume). A stream client the
server never accepted (it was admitted while the server was busy, and the server then
exited: a server that serves one client per start) is not lost: the master keeps its own
copy of the private listening socket, so such a connection is still queued there and is
recognised by its address; the client, and the bytes it already sent, are held and
relayed to the next server, which starts as soon as the service's checks allow, as it
would for a request queued on the service socket.

xinetd 2.3.15.3 forks an interceptor process for this and never gets as far as relaying:
its server's set-up fails (`dup2( 0, 0 ) failed: Bad file descriptor`) and every client
is closed; see docs/compatibility.md.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol

from pyxinetd.access.gate import PASS, AccessGate, Datagram, Verdict
from pyxinetd.children import Child, ExitStatus
from pyxinetd.config.model import ServiceConfig
from pyxinetd.dgram import DGRAM_BATCH, MAX_DATAGRAM, send_quietly
from pyxinetd.forkretry import Hold, Outcome
from pyxinetd.listener import ACCEPT_CAPACITY_ERRNOS, LISTEN_BACKLOG, accept_batch, peer_text
from pyxinetd.log import ProgramLog, ServiceLogs, fail_entry, start_entry, strerror
from pyxinetd.loop import READ, Loop
from pyxinetd.redirect import RedirectSession
from pyxinetd.service import REASON_ADDRESS, REASON_TIME, ServiceRuntime, within_access_times

INTERCEPT_FLAG = "INTERCEPT"
# Senders one intercepted datagram server talks to at once: each holds a descriptor.
MAX_CHANNELS = 1024
# Stream clients in the master's hands for one intercepted server at once (relayed, or
# waiting for a verdict): each relay holds two descriptors. At the limit the service
# socket is not read until one ends, so further clients wait in its listen queue, as
# they would for a server that reads it itself, instead of the master running out of
# descriptors for every service.
MAX_CLIENTS = 512
# Datagrams kept for a sender whose verdict waits for a name lookup.
PENDING_LIMIT = 16

OnReap = Callable[[Child, ExitStatus], None]
Address = tuple[object, ...]


class Host(Protocol):
    """What the interceptor uses of the dispatcher."""

    loop: Loop
    program: ProgramLog
    logs: ServiceLogs
    access: AccessGate
    denied: Callable[[str], bool]

    def spawn_server(self, svc: ServiceConfig, sock: socket.socket, peer: str,
                     on_reap: OnReap | None = None, *, hold: Hold | None = None,
                     announce: bool = True) -> int | Outcome | None: ...

    def refresh(self, rt: ServiceRuntime) -> None: ...

    def pause_accept(self, rt: ServiceRuntime, err: OSError) -> None: ...


def _loopback(family: int) -> str:
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def private_socket(listener: socket.socket) -> socket.socket:
    """The intercepted server's socket: the service socket's type and protocol, bound to
    the loopback address of its family on an ephemeral port (listening, for a stream).
    A host without an IPv6 loopback (IPv6 disabled) gets 127.0.0.1 for an IPv6
    service: the relay carries bytes, not addresses."""
    others = [f for f in (socket.AF_INET, socket.AF_INET6) if f != listener.family]
    failure: OSError | None = None
    for family in [listener.family, *others]:
        sock = socket.socket(family, listener.type, listener.proto)
        try:
            sock.bind((_loopback(family), 0))
            if listener.type == socket.SOCK_STREAM:
                sock.listen(LISTEN_BACKLOG)
        except OSError as err:
            sock.close()
            failure = err
            continue
        return sock
    assert failure is not None
    raise failure


class Held:
    """An admitted stream client its server never accepted, waiting for the next one."""

    def __init__(self, conn: socket.socket, peer: str, sent: bytes, done: bool) -> None:
        self.conn = conn
        self.peer = peer
        self.sent = sent
        self.done = done


def _unaccepted(private: socket.socket) -> dict[Address, socket.socket]:
    """The connections still queued on our copy of an exited server's listening socket,
    by their peer address (the relay's end)."""
    private.setblocking(False)
    found: dict[Address, socket.socket] = {}
    while True:
        try:
            conn, peer = private.accept()
        except OSError:
            return found
        found[tuple(peer)] = conn


def _read_queued(conn: socket.socket) -> bytes:
    """What the relay had already written towards the server, queued unread."""
    conn.setblocking(False)
    chunks = []
    while True:
        try:
            data = conn.recv(65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class _Channel:
    """One datagram sender's way to and from the intercepted server."""

    def __init__(self, sender: Address, sock: socket.socket) -> None:
        self.sender = sender
        self.sock = sock


class Interception:
    """The service socket of one running intercepted server, read by the master."""

    def __init__(self, host: Host, rt: ServiceRuntime, listener: socket.socket,
                 server: socket.socket, relays: set[RedirectSession]) -> None:
        self.host = host
        self.rt = rt
        self.listener = listener
        self.stream = listener.type == socket.SOCK_STREAM
        self.family = server.family
        self.server_address: Address = tuple(server.getsockname())
        # Our copy of the server's listening socket (stream): it keeps the connections
        # the server did not accept queued after the server exits.
        self.private: socket.socket | None = server if self.stream else None
        self.pid = 0
        self.finished = False
        self._relays = relays           # shared with Interceptors: they outlive us
        self._mine: set[RedirectSession] = set()
        self._channels: dict[Address, _Channel] = {}
        self._refused: set[Address] = set()
        self._pending: dict[Address, list[bytes]] = {}
        self._full_reported = False
        self._deciding = 0      # stream clients waiting for a verdict
        self.stopped = False   # not reading the service socket: saturated

    @property
    def svc(self) -> ServiceConfig:
        # The service as it is now: a reload that keeps the service replaces its
        # attributes, and the new access rules apply to the clients that come next.
        return self.rt.config

    # -- life ------------------------------------------------------------------
    def begin(self, pid: int, admitted: Address | None, held: list[Held]) -> None:
        """The server runs: read the service socket from now on. `admitted`: the
        sender whose datagram started the server, already checked by the dispatcher;
        `held`: clients an earlier server never accepted, relayed to this one first."""
        self.pid = pid
        if self.stream:
            # The socket was blocking for the server that would have read it; here the
            # master accepts from it and must never wait.
            self.listener.setblocking(False)
        if admitted is not None:
            self._open_channel(admitted, peer_text(admitted), [])
        for client in held:
            self._relay(client.conn, client.peer, client.sent, client.done)
        self.stopped = self.saturated

    def server_exited(self) -> list[Held]:
        """Stop reading the service socket; let the relays and channels deliver what
        the server wrote, then end. Returns the clients the server never accepted."""
        self.finished = True
        self.host.loop.unregister(self.listener)
        if self.stream:
            try:
                self.listener.setblocking(True)
            except OSError:
                pass    # closed by a reload meanwhile
        unserved = _unaccepted(self.private) if self.private is not None else {}
        held = []
        for relay in list(self._mine):
            end = relay.target_end()
            if end is not None and end in unserved:
                queued = _read_queued(unserved[end])
                conn, buffered, done = relay.detach_client()
                self._mine.discard(relay)
                self._relays.discard(relay)
                held.append(Held(conn, str(relay.peer[0]), queued + buffered, done))
            else:
                relay.target_gone()
        for conn in unserved.values():
            conn.close()
        if self.private is not None:
            self.private.close()
            self.private = None
        for channel in list(self._channels.values()):
            self._forward_replies(channel)
            self._close_channel(channel)
        self._pending.clear()
        return held

    def close(self) -> None:
        """Shutdown: end everything now."""
        self.finished = True
        if self.private is not None:
            self.private.close()
            self.private = None
        for relay in list(self._mine):
            relay.close()
        for channel in list(self._channels.values()):
            self._close_channel(channel)
        self._pending.clear()

    @property
    def saturated(self) -> bool:
        """At MAX_CLIENTS: the service socket is not read until a client is done."""
        return len(self._mine) + self._deciding >= MAX_CLIENTS

    def on_readable(self, mask: int) -> None:
        if self.finished or self.rt.sock is not self.listener:
            return
        if self.stream:
            self._accept()
        else:
            self._receive()

    # -- the checks ------------------------------------------------------------
    def _fail(self, peer: str, reason: str) -> None:
        if self.svc.log_type is not None:
            self.host.logs.write(self.svc, fail_entry(self.svc, reason, peer))

    def _started(self, peer: str) -> None:
        if self.svc.log_type is not None:
            self.host.logs.write(self.svc, start_entry(self.svc, self.pid, peer))

    def _verdict_now(self, peer: str, conn: socket.socket | None,
                     sender: Address | None) -> Verdict | None:
        if INTERCEPT_FLAG not in self.svc.flags:
            return PASS     # a reload removed the flag: relay without checking
        if self.host.denied(peer):
            return Verdict(False, REASON_ADDRESS)
        datagram = Datagram(self.listener, sender) if sender is not None else None
        return self.host.access.check(self.svc, peer, conn, datagram)

    def _refusal(self, verdict: Verdict) -> str | None:
        """xinetd's interceptor order: the address rules, then access_times."""
        if not verdict.allowed:
            return verdict.reason or REASON_ADDRESS
        svc = self.svc
        if INTERCEPT_FLAG in svc.flags and svc.access_times and not within_access_times(svc):
            return REASON_TIME
        return None

    # -- stream ----------------------------------------------------------------
    def _accept(self) -> None:
        try:
            for conn, _, peer in accept_batch(self.listener):
                verdict = self._verdict_now(peer, conn, None)
                if verdict is None:
                    self._deciding += 1
                    self.host.access.wait(self.svc, peer, self._admitting(conn, peer), conn)
                else:
                    self._admit(conn, peer, verdict)
                if self.finished:
                    return
                if self.saturated:
                    self.stopped = True
                    self.host.refresh(self.rt)   # stop reading until a client is done
                    return
        except OSError as err:
            if err.errno in ACCEPT_CAPACITY_ERRNOS:
                self.host.pause_accept(self.rt, err)
            else:
                self.host.program.error("intercept",
                                        f"{self.svc.id}: accept failed: {strerror(err)}")

    def _admitting(self, conn: socket.socket, peer: str) -> Callable[[Verdict], None]:
        def decided(verdict: Verdict) -> None:
            self._deciding -= 1
            self._admit(conn, peer, verdict)
            self._unsaturate()
        return decided

    def _unsaturate(self) -> None:
        """A client is done: read the service socket again if it was not."""
        if self.stopped and not self.finished and not self.saturated:
            self.stopped = False
            self.host.refresh(self.rt)

    def _admit(self, conn: socket.socket, peer: str, verdict: Verdict) -> None:
        if self.finished:
            conn.close()    # the server is gone; a verdict that came too late
            return
        reason = self._refusal(verdict)
        if reason is not None:
            self._fail(peer, reason)
            conn.close()
            return
        svc = self.host.access.prepare(self.svc, verdict, conn, peer)
        if verdict.decision is not None and verdict.decision.twist is not None:
            # A hosts.allow `twist`: that command answers this client instead of the
            # running server, as it would have for a wait = no service.
            try:
                self.host.spawn_server(svc, conn, peer)
            finally:
                conn.close()
            return
        self._relay(conn, peer)

    def _relay(self, conn: socket.socket, peer: str, sent: bytes = b"",
               done: bool = False) -> None:
        self._started(peer)
        relay: RedirectSession

        def ended(bytes_in: int, bytes_out: int) -> None:
            self._mine.discard(relay)
            self._relays.discard(relay)
            self._unsaturate()

        def failed(text: str) -> None:
            ended(0, 0)
            self.host.program.error("intercept", f"{self.svc.id}: {text}")

        relay = RedirectSession(self.host.loop, self.svc, conn, (peer,), ended, failed,
                                target=(self.family, self.server_address),
                                sent=sent, client_done=done)
        self._mine.add(relay)
        self._relays.add(relay)

    # -- datagrams ---------------------------------------------------------------
    def _receive(self) -> None:
        for _ in range(DGRAM_BATCH):
            if self.finished:
                return
            try:
                data, raw = self.listener.recvfrom(MAX_DATAGRAM, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue    # a queued ICMP error, reported once
            sender = tuple(raw)
            channel = self._channels.get(sender)
            if channel is not None:
                send_quietly(channel.sock, data, None)
            elif sender in self._pending:
                if len(self._pending[sender]) < PENDING_LIMIT:
                    self._pending[sender].append(data)
            elif sender not in self._refused:
                self._check_sender(sender, data)

    def _check_sender(self, sender: Address, data: bytes) -> None:
        peer = peer_text(sender)
        self._pending[sender] = [data]
        verdict = self._verdict_now(peer, None, sender)
        if verdict is None:
            self.host.access.wait(self.svc, peer,
                                  lambda v: self._admit_sender(sender, peer, v),
                                  datagram=Datagram(self.listener, sender))
        else:
            self._admit_sender(sender, peer, verdict)

    def _admit_sender(self, sender: Address, peer: str, verdict: Verdict) -> None:
        queued = self._pending.pop(sender, [])
        if self.finished:
            return
        reason = self._refusal(verdict)
        if reason is not None:
            if len(self._refused) < MAX_CHANNELS:
                self._refused.add(sender)
            self._fail(peer, reason)
            return
        self._open_channel(sender, peer, queued)

    def _open_channel(self, sender: Address, peer: str, queued: list[bytes]) -> None:
        if len(self._channels) >= MAX_CHANNELS:
            if not self._full_reported:
                self._full_reported = True
                self.host.program.error("intercept", f"{self.svc.id}: {MAX_CHANNELS} "
                                        "senders already talk to this server; datagrams "
                                        "from new ones are dropped until it exits")
            return
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((_loopback(self.family), 0))
            sock.connect(self.server_address)
        except OSError as err:
            sock.close()
            self.host.program.error("intercept", f"{self.svc.id}: cannot relay for "
                                                 f"{peer}: {strerror(err)}")
            return
        channel = _Channel(sender, sock)
        self._channels[sender] = channel
        self.host.loop.register(sock, READ, lambda mask: self._forward_replies(channel))
        self._started(peer)
        for data in queued:
            send_quietly(sock, data, None)

    def _forward_replies(self, channel: _Channel) -> None:
        for _ in range(DGRAM_BATCH):
            try:
                data = channel.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ECONNREFUSED: the server's socket is gone
            send_quietly(self.listener, data, channel.sender)

    def _close_channel(self, channel: _Channel) -> None:
        self.host.loop.unregister(channel.sock)
        channel.sock.close()
        if self._channels.get(channel.sender) is channel:
            del self._channels[channel.sender]


class Interceptors:
    """The running intercepted servers, one per service at most (wait = yes), and the
    clients held for each service's next server."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._running: dict[str, Interception] = {}
        self._held: dict[str, tuple[ServiceRuntime, list[Held]]] = {}
        # Every relay still open, including those of servers that exited and are
        # still delivering their last bytes (closed at shutdown).
        self._relays: set[RedirectSession] = set()

    def start(self, rt: ServiceRuntime, svc: ServiceConfig, peer: str, on_reap: OnReap,
              hold: Hold, admitted: Address | None = None) -> int | Outcome | None:
        """Start svc's server on a private socket and read the service socket for it.
        Returns what Dispatcher.spawn_server returns."""
        listener = rt.sock
        assert listener is not None
        try:
            server = private_socket(listener)
        except OSError as err:
            self.host.program.error("intercept", f"{svc.id}: cannot make the server's "
                                                 f"socket: {strerror(err)}")
            if svc.log_type is not None:
                self.host.logs.write(svc, fail_entry(svc, "fork", peer))
            return None
        interception = Interception(self.host, rt, listener, server, self._relays)

        def reaped(child: Child, status: ExitStatus) -> None:
            held = interception.server_exited()
            if self._running.get(rt.id) is interception:
                del self._running[rt.id]
            if held:
                self._held.setdefault(rt.id, (rt, []))[1].extend(held)
            self.host.refresh(rt)
            on_reap(child, status)

        result: int | Outcome | None = None
        try:
            # No START here: each admitted client gets its own, with this server's pid.
            result = self.host.spawn_server(svc, server, peer, reaped, hold=hold,
                                            announce=False)
        finally:
            if not (isinstance(result, int) and interception.private is not None):
                server.close()  # the server has its own copy
                interception.private = None
        if isinstance(result, int):
            self._running[rt.id] = interception
            interception.begin(result, admitted, self._take_held(rt))
        return result

    def _take_held(self, rt: ServiceRuntime) -> list[Held]:
        entry = self._held.pop(rt.id, None)
        if entry is None:
            return []
        owner, held = entry
        if owner is rt:
            return held
        self._close(held)   # held for a service a reload replaced
        return []

    def holds(self, rt: ServiceRuntime) -> bool:
        """Whether clients wait for rt's next server."""
        entry = self._held.get(rt.id)
        if entry is None or entry[0] is not rt or not entry[1]:
            return False
        if INTERCEPT_FLAG not in rt.config.flags:
            # A reload removed the flag: the next server reads the service socket itself
            # and could never be given these clients.
            self.drop_held(rt)
            return False
        return True

    def drop_held(self, rt: ServiceRuntime) -> int:
        """Close the clients held for rt's next server (it may not start); how many."""
        entry = self._held.get(rt.id)
        if entry is None or entry[0] is not rt:
            return 0
        del self._held[rt.id]
        self._close(entry[1])
        return len(entry[1])

    @staticmethod
    def _close(held: list[Held]) -> None:
        for client in held:
            client.conn.close()

    def watch(self, rt: ServiceRuntime) -> bool:
        """If an intercepted server of rt runs, watch the service socket for it (or
        not, while accepting is paused) and answer True."""
        interception = self._running.get(rt.id)
        if interception is None or interception.rt is not rt \
                or interception.listener is not rt.sock:
            return False
        events = 0 if rt.accept_paused or interception.stopped else READ
        self.host.loop.set_events(interception.listener, events, interception.on_readable)
        return True

    def close_all(self) -> None:
        for interception in list(self._running.values()):
            interception.close()
        self._running.clear()
        for _, held in self._held.values():
            self._close(held)
        self._held.clear()
        for relay in list(self._relays):
            relay.close()
        self._relays.clear()
