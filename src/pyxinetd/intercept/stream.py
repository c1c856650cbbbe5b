"""An intercepted stream server: its clients accepted, checked and relayed by the master.

Each connection on the service socket is accepted here and checked (common.py); an
admitted one gets `START` with the server's pid and is relayed to the server's private
listening socket by a RedirectSession aimed at it. A `twist` rule of hosts.allow runs
its command for that client instead, as it would for a wait = no service, and the
command counts as that service's server would (common.Interception.may_twist).

A client whose verdict comes after the server exited (a slow name lookup or aclexec
command) is not lost either: it goes to the service's next server (or the one already
running), whose pid its `START` line names. One whose verdict was asked before a reload
is judged again by the new rules before it reaches a server, running or next.

Clients the server never accepted are not lost: the master keeps its own copy of the
private listening socket, so when the server exits such connections are still queued
there, recognised by their address (the relay's end). The client, and the bytes it
already sent, are then held for the next server (pyxinetd.intercept.registry), which
starts as soon as the service's checks allow, as for a connection queued on the
service socket. Such a client is logged once, when it was admitted (its `START` names
the server running then); its relay to the next server writes no second line.

At most MAX_CLIENTS clients are in the master's hands at once (relayed, or waiting for a
verdict; each relay holds two descriptors), and no more than a quarter of the daemon's
descriptor limit (common.descriptor_share): at the bound the service socket is not read
until one is done, and further clients wait in its listen queue, as they would for a
server that reads the socket itself, instead of the master running out of descriptors
for every service (a server that never accepts would otherwise take them all).
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Callable

from pyxinetd.access.gate import RULES_REPLACED, Verdict
from pyxinetd.config.model import ServiceConfig
from pyxinetd.intercept.common import (Address, Client, Host, Interception, Rules,
                                       descriptor_share)
from pyxinetd.listener import SHORTAGE_ERRNOS, accept_batch, reset_all, reset_on_close
from pyxinetd.log import strerror
from pyxinetd.redirect import RedirectSession
from pyxinetd.service import ServiceRuntime

MAX_CLIENTS = 512


class Held:
    """An admitted client its server never accepted, waiting for the next one."""

    def __init__(self, conn: socket.socket, peer: str, sent: bytes, done: bool,
                 checked: ServiceConfig, announced: bool = True) -> None:
        self.conn = conn
        self.peer = peer
        # The service's rules it was admitted by: judged again by the service's rules
        # of the moment before it reaches a server (pyxinetd.intercept.handover).
        self.checked = checked
        self.sent = sent    # what it already sent, for the next server
        self.done = done    # it had finished sending (shut down its side)
        # Its `START` line is written (when it was admitted while a server ran); a
        # client admitted after its server exited gets the line of the server it
        # reaches.
        self.announced = announced


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


class StreamInterception(Interception):
    def __init__(self, host: Host, rt: ServiceRuntime, listener: socket.socket,
                 server: socket.socket, relays: set[RedirectSession],
                 late: Callable[[Held], None], rules: Rules) -> None:
        super().__init__(host, rt, listener, server, rules)
        # Where a client goes whose verdict came after the server exited: to the
        # service's running server or the next one (pyxinetd.intercept.registry).
        self._late = late
        self._closed = False
        # Our copy of the server's listening socket: it keeps the connections the
        # server did not accept queued after the server exits.
        self.private: socket.socket | None = server
        self._relays = relays           # shared by all: relays outlive their server
        self._mine: set[RedirectSession] = set()
        self._deciding = 0              # clients waiting for a verdict
        # Connections handed to the registry (`_late`): theirs whatever fails after.
        self._handed: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        # Two descriptors per client in hand (its connection and the relay's).
        self.max_clients = descriptor_share(2, MAX_CLIENTS)

    @property
    def saturated(self) -> bool:
        """At max_clients: the service socket is not read until a client is done."""
        return len(self._mine) + self._deciding >= self.max_clients

    def begin(self, pid: int, held: list[Held]) -> None:
        """The server runs: read the service socket from now on; `held`: clients an
        earlier server never accepted, relayed to this one first (without a second
        `START`: theirs was written when they were admitted)."""
        self.pid = pid
        # The socket was blocking for the server that would have read it; here the
        # master accepts from it and must never wait.
        self.listener.setblocking(False)
        for client in held:
            self._relay(client.conn, client.peer, client.sent, client.done,
                        announce=not client.announced)
        self.stopped = self.saturated

    def server_exited(self) -> list[Held]:
        """Stop reading the service socket; let the relays deliver what the server
        wrote, then end. Returns the clients the server never accepted."""
        self.finished = True
        self.host.loop.unregister(self.listener)
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
                self._forget(relay)
                held.append(Held(conn, str(relay.peer[0]), queued + buffered, done,
                                 self.svc))
            else:
                relay.target_gone()
        for conn in unserved.values():
            conn.close()
        self._close_private()
        return held

    def clients(self) -> list[Client]:
        def alive(relay: RedirectSession) -> Callable[[], bool]:
            return lambda: relay in self._mine and not relay.closed
        return [Client(str(relay.peer[0]), self.pid, alive(relay), relay.close)
                for relay in self._mine]

    def close(self) -> None:
        super().close()
        self._closed = True
        self._close_private()
        for relay in list(self._mine):
            relay.close()

    def _close_private(self) -> None:
        if self.private is not None:
            self.private.close()
            self.private = None

    def _forget(self, relay: RedirectSession) -> None:
        self._mine.discard(relay)
        self._relays.discard(relay)

    # -- clients ------------------------------------------------------------------
    def receive(self) -> None:
        try:
            for conn, _, peer in accept_batch(self.listener):
                self._check(conn, peer, self.svc)
                if self.finished:
                    return
                if self.saturated:
                    self.stopped = True
                    self.host.refresh(self.rt)   # stop reading until a client is done
                    return
        except OSError as err:
            if err.errno in SHORTAGE_ERRNOS:
                self.host.pause_accept(self.rt, err)
            else:
                self.host.program.error("intercept",
                                        f"{self.svc.id}: accept failed: {strerror(err)}")
            return
        self.host.accepting(self.rt)

    def _check(self, conn: socket.socket, peer: str, asked: ServiceConfig) -> None:
        """Ask `asked`'s rules about a client, then admit or refuse it; asked again by
        the rules of the moment if a reload replaces them before they are applied.
        A bug met on the way costs that client alone (`_contained`)."""
        self._deciding += 1
        waiting = True

        def settle() -> None:
            # Once: the verdict came, or asking for it failed.
            nonlocal waiting
            if waiting:
                waiting = False
                self._deciding -= 1

        def decided(verdict: Verdict) -> None:
            settle()
            if verdict is RULES_REPLACED:
                self._contained(conn, peer, lambda: self._ask_again(conn, peer, asked))
            else:
                self._contained(conn, peer, lambda: self._admit(conn, peer, verdict, asked))
            self._read_again()

        def ask() -> None:
            try:
                self.ask(asked, peer, conn, None, decided)
            except BaseException:
                settle()    # nothing waits for its verdict
                raise
        self._contained(conn, peer, ask)

    def _contained(self, conn: socket.socket, peer: str, step: Callable[[], None]) -> None:
        """Run `step` of a client's checks: from the accept batch, or from the loop by
        the name resolver's socket's handler once its verdict came. A bug met there
        costs that client alone: its connection is reset (by its relay's teardown if
        one has it by then; one the registry has is left to it) and one line names it
        and what became of it. Raised to the loop, it would stop
        watching the service socket or the resolver's (every later name unread until
        its deadline)."""
        try:
            step()
        except Exception as exc:
            fate = self._let_go(conn, peer)
            if self.host.loop.on_error is None:
                raise
            self.host.loop.on_error(f"handling {self.svc.id}'s connection from {peer} "
                                    f"({fate})", exc)

    def _let_go(self, conn: socket.socket, peer: str) -> str:
        """A client whose handling failed, by whoever has its connection now. A relay
        set up for it ends (its teardown stops watching the connection before closing
        it, and counts it off): closed under the relay, its descriptor number would
        be the next accept's while the relay still watches it. One handed to the
        registry (`_late`) is its: held, judged again, or closed there. Returns what
        became of the client, for the line naming it."""
        relay = next((r for r in self._relays if r.conn is conn), None)
        if relay is not None:
            reset_on_close(conn)
            relay.close()
        elif conn in self._handed:
            return "kept for its server"
        else:
            reset_all([(conn, (), peer)])
        return "reset"

    def _ask_again(self, conn: socket.socket, peer: str, asked: ServiceConfig) -> None:
        """A reload replaced the rules before they decided about this client: the
        service's rules of the moment do, from the start (a `twist`, `spawn` or banner
        of the old ones never runs)."""
        rules = self.rules()
        if self._closed:
            conn.close()    # shutdown
        elif rules is None:
            # The service is gone: the registry closes the client, saying why.
            self._hand_late(Held(conn, peer, b"", False, asked, announced=False))
        else:
            self._check(conn, peer, rules)

    def _hand_late(self, client: Held) -> None:
        self._handed.add(client.conn)
        self._late(client)

    def _read_again(self) -> None:
        """`_unsaturate`, once a client's verdict came (from the name resolver's
        socket's handler). A bug met there concerns the service, not that client: one
        line names the service. Raised to the loop, it would stop watching the
        resolver's socket (every later name unread until its deadline)."""
        try:
            self._unsaturate()
        except Exception as exc:
            if self.host.loop.on_error is None:
                raise
            self.host.loop.on_error(f"reading {self.svc.id}'s service socket again", exc)

    def _unsaturate(self) -> None:
        """A client is done: read the service socket again if it was not."""
        if self.stopped and not self.finished and not self.saturated:
            self.stopped = False
            self.host.refresh(self.rt)

    def _admit(self, conn: socket.socket, peer: str, verdict: Verdict,
               asked: ServiceConfig) -> None:
        """`asked`: the service's rules the verdict was asked of."""
        if self._closed:
            conn.close()    # shutdown
            return
        reason = self.refusal(verdict, asked)
        if reason is not None:
            self.fail(peer, reason, asked)
            conn.close()
            return
        if verdict.decision is not None and verdict.decision.twist is not None:
            # A hosts.allow `twist`: that command answers this client instead of the
            # running server, as it would have for a wait = no service, and counts as
            # that service's server would (`may_twist`). Never one of rules a reload
            # replaced: AccessGate.wait answers RULES_REPLACED then (a twist ends
            # libwrap's scan, so an aclexec check never decides it).
            try:
                if self.may_twist(peer, asked, lambda reason: self.host.refuse(
                        self.rt, peer, reason, conn), f"{peer} disconnected"):
                    self.spawn_twist(self.host.access.prepare(asked, verdict, conn, peer),
                                     conn, peer)
            finally:
                conn.close()
            return
        svc = self.host.access.prepare(asked, verdict, conn, peer)
        if self.finished or asked is not self.svc:
            # The server exited while this client's verdict was awaited (a name
            # lookup, an aclexec command): like a client it never accepted, it is not
            # lost. Or a reload replaced the rules it was asked under: it is judged by
            # the new ones first, as the clients relayed then were (the registry hands
            # it back to this server if it still runs).
            self._hand_late(Held(conn, peer, b"", False, asked, announced=False))
            return
        self._relay(conn, peer)

    def adopt(self, client: Held) -> None:
        """Relay a client admitted for an earlier server to this one."""
        self._relay(client.conn, client.peer, client.sent, client.done,
                    announce=not client.announced)
        if self.saturated and not self.stopped:
            self.stopped = True
            self.host.refresh(self.rt)

    def _relay(self, conn: socket.socket, peer: str, sent: bytes = b"",
               done: bool = False, *, announce: bool = True) -> None:
        """Relay a client to the server; `announce`: write its `START` line (it was
        admitted just now: one line per client, as xinetd's interceptor logs them)."""
        if announce:
            self.started(peer)
        relay: RedirectSession

        def ended(bytes_in: int, bytes_out: int) -> None:
            self._forget(relay)
            self._unsaturate()

        def failed(text: str) -> None:
            ended(0, 0)
            # As for a redirect: the text names the target (the server's socket), the
            # client it was for is added.
            self.host.program.error("intercept", f"{self.svc.id}: {text} (client {peer})")

        relay = RedirectSession(self.host.loop, self.svc, conn, (peer,), ended, failed,
                                target=(self.family, self.server_address),
                                sent=sent, client_done=done)
        self._mine.add(relay)
        self._relays.add(relay)
