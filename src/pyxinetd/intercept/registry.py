"""The running intercepted servers, one per service at most (wait = yes), and the stream
clients held for a service's next server: what the dispatcher calls.

`start` makes the private socket, starts the server on it (no `START` line: each
admitted client gets its own) and reads the service socket for it; `watch` is how the
dispatcher's `refresh` leaves the service socket to a running interception; when the
server is reaped, the interception ends and the clients it never served (and the
datagram senders admitted after it exited) are held until the service's next server,
which the dispatcher starts as for a queued request (`holds`), or are closed when that
cannot happen (`drop_held`). A stream client closed because a reload removed its
service or the flag gets a WARNING that says so; held datagram senders dropped by a
reload or a cps trip get one WARNING per service and event, not one per datagram, and
so do the held stream clients a cps trip closes (a flood: up to MAX_CLIENTS of them).

A reload that replaces the service's socket hands the clients held for its next server
(and those its old server leaves unserved, or admits late) to the service's new
runtime, its successor (`move`). Every client admitted by rules a reload has since
replaced is judged again by the service's rules of the moment before it reaches a
server (pyxinetd.intercept.handover); one they refuse is closed with a WARNING.

Both belong to the service's runtime, not to its id: ids may repeat on different
ports, and a reload that keeps a service may change its id's case.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Callable

from pyxinetd.children import Child, ExitStatus
from pyxinetd.config.model import ServiceConfig
from pyxinetd.forkretry import Hold, Outcome
from pyxinetd.intercept.common import (INTERCEPT_FLAG, Address, Client, Host, OnReap,
                                       private_socket)
from pyxinetd.intercept.dgram import DatagramInterception, HeldSender
from pyxinetd.intercept.handover import Judgement
from pyxinetd.intercept.stream import Held, StreamInterception
from pyxinetd.listener import SHORTAGE_ERRNOS
from pyxinetd.log import strerror
from pyxinetd.servicelog import fail_entry
from pyxinetd.loop import READ
from pyxinetd.redirect import RedirectSession
from pyxinetd.service import MAX_PARKED_BYTES, MAX_PARKED_DATAGRAMS, ServiceRuntime, State

Running = StreamInterception | DatagramInterception
Waiting = Held | HeldSender
# Why held clients are closed (their WARNING).
_FLAG_REMOVED = "a reload removed flags = INTERCEPT"
_REMOVED = "a reload removed the service"
_NOT_BOUND = "the service's new socket is not bound"
CPS_TRIPPED = "a cps trip closed the service's socket"


class Interceptors:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._running: dict[ServiceRuntime, Running] = {}
        self._held: dict[ServiceRuntime, list[Held]] = {}
        self._held_senders: dict[ServiceRuntime, list[HeldSender]] = {}
        # Every relay still open, including those of servers that exited and are
        # still delivering their last bytes (closed at shutdown).
        self._relays: set[RedirectSession] = set()
        # Services whose private socket could not be made for want of a descriptor (or
        # memory) and whose server has not started since: the request stays queued and
        # is tried again each second, but the shortage is logged once, not per retry.
        self._short: weakref.WeakSet[ServiceRuntime] = weakref.WeakSet()
        # A runtime whose socket a reload replaced, and the one that replaced it.
        self._successors: weakref.WeakKeyDictionary[ServiceRuntime, ServiceRuntime] = \
            weakref.WeakKeyDictionary()
        # Clients being judged again (closed at shutdown).
        self._judged: dict[int, tuple[Waiting, Judgement]] = {}

    def start(self, rt: ServiceRuntime, svc: ServiceConfig, peer: str, on_reap: OnReap,
              hold: Hold, admitted: Address | None = None) -> int | Outcome | None:
        """Start svc's server on a private socket and read the service socket for it
        (`admitted`: the datagram sender the dispatcher checked). Returns what
        Dispatcher.spawn_server returns."""
        listener = rt.sock
        assert listener is not None
        try:
            server = private_socket(listener)
        except OSError as err:
            if err.errno in SHORTAGE_ERRNOS:
                if rt in self._short:
                    return None
                self._short.add(rt)
            self.host.program.error("intercept", f"{svc.id}: cannot make the server's "
                                                 f"socket: {strerror(err)}")
            if svc.log_type is not None:
                self.host.logs.write(svc, fail_entry(svc, "fork", peer))
            return None
        self._short.discard(rt)
        interception: Running
        if listener.type == socket.SOCK_STREAM:
            interception = StreamInterception(self.host, rt, listener, server, self._relays,
                                              lambda client: self._admitted_late(rt, client),
                                              lambda: self._rules(rt))
        else:
            interception = DatagramInterception(self.host, rt, listener, server,
                                                lambda sender: self._sender_late(rt, sender),
                                                lambda: self._rules(rt))

        def reaped(child: Child, status: ExitStatus) -> None:
            if isinstance(interception, StreamInterception):
                held = interception.server_exited()
                if rt.state is State.STOPPED:
                    # Removed (closed), or its socket replaced (to its successor).
                    for client in held:
                        self._admitted_late(rt, client)
                elif held:
                    self._held.setdefault(rt, []).extend(held)
            else:
                interception.server_exited()
            if self._running.get(rt) is interception:
                del self._running[rt]
            self.host.refresh(rt)
            on_reap(child, status)

        try:
            # PEERENV tells the server what it would see on the service socket (the
            # listener's address; the sender of the datagram that starts it, still
            # queued there), not the private socket that only the relays reach.
            # `client`: the state dump shows the sender's port, as for the same
            # server without INTERCEPT (the private socket has no peer).
            result = self.host.spawn_server(svc, server, peer, reaped, hold=hold,
                                            announce=False, addresses=listener,
                                            client=admitted)
        except BaseException:
            server.close()
            raise
        if not isinstance(result, int):
            server.close()
            return result
        self._running[rt] = interception
        if isinstance(interception, StreamInterception):
            # It keeps our copy of the server's socket (see stream.py).
            interception.begin(result, self._take_held(rt))
        else:
            server.close()  # the server has its own copy
            interception.begin(result, admitted, self._held_senders.pop(rt, []))
        return result

    def _admitted_late(self, rt: ServiceRuntime, client: Held) -> None:
        """A client admitted after its server exited: relayed to rt's server if one
        runs now, else held for the next one (closed if the service is gone); judged
        again first if a reload replaced the rules that admitted it."""
        rt = self._current(rt)
        why = self._unservable(rt)
        if why == CPS_TRIPPED:
            self._disconnected(rt, [client], why)
            return
        if why is not None:
            self._close(rt, [client], why)
            return
        if client.checked is not rt.config:
            self._judge_again(rt, client, lambda: self._admitted_late(rt, client),
                              lambda: client.conn.close())
            return
        running = self._running.get(rt)
        if isinstance(running, StreamInterception) and not running.finished:
            running.adopt(client)
        else:
            self._held.setdefault(rt, []).append(client)
            self.host.refresh(rt)   # the next server starts as for a queued request

    def _sender_late(self, rt: ServiceRuntime, held: HeldSender) -> None:
        """A datagram sender admitted after its server exited: relayed to rt's server if
        one runs now, else held for the next one, as a datagram queued on the service
        socket would wait for it (dropped, with a line, if the service is gone or no
        longer intercepted: its next server reads the service socket, where these
        datagrams cannot be put back); judged again first if a reload replaced the
        rules that admitted it."""
        rt = self._current(rt)
        why = self._unservable(rt)
        if why is not None:
            self._dropped(rt, [held], why)
            return
        if held.checked is not rt.config:
            self._judge_again(rt, held, lambda: self._sender_late(rt, held), lambda: None)
            return
        running = self._running.get(rt)
        if isinstance(running, DatagramInterception) and not running.finished:
            running.adopt(held)
            return
        waiting = self._held_senders.setdefault(rt, [])
        # Within the bounds of the datagrams a service keeps for their verdicts.
        if len(waiting) < MAX_PARKED_DATAGRAMS and \
                sum(other.size for other in waiting) + held.size <= MAX_PARKED_BYTES:
            waiting.append(held)
        self.host.refresh(rt)   # the next server starts as for a queued datagram

    def _current(self, rt: ServiceRuntime) -> ServiceRuntime:
        """rt, or the runtime that took over the service when a reload replaced rt's
        socket (and so on, reload after reload)."""
        while rt in self._successors:
            rt = self._successors[rt]
        return rt

    def _rules(self, rt: ServiceRuntime) -> ServiceConfig | None:
        """The service's rules now: rt's, or its successor's; None once removed."""
        rt = self._current(rt)
        return None if rt.state is State.STOPPED else rt.config

    @staticmethod
    def _unservable(rt: ServiceRuntime) -> str | None:
        """Why rt's next server cannot be given a client; None when it can (one being
        bound counts: a reload's new socket)."""
        if rt.state is State.STOPPED:
            return _REMOVED
        if INTERCEPT_FLAG not in rt.config.flags:
            return _FLAG_REMOVED
        if rt.state is State.SUSPENDED_CPS:
            return CPS_TRIPPED
        if rt.sock is None and rt.state is not State.STARTING:
            return _NOT_BOUND
        return None

    def _judge_again(self, rt: ServiceRuntime, client: Waiting, passed: Callable[[], None],
                     end: Callable[[], None]) -> None:
        """Judge a client by rt's rules now; `passed()` then, or it is refused with a
        WARNING and `end()`ed."""
        svc = rt.config
        key = id(client)

        def admitted() -> None:
            del self._judged[key]
            client.checked = svc
            passed()

        def refused(reason: str) -> None:
            del self._judged[key]
            self.host.program.warning(
                "intercept", f"service {svc.id} client {client.peer} of the next server "
                             f"no longer allowed (reason={reason}); disconnecting")
            end()

        judgement = Judgement(self.host, svc, client.peer, admitted, refused)
        self._judged[key] = (client, judgement)
        judgement.start()

    def unbound(self, rt: ServiceRuntime) -> None:
        """A reload's new socket for rt could not be bound (or waits for its address):
        the clients handed to it are closed. Not those of a runtime a later reload
        stopped while its bind was retried: that reload hands them on to the runtime
        that replaced it (`move`), or closes them saying why."""
        if rt.state not in (State.ACTIVE, State.STOPPED):
            self.drop_held(rt, _NOT_BOUND)

    def move(self, old: ServiceRuntime, fresh: ServiceRuntime) -> None:
        """A reload replaced old's socket by fresh's: the clients held for old's next
        server, and those its server leaves or admits later, are the new runtime's,
        judged again by its rules (closed if it is no longer intercepted)."""
        # Recorded even when fresh is not intercepted: the clients old's server leaves
        # or admits later are closed for the reason fresh gives (the flag went), not as
        # though the service had been removed.
        self._successors[old] = fresh
        if INTERCEPT_FLAG not in fresh.config.flags:
            self.drop_held(old, _FLAG_REMOVED)
            return
        held = self._held.pop(old, [])
        senders = self._held_senders.pop(old, [])
        for client in held:
            self._admitted_late(old, client)
        for sender in senders:
            # The reply source was the old socket's address, which the new one may
            # not have: its next datagram's destination is used.
            sender.source = None
            self._sender_late(old, sender)

    def next_sender(self, rt: ServiceRuntime) -> HeldSender | None:
        """The first datagram sender held for rt's next server, if any."""
        waiting = self._held_senders.get(rt)
        return waiting[0] if waiting else None

    def forget_sender(self, rt: ServiceRuntime, held: HeldSender) -> None:
        """Drop a held sender whose server will not start (refused, failed)."""
        waiting = self._held_senders.get(rt, [])
        if held in waiting:
            waiting.remove(held)

    def _take_held(self, rt: ServiceRuntime) -> list[Held]:
        return self._held.pop(rt, [])

    def holds(self, rt: ServiceRuntime) -> bool:
        """Whether clients wait for rt's next server."""
        if not self._held.get(rt) and not self._held_senders.get(rt):
            return False
        if INTERCEPT_FLAG not in rt.config.flags:
            # A reload removed the flag: the next server reads the service socket itself
            # and could never be given these clients.
            self.drop_held(rt, _FLAG_REMOVED)
            return False
        return True

    def drop_held(self, rt: ServiceRuntime, why: str | None = None) -> int:
        """Close the clients held for rt's next server (it may not start), with a
        WARNING each that gives `why` when given (the held datagram senders, and the
        stream clients a cps trip closes: one for all); how many."""
        held = self._held.pop(rt, [])
        senders = self._held_senders.pop(rt, [])
        if why == CPS_TRIPPED:
            self._disconnected(rt, held, why)
        else:
            self._close(rt, held, why)
        if why is not None:
            self._dropped(rt, senders, why)
        return len(held) + len(senders)

    def _dropped(self, rt: ServiceRuntime, senders: list[HeldSender], why: str) -> None:
        """Held datagram senders dropped: one line for all of them."""
        if not senders:
            return
        datagrams = sum(len(sender.datagrams) for sender in senders)
        peers = ", ".join(sorted({sender.peer for sender in senders}))
        self.host.program.warning(
            "intercept", f"service {rt.config.id}: {_count(datagrams, 'datagram')} from "
                         f"{peers} held for the next server dropped: {why}")

    def _disconnected(self, rt: ServiceRuntime, held: list[Held], why: str) -> None:
        """Held stream clients closed by a flood's cps trip: one line for all of them,
        as for the datagrams held then (a WARNING each would add up to MAX_CLIENTS
        lines to the one `Deactivating service` line of the trip)."""
        if not held:
            return
        peers = ", ".join(sorted({client.peer for client in held}))
        self.host.program.warning(
            "intercept", f"service {rt.config.id}: {_count(len(held), 'client')} from "
                         f"{peers} held for the next server disconnected: {why}")
        for client in held:
            client.conn.close()

    def _close(self, rt: ServiceRuntime, held: list[Held], why: str | None) -> None:
        for client in held:
            if why is not None:
                self.host.program.warning(
                    "intercept", f"service {rt.config.id} client {client.peer} held for the "
                                 f"next server: {why}; disconnecting")
            client.conn.close()

    def readjusted(self, rt: ServiceRuntime) -> None:
        """A reload kept rt's service with new attributes: its running server's
        clients are its new rules' to judge (a sender refused under the old ones is
        checked again)."""
        interception = self._running.get(rt)
        if interception is not None:
            interception.readjusted()

    def clients(self, rt: ServiceRuntime) -> list[Client]:
        """The clients of rt's running intercepted server, and those held for its
        next one, for a reload to check them again."""
        interception = self._running.get(rt)
        found = interception.clients() if interception is not None else []
        for client in self._held.get(rt, []):
            found.append(Client(client.peer, 0, self._holding(self._held, rt, client),
                                self._release(self._held, rt, client, client.conn.close)))
        for sender in self._held_senders.get(rt, []):
            found.append(Client(sender.peer, 0,
                                self._holding(self._held_senders, rt, sender),
                                self._release(self._held_senders, rt, sender, _nothing)))
        return found

    @staticmethod
    def _holding(lists: dict[ServiceRuntime, list[Held]] | dict[ServiceRuntime,
                                                               list[HeldSender]],
                 rt: ServiceRuntime, client: Waiting) -> Callable[[], bool]:
        return lambda: any(other is client for other in lists.get(rt, []))

    @staticmethod
    def _release(lists: dict[ServiceRuntime, list[Held]] | dict[ServiceRuntime,
                                                               list[HeldSender]],
                 rt: ServiceRuntime, client: Waiting,
                 end: Callable[[], None]) -> Callable[[], None]:
        def release() -> None:
            held: list[Held] | list[HeldSender] = lists.get(rt, [])
            for index, other in enumerate(held):
                if other is client:
                    del held[index]
                    end()
                    return
        return release

    def servers(self) -> set[int]:
        """The pids of the running intercepted servers."""
        return {interception.pid for interception in self._running.values()}

    def watch(self, rt: ServiceRuntime) -> bool:
        """If an intercepted server of rt runs, watch the service socket for it (or
        not, while accepting is paused) and answer True."""
        interception = self._running.get(rt)
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
        for rt, held in self._held.items():
            self._close(rt, held, None)
        self._held.clear()
        for client, judgement in list(self._judged.values()):
            judgement.drop()
            if isinstance(client, Held):
                client.conn.close()
        self._judged.clear()
        self._held_senders.clear()
        for relay in list(self._relays):
            relay.close()
        self._relays.clear()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _nothing() -> None:
    """A held sender's datagrams go with it: nothing to close."""
