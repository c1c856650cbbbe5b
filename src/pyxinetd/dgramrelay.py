"""dgram/nowait with external servers (reference §4.3; broken in xinetd 2.3.15.3).

Each datagram is read in the loop and handed to a server through an AF_UNIX datagram
socketpair (the server reads it from descriptor 0 and writes its replies there); what
the server writes is sent to the client from the service socket, from the address the
client's first datagram was sent to (pyxinetd.replysource; it matters on a wildcard
bind, where the kernel would pick the source for the route back). More datagrams from
the same sender go to the same running server; those that arrive while the first waits
for its access verdict follow it (to its server, or with it when refused). Out of
descriptors for a channel, the datagram is dropped (the sender's next one tries again);
the shortage is logged once, naming the first client it dropped, not per datagram.

A server's channel belongs to its service's runtime, not to the service's id: ids may
repeat on different ports, and a reload may change an id's case. When a reload replaces
the service's socket, the channels move to the new runtime (`move`): the servers keep
their clients, and their replies leave from the new socket.

A server that closes its end of the channel (descriptors 0-2) but runs on would take
its client's datagrams into the void until it exits: the first one that finds the
channel closed is logged (WARNING naming the service, the server and the client) and
goes through the checks as a new client's, to a new server if they allow it.

A client whose server starts also gets a socket of its own (pyxinetd.clientsocket),
bound to the address it sent to and connected to it: its datagrams arrive there, and
its server's replies leave from there, also while a cps trip has the service socket
closed (new clients find the port closed, as in xinetd). Without one (no descriptor
for it, or the clients' share of descriptors in use) the client is served through the
service socket, logged once for the service until a client gets one again. A reload
that replaces the service socket closes the clients' sockets; each client gets a new
one, for the new socket, with its next datagram. When the server is reaped, what its
client sent meanwhile is handled as a new client's, as it would have been on the
service socket.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from pyxinetd import clientsocket, loopshare, replysource
from pyxinetd.access.gate import PASS, Datagram, Verdict
from pyxinetd.config.model import ServiceConfig
from pyxinetd.dgram import (DGRAM_BATCH, DRAIN_LIMIT, MAX_DATAGRAM, Host, contained, read_datagrams,
                            send_quietly)
from pyxinetd.forkretry import Hold, Outcome
from pyxinetd.listener import SHORTAGE_ERRNOS, peer_text
from pyxinetd.log import strerror
from pyxinetd.servicelog import fail_entry
from pyxinetd.reload import rules_replaced
from pyxinetd.loop import READ
from pyxinetd.service import REASON_ADDRESS, ServiceRuntime

# Holds a datagram until its access verdict (DatagramDispatch.park).
Park = Callable[[ServiceRuntime, Callable[[Verdict], None], str, Datagram, int,
                 Callable[[], bool], Callable[[], None]], None]


def _nothing() -> None:
    """What dropping a waiting datagram takes: nothing (it goes with its socket)."""


def _running(pid: int) -> bool:
    """Whether the child `pid` has not exited yet; it is left to the reaper (WNOWAIT)."""
    if pid <= 0:
        return False
    try:
        exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return exited is None


def client_key(addr: tuple[object, ...]) -> tuple[object, ...]:
    """The sender as the relays know it: an IPv4 client seen by a dual-stack socket
    (::ffff:a.b.c.d) is the same client as a.b.c.d seen by an IPv4 socket."""
    if len(addr) == 4 and isinstance(addr[0], str):
        try:
            mapped = ipaddress.IPv6Address(addr[0]).ipv4_mapped
        except ValueError:
            return addr
        if mapped is not None:
            return (str(mapped), addr[1])
    return addr


def _same_peer(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Whether two addresses of a socket's peers name the same host and port."""
    return client_key(a)[:2] == client_key(b)[:2]


def reply_address(sock: socket.socket, addr: tuple[object, ...]
                  ) -> tuple[object, ...] | None:
    """`addr` in the form `sock` sends to: a reload may have given the service a socket
    of the other family. None when `sock` cannot reach it (an IPv6 client of a service
    that is now IPv4 only)."""
    if sock.family == socket.AF_INET6 and len(addr) == 2:
        return (f"::ffff:{addr[0]}", addr[1], 0, 0)
    if sock.family == socket.AF_INET and len(addr) != 2:
        key = client_key(addr)
        return key if len(key) == 2 else None
    return addr


@dataclass
class _Relay:
    """A dgram/nowait server's private datagram channel."""

    service: ServiceRuntime
    addr: tuple[object, ...]
    sock: socket.socket
    # Where the replies leave from: the destination of the client's first datagram
    # (on the service's current socket: a reload that replaces it starts again).
    source: replysource.Source
    pid: int = 0
    # The client's own socket (pyxinetd.clientsocket), when it has one, and the
    # client's address as that socket is connected to it.
    own: socket.socket | None = None
    own_peer: tuple[object, ...] = ()
    # A reload replaced the service socket: the client's next datagram on the new one
    # gives it a socket of its own again.
    reattach: bool = False

    @property
    def key(self) -> tuple[ServiceRuntime, tuple[object, ...]]:
        return self.service, client_key(self.addr)


class NowaitRelays:
    """The dgram/nowait services' readiness handler and their servers' channels."""

    def __init__(self, host: Host, park: Park) -> None:
        self.host = host
        self._park_datagram = park
        self._relays: dict[tuple[ServiceRuntime, tuple[object, ...]], _Relay] = {}
        # Services that could not make a channel for want of descriptors (or memory)
        # and have not made one since: a sender repeating its datagram (or a flood of
        # senders) would otherwise log two lines per datagram for as long as it lasts.
        self._short: weakref.WeakSet[ServiceRuntime] = weakref.WeakSet()
        # Senders whose first datagram waits for its access verdict, with the datagrams
        # they sent meanwhile: these follow the first to its server.
        self._waiting: dict[tuple[ServiceRuntime, tuple[object, ...]], list[bytes]] = {}
        # How many clients have a socket of their own (at most clientsocket.budget()).
        self.own_sockets = 0
        # Services that logged a client served without a socket of its own, and have
        # not given one a socket since: logged once, not once per client.
        self._unowned: weakref.WeakSet[ServiceRuntime] = weakref.WeakSet()

    def on_readable(self, rt: ServiceRuntime) -> None:
        # A failed read (other than nothing queued) does not end the batch.
        for sock, data, addr, source in read_datagrams(rt):
            try:
                self._received(rt, sock, data, addr, source)
            except Exception as exc:
                if not contained(self.host, rt, addr, exc):
                    raise

    def _received(self, rt: ServiceRuntime, sock: socket.socket, data: bytes,
                  addr: tuple[object, ...], source: replysource.Source) -> None:
        relay = self._relays.get((rt, client_key(addr)))
        if relay is not None and self._deliver(relay, data):
            if relay.reattach:
                # Its datagrams now go where this one went: its socket is bound
                # there, and what that socket reads for a new server answers so.
                relay.reattach = False
                relay.source = source
                self._attach(relay, sock, addr, source)
            return
        self._admit(rt, sock, addr, data, source)

    def _admit(self, rt: ServiceRuntime, sock: socket.socket, addr: tuple[object, ...],
               data: bytes, source: replysource.Source) -> None:
        """A datagram of a client without a running server: the checks, then a server."""
        host = self.host
        if self._follow(rt, addr, data):
            return
        peer = peer_text(addr)
        reason = host.parent_check(rt, peer)
        if reason is not None:
            host.refuse(rt, peer, reason, None, sender=addr)
            return
        verdict = host.access.check(rt.config, peer, datagram=Datagram(sock, addr))
        if verdict is not PASS:
            self._nowait_admit(rt, addr, peer, data, source, verdict)
            return
        self._start_relay(rt, addr, peer, data, source)

    def _nowait_admit(self, rt: ServiceRuntime, addr: tuple[object, ...], peer: str,
                      data: bytes, source: replysource.Source, verdict: Verdict | None
                      ) -> None:
        host = self.host
        if verdict is None:
            if rt.sock is None:
                return      # closed since (a reload): the datagram goes with it
            # Its server would count from here on: the slot is held while it waits,
            # and the sender's next datagrams wait with it (_follow).
            resume = host.hold(rt, peer, _nothing)
            key = (rt, addr)
            self._waiting[key] = []
            asked = rt.config

            def give_back() -> tuple[list[bytes], bool]:
                """The sender's later datagrams, counted off the bounds, and its slot
                (once: a failure met after it, `park`, calls it again); whether the
                request may go on (`resume`)."""
                later = self._waiting.pop(key, None)
                if later is not None:
                    self._unpark(rt, later)
                return later or [], resume()

            def decided(v: Verdict) -> None:
                later, going_on = give_back()
                if not going_on:
                    return      # its service was removed meanwhile
                if rt.sock is None:
                    return      # a reload replaced its socket: the datagrams go with it
                if rules_replaced(asked, rt.config):
                    # A reload replaced the rules meanwhile: the new ones judge the
                    # sender; what it sent meanwhile goes with its first datagram.
                    host.judge_again(rt, peer, datagram=Datagram(rt.sock, addr),
                                     admitted=lambda now: self._admitted(
                                         rt, addr, peer, [data, *later], source, now))
                    return
                self._nowait_admit(rt, addr, peer, data, source, v)
                self._deliver_later(rt, addr, later)

            def dropped() -> None:
                give_back()
            try:
                self._park_datagram(rt, decided, peer, Datagram(rt.sock, addr), len(data),
                                    lambda: rules_replaced(asked, rt.current().config),
                                    dropped)
            except BaseException:
                # Nothing waits (the datagram is dropped): neither the slot nor the
                # sender's later datagrams.
                self._waiting.pop(key, None)
                resume()
                raise
            return
        if not verdict.allowed:
            host.refuse(rt, peer, verdict.reason or REASON_ADDRESS, None, sender=addr)
            return
        # What the matched hosts.allow rule asks for (twist, umask, nice, ...).
        self._admitted(rt, addr, peer, [data], source,
                       host.access.prepare(rt.config, verdict, None, peer))

    def _admitted(self, rt: ServiceRuntime, addr: tuple[object, ...], peer: str,
                  datagrams: list[bytes], source: replysource.Source,
                  svc: ServiceConfig) -> None:
        """An admitted sender's datagrams go to its server: the one another of its
        datagrams started while these waited, or a new one of `svc`."""
        first, later = datagrams[0], datagrams[1:]
        relay = self._relays.get((rt, client_key(addr)))
        if relay is not None and self._deliver(relay, first):
            pass    # another datagram of this peer started its server while this waited
        elif rt.sock is not None:
            self._start_relay(rt, addr, peer, first, source, svc)
        self._deliver_later(rt, addr, later)

    def _deliver_later(self, rt: ServiceRuntime, addr: tuple[object, ...],
                       later: list[bytes]) -> None:
        relay = self._relays.get((rt, client_key(addr)))
        for datagram in later:
            if relay is not None and not self._deliver(relay, datagram):
                break   # its server dropped the channel at once

    def _follow(self, rt: ServiceRuntime, addr: tuple[object, ...], data: bytes) -> bool:
        """Whether `data` joins its sender's first datagram, which waits for its access
        verdict: it goes to the same server (or with it, when refused)."""
        later = self._waiting.get((rt, addr))
        if later is None:
            return False
        later.append(data)
        rt.parked += 1
        rt.parked_bytes += len(data)
        if not rt.wants_events:
            self.host.refresh(rt)
        return True

    def _unpark(self, rt: ServiceRuntime, later: list[bytes]) -> None:
        was_full = not rt.wants_events
        rt.parked -= len(later)
        rt.parked_bytes -= sum(len(d) for d in later)
        if was_full and rt.wants_events:
            self.host.refresh(rt)

    def _start_relay(self, rt: ServiceRuntime, addr: tuple[object, ...], peer: str,
                     first: bytes, source: replysource.Source,
                     svc: ServiceConfig | None = None) -> None:
        host = self.host
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as err:
            # Out of descriptors (each running server holds one pair end): drop this
            # datagram; the next one tries again.
            self._not_started(rt, peer, strerror(err), err.errno in SHORTAGE_ERRNOS)
            return
        share = loopshare.budget()
        if host.in_loop_descriptors() >= share:
            # The channel ends the running servers keep in the daemon count with the
            # in-loop sessions: together they may hold half the descriptor limit, the
            # rest is the other services' (pyxinetd.loopshare).
            ours.close()
            theirs.close()
            self._not_started(rt, peer, f"in-loop sessions, servers' channels and "
                                        f"identity lookups hold {share} descriptors, half "
                                        f"the limit; the rest are kept for the services "
                                        f"whose servers run on their own", True)
            return
        self._short.discard(rt)
        ours.setblocking(False)
        relay = _Relay(rt, addr, ours, source)
        send_quietly(ours, first, None)
        # Known before the spawn: while a failed fork waits for its retry, more
        # datagrams of this peer queue in the pair for the server to come.
        self._relays[relay.key] = relay
        if rt.sock is not None:
            towards = reply_address(rt.sock, addr)
            if towards is not None:
                self._attach(relay, rt.sock, towards, source)
        self._spawn_relay(relay, svc or rt.config, theirs, peer)

    def _not_started(self, rt: ServiceRuntime, peer: str, why: str, short: bool) -> None:
        """No server for `peer`'s datagram, dropped; `short`: for want of descriptors,
        logged when the shortage starts, not for each datagram while it lasts."""
        if short:
            if rt in self._short:
                return
            self._short.add(rt)
        self.host.program.error("svc_relay", f"{rt.id}: cannot start a server: {why} "
                                             f"(client {peer})")
        if rt.config.log_type is not None:
            self.host.logs.write(rt.config, fail_entry(rt.config, "fork", peer))

    def _attach(self, relay: _Relay, sock: socket.socket, addr: tuple[object, ...],
                source: replysource.Source) -> None:
        """Give the client its own socket, for its datagram from `addr` (in the family
        of `sock`, the service socket it came in on) from `source`."""
        rt = relay.service
        local = clientsocket.local_address(sock, source)
        if local is None:
            # Its destination is not known (an IPv6 multicast request; a wildcard
            # socket that does not report destinations): no address to bind.
            return
        budget = clientsocket.budget()
        if self.own_sockets >= budget:
            self._unowned_client(rt, addr, f"the clients' sockets hold their share of "
                                           f"the descriptor limit, {budget}")
            return
        try:
            own = clientsocket.open_for(sock, addr, local)
        except OSError as err:
            self._unowned_client(rt, addr, strerror(err))
            return
        self._unowned.discard(rt)
        relay.own = own
        relay.own_peer = addr
        self.own_sockets += 1
        self.host.loop.register(own, READ, lambda mask: self._from_client(relay))

    def _unowned_client(self, rt: ServiceRuntime, addr: tuple[object, ...],
                        why: str) -> None:
        if rt in self._unowned:
            return
        self._unowned.add(rt)
        self.host.program.warning(
            "svc_relay", f"service {rt.id}: no socket of its own for client "
                         f"{peer_text(addr)} ({why}): its server is reached through the "
                         "service socket, and cut off from its client while a cps trip "
                         "has that closed")

    def _release_own(self, relay: _Relay) -> list[bytes]:
        """Close the client's own socket; what the client sent to it, not read yet."""
        own = relay.own
        if own is None:
            return []
        relay.own = None
        self.own_sockets -= 1
        if self.host.loop.is_registered(own):
            self.host.loop.unregister(own)
        queued = list(self._client_datagrams(relay, own, DRAIN_LIMIT))
        own.close()
        return queued

    def _client_datagrams(self, relay: _Relay, own: socket.socket,
                          limit: int = DGRAM_BATCH) -> Iterator[bytes]:
        """What `relay`'s client sent to its own socket, `limit` datagrams at most. Another
        sender's datagram was queued there in the moment between the socket's bind and
        its connect, when a socket bound to the service's address takes any datagram
        sent there: it is handled as if the service socket had read it."""
        for _ in range(limit):
            try:
                data, sender = own.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue    # an ICMP error from the client's host, consumed now
            if _same_peer(sender, relay.own_peer):
                yield data
            else:
                self.host.loop.call_soon(partial(self._readmit, relay, [data], sender=sender))

    def _from_client(self, relay: _Relay) -> None:
        """The client's datagrams on its own socket go to its server."""
        own = relay.own
        if own is None:
            return
        for data in self._client_datagrams(relay, own):
            if not self._deliver(relay, data):
                self._readmit(relay, [data])
                return

    def _readmit(self, relay: _Relay, datagrams: list[bytes], *,
                 sender: tuple[object, ...] | None = None) -> None:
        """Datagrams of `relay`'s client (or of `sender`, which reached that client's
        socket) that its server will not read: handled as a new client's, on the
        service socket (turned away when it is closed, as a new client's datagrams
        are)."""
        rt = relay.service
        sock = rt.sock
        if sock is None or not rt.wants_events:
            return
        addr = reply_address(sock, relay.addr if sender is None else sender)
        if addr is None:
            return
        for data in datagrams:
            if rt.sock is not sock or not rt.wants_events:
                # The one before tripped cps (or ended the service otherwise): the rest
                # find the socket closed, as a new client's datagrams would; admitted,
                # the next would trip cps again on a suspended service.
                return
            current = self._relays.get((rt, client_key(addr)))
            if current is not None and self._deliver(current, data):
                continue
            self._admit(rt, sock, addr, data, relay.source)

    def _spawn_relay(self, relay: _Relay, svc: ServiceConfig, theirs: socket.socket,
                     peer: str) -> None:
        host = self.host

        def release() -> None:
            theirs.close()
            self._drop_relay(relay)

        judged = relay.service.config

        def retry() -> None:
            rt = relay.service
            if not rules_replaced(judged, rt.config) or rt.sock is None:
                self._spawn_relay(relay, svc.as_of(judged, rt.config), theirs, peer)
            else:
                # A reload since the failed fork: the new rules judge the client (its
                # datagrams wait in the channel), and start the new configuration's
                # server.
                host.judge_again(rt, peer, datagram=Datagram(rt.sock, relay.addr),
                                 admitted=lambda now: self._spawn_relay(relay, now, theirs,
                                                                        peer),
                                 dropped=release)

        hold = Hold(relay.service, retry, release)
        try:
            # The server's socket pair cannot tell PEERENV who sent the datagram.
            result = host.spawn_server(svc, theirs, peer, lambda c, s: self._end_relay(relay),
                                       hold=hold, sender=relay.addr)
        except BaseException:
            release()
            raise
        if result is Outcome.HELD:
            return
        theirs.close()
        if isinstance(result, int):
            relay.pid = result
            host.loop.register(relay.sock, READ, lambda mask: self._relay_replies(relay))
        else:
            self._drop_relay(relay)

    def _deliver(self, relay: _Relay, data: bytes) -> bool:
        """Pass a datagram of its client to a running server. False when the server
        closed its channel: the relay no longer takes the client's datagrams (it
        still forwards what is left to read and ends when its server is reaped)."""
        try:
            relay.sock.send(data)
        except OSError as err:
            if err.errno not in (errno.ECONNREFUSED, errno.ENOTCONN):
                return True     # a full channel: the datagram is dropped, as on a network
            if self._relays.get(relay.key) is relay:
                del self._relays[relay.key]
            # Its socket goes now: a new server's client socket takes the same addresses.
            later = self._release_own(relay)
            if later:
                self.host.loop.call_soon(lambda: self._readmit(relay, later))
            # A server that exited (not reaped yet) closed it too, and says nothing.
            if _running(relay.pid):
                self.host.program.warning(
                    "svc_relay", f"service {relay.service.id} server {relay.pid} from "
                                 f"{peer_text(relay.addr)} closed its datagram channel; "
                                 "its client's datagrams are handled as a new client's")
            return False
        return True

    def _relay_replies(self, relay: _Relay, limit: int = DGRAM_BATCH) -> None:
        for _ in range(limit):
            try:
                data = relay.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if relay.own is not None:
                send_quietly(relay.own, data, None)
                continue
            target = relay.service.sock
            towards = None if target is None else reply_address(target, relay.addr)
            if target is not None and towards is not None:
                send_quietly(target, data, towards, relay.source)

    def _end_relay(self, relay: _Relay) -> None:
        # Forward what the server wrote before it exited, then drop the channel; what
        # its client sent meanwhile is a new client's (its server is gone), handled
        # once the reaping is over. All of it, not one batch: nothing reads the channel
        # after this (bounded: a grandchild still writing to it must not pin the loop).
        self._relay_replies(relay, DRAIN_LIMIT)
        later = self._release_own(relay)
        self._drop_relay(relay)
        if later:
            self.host.loop.call_soon(lambda: self._readmit(relay, later))

    def _drop_relay(self, relay: _Relay) -> None:
        self._release_own(relay)
        if self.host.loop.is_registered(relay.sock):
            self.host.loop.unregister(relay.sock)
        relay.sock.close()
        if self._relays.get(relay.key) is relay:
            del self._relays[relay.key]

    def move(self, old: ServiceRuntime, new: ServiceRuntime) -> None:
        """A reload replaced the socket of `old` by `new`'s: the running servers keep
        their clients, whose next datagrams reach them through the new socket, and
        their replies leave from it."""
        for (rt, key), relay in list(self._relays.items()):
            if rt is old:
                del self._relays[(old, key)]
                relay.service = new
                self._relays.setdefault(relay.key, relay)
                # Its socket has the old socket's address, which the new one may not
                # have: the client gets another with its next datagram on the new one.
                relay.reattach = True
                for data in self._release_own(relay):
                    if not self._deliver(relay, data):
                        break

    def release(self, rt: ServiceRuntime) -> None:
        """A reload removed `rt`: its clients' sockets go with its socket, so that the
        port is as free as the service left it (its servers are being stopped)."""
        for relay in list(self._relays.values()):
            if relay.service is rt:
                self._release_own(relay)

    @property
    def descriptors(self) -> int:
        """The descriptors the relays hold in the daemon (pyxinetd.loopshare): the
        channel end of each running server, and the clients' own sockets."""
        return len(self._relays) + self.own_sockets

    def close_all(self) -> None:
        """Shutdown: drop every relay channel, the running servers seeing EOF.

        Closing one end of a datagram socket pair tells the other end nothing: a server
        waiting in read() on descriptor 0 would wait for ever, a process left behind at
        each stop. Each gets an empty datagram first, the zero-length read that ends a
        server reading until EOF."""
        for relay in list(self._relays.values()):
            send_quietly(relay.sock, b"", None)
            self._drop_relay(relay)
