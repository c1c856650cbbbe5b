"""The running intercepted servers, one per service at most (wait = yes), and the stream
clients held for a service's next server: what the dispatcher calls.

`start` makes the private socket, starts the server on it (no `START` line: each
admitted client gets its own) and reads the service socket for it; `watch` is how the
dispatcher's `refresh` leaves the service socket to a running interception; when the
server is reaped, the interception ends and the clients it never served (and the
datagram senders admitted after it exited) are held until the service's next server,
which the dispatcher starts as for a queued request (`holds`), or are closed when that
cannot happen (`drop_held`). A stream client closed because a reload removed its
service or the flag gets a WARNING that says so; datagrams go without a word, as those
queued on a removed service's socket do.

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
from pyxinetd.intercept.stream import Held, StreamInterception
from pyxinetd.listener import SHORTAGE_ERRNOS
from pyxinetd.log import strerror
from pyxinetd.servicelog import fail_entry
from pyxinetd.loop import READ
from pyxinetd.redirect import RedirectSession
from pyxinetd.service import MAX_PARKED_BYTES, MAX_PARKED_DATAGRAMS, ServiceRuntime, State

Running = StreamInterception | DatagramInterception
# Why held stream clients are closed (their WARNING).
_FLAG_REMOVED = "a reload removed flags = INTERCEPT"
_STOPPED = "a reload removed the service or replaced its socket"


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
                                              lambda client: self._admitted_late(rt, client))
        else:
            interception = DatagramInterception(self.host, rt, listener, server,
                                                lambda sender: self._sender_late(rt, sender))

        def reaped(child: Child, status: ExitStatus) -> None:
            if isinstance(interception, StreamInterception):
                held = interception.server_exited()
                if rt.state is State.STOPPED:
                    self._close(rt, held, _STOPPED)
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
        runs now, else held for the next one (closed if the service is gone)."""
        running = self._running.get(rt)
        if isinstance(running, StreamInterception) and not running.finished:
            running.adopt(client)
        elif rt.state is State.STOPPED or rt.sock is None:
            self._close(rt, [client], _STOPPED if rt.state is State.STOPPED else None)
        elif INTERCEPT_FLAG not in rt.config.flags:
            self._close(rt, [client], _FLAG_REMOVED)
        else:
            self._held.setdefault(rt, []).append(client)
            self.host.refresh(rt)   # the next server starts as for a queued request

    def _sender_late(self, rt: ServiceRuntime, held: HeldSender) -> None:
        """A datagram sender admitted after its server exited: relayed to rt's server if
        one runs now, else held for the next one, as a datagram queued on the service
        socket would wait for it (dropped if the service is gone or no longer
        intercepted: its next server reads the service socket, where these datagrams
        cannot be put back)."""
        running = self._running.get(rt)
        if isinstance(running, DatagramInterception) and not running.finished:
            running.adopt(held)
            return
        if rt.state is State.STOPPED or rt.sock is None \
                or INTERCEPT_FLAG not in rt.config.flags:
            return
        waiting = self._held_senders.setdefault(rt, [])
        # Within the bounds of the datagrams a service keeps for their verdicts.
        if len(waiting) < MAX_PARKED_DATAGRAMS and \
                sum(other.size for other in waiting) + held.size <= MAX_PARKED_BYTES:
            waiting.append(held)
        self.host.refresh(rt)   # the next server starts as for a queued datagram

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
        WARNING each that gives `why` when given; how many."""
        held = self._held.pop(rt, [])
        senders = self._held_senders.pop(rt, [])
        self._close(rt, held, why)
        return len(held) + len(senders)

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
            found.append(Client(client.peer, 0, self._holding(rt, client),
                                self._release(rt, client)))
        return found

    def _holding(self, rt: ServiceRuntime, client: Held) -> Callable[[], bool]:
        return lambda: client in self._held.get(rt, [])

    def _release(self, rt: ServiceRuntime, client: Held) -> Callable[[], None]:
        def release() -> None:
            held = self._held.get(rt, [])
            if client in held:
                held.remove(client)
                client.conn.close()
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
        self._held_senders.clear()
        for relay in list(self._relays):
            relay.close()
        self._relays.clear()
