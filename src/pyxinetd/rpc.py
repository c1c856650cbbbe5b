"""RPC services (`type = RPC`): portmapper registration around a normal listener.

An RPC service listens like any other (reference §4.2), except that its socket is
bound to port 0 (or its bind address) and the kernel picks the port, unless the service
gives a `port` (Red Hat's xinetd honours it, Debian's ignores it). The service is
then registered with the portmapper for every version of its `rpc_version` range and
its protocol (pyxinetd.portmap), and it is available once at least one version is
registered; with none, it fails like a bind failure (xinetd's rule). Requests are then
dispatched as for any service of its socket type and wait mode.

The registry keeps two things: what the running services want registered (a Claim
per service: its versions at its socket's port) and what it believes the portmapper
holds. After every change of either and every answer it reconciles them, one call at
a time per program version: a call for a version is sent only once the one before it
has been answered or given up, so no call overtakes another of its version (an UNSET
is protocol-blind and drops a version for tcp *and* udp: sent beside a SET of the same
version, or retransmitted after one, it would take that SET away); a call touches its
own version alone, so different versions go in parallel, at most WINDOW calls in
flight in all (see below). An entry nobody
wants any more is UNSET first; then a wanted one missing is SET. So a service removed
by a reload, moved to a new socket or closed by cps is UNSET, the versions of any other
live service of the program that UNSET took are SET again (xinetd leaves them
unregistered), and a reload that changes `rpc_version` UNSETs the versions it drops
and SETs those it adds, whatever calls are in flight when it comes.

Two services of one program and protocol whose ranges overlap (on different sockets)
both claim the shared versions: the claim made first (the service read first, at
start-up) sends its SET first and the portmapper refuses the other one's, which is
logged as xinetd logs it (`pmap_set failed`); that service is served at the versions
it did register, or fails with none, as in xinetd. A version refused while another
live service of ours holds it is SET again once that holder's entry is UNSET (a
reload removed it, or it closed), so the survivor serves its whole range; xinetd
leaves such a version unregistered.

A SET that is never answered (every retransmission unanswered) may still have been
applied, only its answers lost: its version counts as not registered and, the entry
being unwanted, is UNSET, so that the portmapper does not hand out a port nobody
serves, whether the service then runs with its other versions or fails. xinetd
leaves such a version registered. An UNSET never answered is not sent again.

The calls in flight are WINDOW at most, across every program: the portmapper reads
them from one UDP socket whose receive buffer holds a few hundred small datagrams,
so a range of 1,000 versions (or many services at start-up) sent at once would
overflow it, and every call dropped would wait for its retransmission, which would
burst again. A version due a call while the window is full waits its turn (a lane
in `_waiting`: only which version, never which call, so the call is chosen from the
table when the slot is free); the turns go round the programs, so that a wide range
does not hold back another program's single version.

Unlike xinetd, no call blocks: the loop serves the other services meanwhile, and
there is no 1 s sleep after each SET. At SIGTERM/SIGQUIT nothing is wanted any more:
a SET still in flight is abandoned (not retransmitted: the portmapper may have taken
it) and every entry that may be registered is UNSET, through the same window, each
UNSET sent once. Unregistering has one call's retransmission span to complete
(PortmapClient.give_up_after, about 2 s): an answering portmapper takes thousands of
UNSETs in that time, and a silent one is not waited for beyond it (the versions
still unanswered or unsent then are logged), so the exit is bounded. An exit that
does not wait at all (-d's SIGINT) sends every UNSET still due once, window or not.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyxinetd.children import Child
from pyxinetd.config.model import ServiceConfig
from pyxinetd.log import ProgramLog
from pyxinetd.loop import Loop
from pyxinetd.portmap import (NO_ANSWER, PMAPPROC_SET, PMAPPROC_UNSET, Mapping,
                              PortmapClient)
from pyxinetd.service import ServiceRuntime
from pyxinetd.timers import Timer

# The most portmapper calls in flight at once. rpcbind reads one UDP socket with the
# default receive buffer (net.core.rmem_default, 208 KiB), in which each small call
# costs a socket buffer of about 1 KiB: a few hundred fit. 32 stays well below that
# with room for other programs' calls, and over loopback, where an answer comes back
# in well under a millisecond, the window is not what limits the pace.
WINDOW = 32


def is_rpc(svc: ServiceConfig) -> bool:
    return "RPC" in svc.types and svc.rpc_number is not None


def versions(svc: ServiceConfig) -> range:
    assert svc.rpc_version is not None
    low, high = svc.rpc_version
    return range(low, high + 1)


@dataclass(frozen=True)
class Registration:
    """What one service registered: the versions the portmapper accepted."""

    program: int
    protocol: int
    port: int
    versions: tuple[int, ...]


class Claim:
    """What one service wants registered: each version of its range at `port`.

    `outcome` is what became of a version's SET: True (registered), False (refused or
    never answered: not asked again until a reload changes the range); a version not
    in it is still to be SET. `yielded`: the refused versions another of our services
    held at the time, asked again once the portmapper no longer holds them.
    `on_settled` is called once every version has one."""

    def __init__(self, rt: ServiceRuntime, port: int,
                 on_settled: Callable[[Registration | None], None] | None) -> None:
        assert rt.config.rpc_number is not None
        self.rt = rt
        self.program = rt.config.rpc_number
        self.protocol = rt.config.protocol_number
        self.port = port
        self.outcome: dict[int, bool] = {}
        self.yielded: set[int] = set()
        self.on_settled = on_settled

    @property
    def service_id(self) -> str:
        return self.rt.config.id

    def wants(self, version: int) -> bool:
        return version in versions(self.rt.config) and self.outcome.get(version) is not False

    def reclaims(self, version: int) -> bool:
        """Was `version` refused for another service's entry, to be asked again once
        that is gone?"""
        return version in self.yielded and version in versions(self.rt.config)

    def registration(self) -> Registration | None:
        accepted = tuple(v for v in versions(self.rt.config) if self.outcome.get(v))
        if not accepted:
            return None
        return Registration(self.program, self.protocol, self.port, accepted)

    def settled(self) -> bool:
        wanted = versions(self.rt.config)
        # The count first: asked after each answer, it is false until the last one.
        return len(self.outcome) >= len(wanted) and all(v in self.outcome for v in wanted)


@dataclass
class _Entry:
    """One (program, version, protocol) the portmapper may hold for us, at `port`.
    Not `certain` when a call about it went unanswered."""

    port: int
    service_id: str
    certain: bool


@dataclass
class _Call:
    procedure: int          # PMAPPROC_SET or PMAPPROC_UNSET
    mapping: Mapping
    claim: Claim | None     # the SET's
    xid: int | None = None


class RpcRegistry:
    """The portmapper registrations of the master's RPC services."""

    def __init__(self, loop: Loop, program: ProgramLog,
                 client: PortmapClient | None = None, window: int = WINDOW) -> None:
        self.log = program
        self.loop = loop
        self.client = client or PortmapClient(loop)
        self.window = window
        self._claims: dict[ServiceRuntime, Claim] = {}
        # What the portmapper holds, as far as the answers tell: (program, version)
        # -> protocol -> entry. By version, so that an answer, which concerns one,
        # costs the same whatever the number of versions registered.
        self._table: dict[tuple[int, int], dict[int, _Entry]] = {}
        # The calls in flight, by (program, version): at most one each. A call touches
        # its own version alone (an UNSET both protocols of it), so versions do not
        # wait for each other, and no call of a version overtakes another.
        self._in_flight: dict[tuple[int, int], _Call] = {}
        # The versions due a call while the window is full, by program: the programs in
        # the order of their turns, each one's versions in the order they became due.
        self._waiting: dict[int, dict[int, None]] = {}
        self._filling = False
        self._closing = False
        self._close_deadline: Timer | None = None
        self._gave_up = False
        self._when_idle: list[Callable[[], None]] = []

    def registration(self, rt: ServiceRuntime) -> Registration | None:
        claim = self._claims.get(rt)
        return claim.registration() if claim is not None else None

    def activation(self, rt: ServiceRuntime, sock: socket.socket,
                   on_registered: Callable[[socket.socket], None],
                   on_failed: Callable[[], None]) -> Activation:
        """The registration step of a freshly bound RPC service (call start())."""
        return Activation(self, rt, sock, on_registered, on_failed)

    # -- what is wanted ----------------------------------------------------------
    def claim(self, rt: ServiceRuntime, port: int,
              on_settled: Callable[[Registration | None], None] | None) -> Claim:
        """Register every version of `rt` at `port` (instead of what it had);
        on_settled(registration, or None if no version took) once each is answered."""
        old = self._claims.pop(rt, None)
        claim = Claim(rt, port, on_settled)
        if not self._closing:
            self._claims[rt] = claim
        self._reconcile(claim.program)
        if old is not None and old.program != claim.program:
            self._reconcile(old.program)
        return claim

    def withdraw(self, claim: Claim) -> None:
        """`claim` is wanted no more: what it registered is UNSET (its on_settled is
        not called)."""
        claim.on_settled = None
        if self._claims.get(claim.rt) is claim:
            del self._claims[claim.rt]
        self._reconcile(claim.program)

    def unregister(self, rt: ServiceRuntime) -> None:
        """UNSET what `rt` registered (if anything)."""
        claim = self._claims.get(rt)
        if claim is not None:
            self.withdraw(claim)

    def reregister(self, rt: ServiceRuntime, old: ServiceConfig) -> None:
        """A readjusted service: its range changed (§6.2), so the versions it dropped
        are UNSET and those it added SET; those refused before are asked again. What
        it kept of a dropped version is forgotten: UNSET now, it is registered again
        only once a later widening's SET is answered."""
        claim = self._claims.get(rt)
        if old.rpc_version == rt.config.rpc_version or claim is None:
            return
        wanted = versions(rt.config)
        claim.outcome = {v: ok for v, ok in claim.outcome.items() if ok and v in wanted}
        claim.yielded.clear()
        self._reconcile(claim.program)

    def follow(self, rt: ServiceRuntime) -> None:
        """A cps re-activation bound a new socket: register it (xinetd does too)."""
        if not is_rpc(rt.config) or rt.sock is None:
            return

        sock = rt.sock

        def settled(registration: Registration | None) -> None:
            # A service stopped meanwhile (its socket closed or replaced by a reload)
            # is not one that cannot start: its failed SETs were logged, nothing more.
            if registration is None and rt.sock is sock:
                self.log.error("activate_rpc",
                               f"No RPC versions registered for service {rt.config.id}")
        self.claim(rt, sock.getsockname()[1], settled)

    def unregister_all(self, then: Callable[[], None]) -> None:
        """UNSET every registration (shutdown), and every version whose SET is still
        unanswered (abandoned: no retransmission may follow the UNSET); `then()` once
        every call is answered or given up. Nothing is registered afterwards."""
        self._closing = True
        for claim in self._claims.values():
            claim.on_settled = None
        self._claims.clear()
        for lane, call in list(self._in_flight.items()):
            if call.procedure == PMAPPROC_SET:
                if call.xid is not None:
                    self.client.abandon(call.xid)
                del self._in_flight[lane]
                self._maybe_there(call.mapping, call.claim)
        self._when_idle.append(then)
        if self._close_deadline is None:
            self._close_deadline = self.loop.call_later(self.client.give_up_after,
                                                        self._give_up)
        for program in {lane[0] for lane in self._table} | {lane[0] for lane in self._in_flight}:
            self._reconcile(program)
        self._check_idle()

    def close(self) -> None:
        """Close the portmapper socket. When unregistering is still under way (an exit
        that does not wait for it: -d's SIGINT, an error), the UNSETs still waiting for
        a slot are sent first, once each and never answered: the window would only keep
        them from going at all. After giving up on a silent portmapper, nothing is."""
        if self._close_deadline is not None:
            self._close_deadline.cancel()
            self._close_deadline = None
        if self._closing and not self._gave_up:
            self.window = len(self._in_flight) + sum(map(len, self._waiting.values()))
            self._fill_window()
        self.client.close()

    def _give_up(self) -> None:
        """The end of unregistering's time: the UNSETs still unanswered or unsent are
        abandoned (the portmapper may keep those versions), so that the exit comes."""
        self._close_deadline = None
        self._gave_up = True
        left: dict[int, int] = {}
        for (program, _), call in self._in_flight.items():
            if call.xid is not None:
                self.client.abandon(call.xid)
            left[program] = left.get(program, 0) + 1
        self._in_flight.clear()
        for program, waiting in self._waiting.items():
            left[program] = left.get(program, 0) + len(waiting)
        self._waiting.clear()
        for program, count in sorted(left.items()):
            self.log.error("deactivate", f"pmap_unset failed. program={program} "
                                         f"versions={count} (no time left at exit)")
        self._check_idle()

    # -- reconciling -------------------------------------------------------------
    def _wanting(self, program: int, version: int, protocol: int) -> list[Claim]:
        return [c for c in self._claims.values() if c.program == program
                and c.protocol == protocol and c.wants(version)]

    def _unwanted(self, key: tuple[int, int, int], entry: _Entry) -> bool:
        return not any(c.port == entry.port for c in self._wanting(*key))

    def _reconcile(self, program: int) -> None:
        """Send the next call each version of `program` needs, unless it has one in
        flight: an UNSET of what nobody wants first, then the SETs wanted."""
        claims = [c for c in self._claims.values() if c.program == program]
        known = {lane[1] for lane in self._table if lane[0] == program}
        known.update(lane[1] for lane in self._in_flight if lane[0] == program)
        for claim in claims:
            known.update(versions(claim.rt.config))
        for version in sorted(known):
            self._next_call(program, version, self._entries(program, version), claims)
        for touched in sorted(self._fill_window() | {program}):
            self._settle(touched)
        self._check_idle()

    def _reconcile_version(self, program: int, version: int) -> None:
        """_reconcile() for the one version an answer concerned (the others' state
        did not change): a range of 1,000 versions costs no more per answer."""
        self._next_call(program, version, self._entries(program, version),
                        self._program_claims(program))
        for touched in sorted(self._fill_window() | {program}):
            self._settle(touched)
        self._check_idle()

    def _program_claims(self, program: int) -> list[Claim]:
        return [c for c in self._claims.values() if c.program == program]

    def _entries(self, program: int, version: int) -> list[tuple[tuple[int, int, int],
                                                                   _Entry]]:
        """The entries of one version, by protocol: ((program, version, protocol), entry)."""
        held = self._table.get((program, version), {})
        return [((program, version, protocol), held[protocol]) for protocol in sorted(held)]

    def _held(self, key: tuple[int, int, int]) -> _Entry | None:
        return self._table.get(key[:2], {}).get(key[2])

    def _hold(self, key: tuple[int, int, int], entry: _Entry) -> None:
        self._table.setdefault((key[0], key[1]), {})[key[2]] = entry

    def _next_call(self, program: int, version: int,
                   entries: list[tuple[tuple[int, int, int], _Entry]],
                   claims: list[Claim]) -> None:
        """Send the call this version needs now, or, while the window is full or other
        versions wait for a slot, queue the version behind them."""
        call = self._due(program, version, entries, claims)
        if call is None:
            return
        if self._waiting or len(self._in_flight) >= self.window:
            self._waiting.setdefault(program, {})[version] = None
            return
        self._send(call)

    def _fill_window(self) -> set[int]:
        """Give the free slots of the window to the waiting versions, one per program
        in turn. Each one's call is chosen now, from the table: a version no longer
        needing one (its claim withdrawn meanwhile, or what it wants found there) just
        leaves the queue. Returns the programs whose versions it took, to be settled."""
        touched: set[int] = set()
        if self._filling:
            return touched  # a call answered at once (no socket): the outer loop goes on
        self._filling = True
        try:
            while self._waiting and len(self._in_flight) < self.window:
                program = next(iter(self._waiting))
                versions = self._waiting.pop(program)
                version = next(iter(versions))
                del versions[version]
                if versions:
                    self._waiting[program] = versions     # its next turn comes last
                touched.add(program)
                call = self._due(program, version, self._entries(program, version),
                                 self._program_claims(program))
                if call is not None:
                    self._send(call)
        finally:
            self._filling = False
        return touched

    def _due(self, program: int, version: int,
             entries: list[tuple[tuple[int, int, int], _Entry]],
             claims: list[Claim]) -> _Call | None:
        """The call `version` needs now, from the claims and the table; None while
        one is in flight for it, or when it needs none (a claim finding exactly what it
        wants there counts it as registered)."""
        if (program, version) in self._in_flight or self._gave_up:
            return None
        for key, entry in entries:
            if self._unwanted(key, entry):
                return _Call(PMAPPROC_UNSET, Mapping(*key, entry.port), None)
        if self._closing:
            return None
        for claim in claims:
            held = self._held((program, version, claim.protocol))
            if held is None and claim.reclaims(version):
                # The service that held it is gone: this one's turn.
                claim.yielded.discard(version)
                claim.outcome.pop(version, None)
            if not claim.wants(version):
                continue
            if held is not None and held.certain and held.port == claim.port:
                # Exactly what it wants is there, whoever SET it (a removed service's
                # late answer for the same fixed port): it counts as registered.
                claim.outcome.setdefault(version, True)
                continue
            return _Call(PMAPPROC_SET, Mapping(program, version, claim.protocol,
                                               claim.port), claim)
        return None

    def _send(self, call: _Call) -> None:
        self._in_flight[(call.mapping.program, call.mapping.version)] = call
        if call.procedure == PMAPPROC_SET:
            call.xid = self.client.set(call.mapping, functools.partial(self._set_answered,
                                                                       call))
        else:
            call.xid = self.client.unset(call.mapping, functools.partial(
                self._unset_answered, call))

    def _done(self, call: _Call) -> bool:
        """Take `call` out of those in flight; False if it was abandoned already."""
        lane = (call.mapping.program, call.mapping.version)
        if self._in_flight.get(lane) is not call:
            return False
        del self._in_flight[lane]
        return True

    def _set_answered(self, call: _Call, ok: bool | None, error: str | None) -> None:
        if not self._done(call):
            return
        mapping, claim = call.mapping, call.claim
        assert claim is not None
        key = (mapping.program, mapping.version, mapping.protocol)
        entry = self._held(key)
        if ok or (ok is False and entry is not None and not entry.certain
                  and entry.port == mapping.port):
            # FALSE for a triple that may be ours at this very port: it is there.
            self._hold(key, _Entry(mapping.port, claim.service_id, True))
            claim.outcome[mapping.version] = True
        else:
            why = f" ({error})" if error else ""
            self.log.error("activate_rpc",
                           f"pmap_set failed. service={claim.service_id} "
                           f"program={mapping.program} version={mapping.version}{why}")
            claim.outcome[mapping.version] = False
            if error == NO_ANSWER:
                self._maybe_there(mapping, claim)
            elif ok is False and entry is not None and entry.port != mapping.port:
                # Another of our services registered it first (an overlapping range).
                claim.yielded.add(mapping.version)
        self._reconcile_version(mapping.program, mapping.version)

    def _maybe_there(self, mapping: Mapping, claim: Claim | None) -> None:
        """A SET went unanswered: the portmapper may hold it."""
        key = (mapping.program, mapping.version, mapping.protocol)
        if self._held(key) is None:
            self._hold(key, _Entry(mapping.port, claim.service_id if claim else "", False))

    def _unset_answered(self, call: _Call, ok: bool | None, error: str | None) -> None:
        if not self._done(call):
            return
        program, version = call.mapping.program, call.mapping.version
        entries = self._entries(program, version)
        if ok is None:
            owner = next((e.service_id for k, e in entries if self._unwanted(k, e)), "")
            self.log.error("deactivate", f"pmap_unset failed. service={owner} "
                                         f"program={program} version={version} ({error})")
        for key, entry in entries:
            if ok is not None or self._unwanted(key, entry):
                del self._table[key[:2]][key[2]]    # gone, or given up on
            else:
                entry.certain = False               # maybe gone: SET again to know
        if not self._table.get((program, version), True):
            del self._table[(program, version)]
        self._reconcile_version(program, version)

    def _settle(self, program: int) -> None:
        """Report the claims of `program` whose every version was answered."""
        for claim in list(self._claims.values()):
            if claim.program != program or claim.on_settled is None or not claim.settled():
                continue
            report, claim.on_settled = claim.on_settled, None
            registration = claim.registration()
            self.log.debug("activate_rpc", f"Registered "
                           f"{len(registration.versions) if registration else 0} "
                           f"versions of {claim.service_id}")
            report(registration)

    def _check_idle(self) -> None:
        if self._in_flight or self._waiting or not self._when_idle:
            return
        if self._close_deadline is not None:
            self._close_deadline.cancel()
            self._close_deadline = None
        waiting, self._when_idle = self._when_idle, []
        for then in waiting:
            then()


class Activation:
    """Registers one freshly bound RPC service; reports once, like listener.Binder.

    `on_registered(sock)` when at least one version was registered, else `on_failed()`
    (the socket is then closed). cancel() abandons it: nothing is reported, and the
    versions the portmapper accepts meanwhile are unregistered again.
    """

    def __init__(self, registry: RpcRegistry, rt: ServiceRuntime, sock: socket.socket,
                 on_registered: Callable[[socket.socket], None],
                 on_failed: Callable[[], None]) -> None:
        self._registry = registry
        self._rt = rt
        self._sock = sock
        self._on_registered = on_registered
        self._on_failed = on_failed
        self._claim: Claim | None = None
        self.done = False

    def start(self) -> None:
        self._claim = self._registry.claim(self._rt, self._sock.getsockname()[1],
                                           self._answered)

    def _answered(self, registration: Registration | None) -> None:
        self.done = True
        if registration is None:
            # Its refused SETs were logged; the caller logs xinetd's `failed to start`.
            if self._claim is not None:
                self._registry.withdraw(self._claim)
            self._sock.close()
            self._on_failed()
            return
        self._on_registered(self._sock)

    def cancel(self) -> None:
        if not self.done:
            self._sock.close()
            if self._claim is not None:
                self._registry.withdraw(self._claim)
        self.done = True


def kill_servers(children: Iterable[Child], log: ProgramLog) -> None:
    """SIGTERM of the daemon: RPC servers get SIGKILL, as xinetd sends them (§6.1)."""
    for child in children:
        if not is_rpc(child.service):
            continue
        log.warning("terminate_servers", f"Sending signal {int(signal.SIGKILL)} to "
                                         f"{child.service.id} server {child.pid}")
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def implied_flags(svc: ServiceConfig) -> frozenset[str]:
    """Flags xinetd adds by itself: NOLIBWRAP on TCP RPC services (reference §4.14)."""
    return frozenset({"NOLIBWRAP"}) if is_rpc(svc) and svc.protocol == "tcp" \
        else frozenset()


def dump_lines(svc: ServiceConfig) -> list[str]:
    """The `RPC data` block of the SIGUSR1 dump (reference §6.4)."""
    if not is_rpc(svc):
        return []
    assert svc.rpc_version is not None
    low, high = svc.rpc_version
    return ["RPC data",
            f"\tprogram number = {svc.rpc_number}",
            f"\trpc_version = {low}" + (f"-{high}" if high != low else "")]
