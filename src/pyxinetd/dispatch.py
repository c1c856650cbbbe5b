"""What happens when a service's socket becomes readable: one handler per dispatch model.

Reference §4.3. The per-request path is kept to the minimum: accept (or peek), a few
integer checks, spawn, record the child, log only when the service has a log_type,
close the parent's copy. No DNS, no NSS, no configuration work.

  stream/nowait   accept here; the server gets the connection; our copy closed at once
  stream/wait     pyxinetd.waitservers: the server gets the listening socket; the service
                  is suspended until that server is reaped (INTERCEPT: pyxinetd.intercept)
  dgram/*         pyxinetd.dgram (dgram/wait, dgram/nowait relays, datagram builtins);
                  routed from here, using the checks and spawn below through its Host
  internal        stream builtins, tcpmux and redirect run in the loop (pyxinetd.sessions,
                  after the same checks)
"""

from __future__ import annotations

import errno
import socket
import time
import weakref
from collections.abc import Callable, Mapping, Sequence

from pyxinetd import banners, loopshare
from pyxinetd.access.gate import AccessGate, Datagram, Verdict
from pyxinetd.access.hostspatterns import normalize_address
from pyxinetd.access.resolver import NameInfo
from pyxinetd.children import Child, ChildTable, ExitStatus
from pyxinetd.config.model import ServiceConfig, SocketType
from pyxinetd.dgram import DatagramDispatch
from pyxinetd.dgramrelay import NowaitRelays
from pyxinetd.forkretry import ForkRetry, Hold, Outcome
from pyxinetd.handover import HandedOver
from pyxinetd.intercept import CPS_TRIPPED, Address, Interceptors
from pyxinetd.internal import tcpmux
from pyxinetd.internal.session import discard_input
from pyxinetd.listener import ACCEPT_BATCH, SHORTAGE_ERRNOS, Accepted, accept_queued, \
    close_unlingering, descriptor_ceiling, reset_all
from pyxinetd.log import ProgramLog, strerror
from pyxinetd.servicelog import ServiceLogs, fail_entry
from pyxinetd.peerenv import PEERENV_FLAG
from pyxinetd.reload import rules_replaced
from pyxinetd.loop import READ, Handler, Loop
from pyxinetd.sensor import DenyList
from pyxinetd.service import REASON_ADDRESS, REASON_CPS, REASON_LOAD, REASON_TIME, Event, \
    LIVE_STATES, Limits, ServiceRuntime, State, within_access_times
from pyxinetd.serverstart import ServerStarter
from pyxinetd.sessions import FORKING_BUILTINS, SessionRecord, Sessions
from pyxinetd.suspend import Suspensions
from pyxinetd.userid import UserIds
from pyxinetd.waiting import Waiting
from pyxinetd.waitservers import WaitServers

class Dispatcher:
    """Handles requests for every active service. The datagram models live in
    `self.dgram` (pyxinetd.dgram), the in-loop sessions in `self.sessions`
    (pyxinetd.sessions)."""

    def __init__(self, loop: Loop, children: ChildTable, program: ProgramLog,
                 logs: ServiceLogs, limits: Limits, *, as_root: bool,
                 services: Callable[[], Sequence[ServiceRuntime]],
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.loop = loop
        # cps suspensions and accept pauses (pyxinetd.suspend).
        self.suspend = Suspensions(loop, program, self, children.occupancy)
        self.children = children
        self.program = program
        self.logs = logs
        self.limits = limits
        self._services = services
        # datagram_builtin_ports(), with what it was computed for.
        self._builtin_ports: tuple[object, frozenset[int]] = (None, frozenset())
        # Stream builtins, tcpmux and redirect, served in the loop.
        self.sessions = Sessions(loop, children.occupancy, program, logs,
                                 services=services, view=self, launch=self.launch)
        # SENSOR services and the global deny list (§4.6).
        self.sensor = DenyList(loop.clock, loop.call_later, program)
        self.denied: Callable[[str], bool] = self.sensor.denied
        # only_from/no_access and TCP Wrappers, after the parent checks (§4.4).
        self.access = AccessGate(loop, program)
        self.dgram = DatagramDispatch(self)
        self.relays = NowaitRelays(self, self.dgram.park)
        # Connections held for a fork retry (pyxinetd.forkretry): the retry's, whatever
        # fails after they were held.
        self._held_for_retry: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        # Admitted PEERENV clients whose server waits for their name (TCPREMOTEHOST).
        self._naming: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        # Identified clients (USERID) whose server has not started yet: what writes
        # their USERID line once it has, after its START line, as xinetd's child writes
        # them; never when it does not start (refused after a reload, a fork given up).
        self._identified: weakref.WeakKeyDictionary[
            socket.socket, Callable[[ServiceConfig], None]] = weakref.WeakKeyDictionary()
        # USERID/IDONLY: ident lookups before a server starts or after a refusal.
        self.userid = UserIds(loop, program, logs, children.occupancy,
                              lambda svc: not svc.is_internal
                              or svc.name in FORKING_BUILTINS)
        # Requests whose fork failed, waiting for their retry (§4.15).
        self.retries = ForkRetry(loop, program, logs, children.occupancy)
        self.starter = ServerStarter(children, program, logs, self.retries, as_root=as_root,
                                     clock=loop.clock, wall_clock=wall_clock)
        self.waiting = Waiting(children.occupancy)
        # flags = INTERCEPT: wait = yes servers whose clients the master checks (§4.13).
        self.intercept = Interceptors(self)
        # wait = yes: servers on the service socket, and the resume (pyxinetd.waitservers).
        self.waits = WaitServers(self)
        # Sockets the service manager passed (set by the master; pyxinetd.handover).
        self.handed_over = HandedOver()

    # -- registration ------------------------------------------------------
    def activate(self, rt: ServiceRuntime, sock: socket.socket | None, event: Event) -> None:
        rt.sock = sock
        if sock is not None and self._is_external_wait(rt.config):
            # The wait=yes server reads this socket itself and expects blocking I/O;
            # the master only peeks/drains it, with MSG_DONTWAIT.
            sock.setblocking(True)
        rt.transition(event)
        self.refresh(rt)

    def refresh(self, rt: ServiceRuntime) -> None:
        """Watch the listener exactly when the service accepts requests."""
        if rt.sock is None:
            return
        if self.intercept.watch(rt):
            return  # an intercepted server runs: the interceptor reads the socket
        self.loop.set_events(rt.sock, READ if rt.wants_events else 0, self.handler_for(rt))
        if rt.wants_events and self.intercept.holds(rt):
            # Clients an intercepted server left unserved wait for the next one, as a
            # connection queued on the socket would.
            sock = rt.sock
            self.loop.call_soon(lambda: self.waits.serve_pending(rt, sock))

    def pause_accept(self, rt: ServiceRuntime, err: OSError) -> None:
        self.suspend.pause_accept(rt, err)

    def accepting(self, rt: ServiceRuntime) -> None:
        self.suspend.accepting(rt)

    def close_listener(self, rt: ServiceRuntime, why: str | None = None) -> None:
        """Close rt's listening socket; the clients held for its next intercepted server
        are closed too, with a WARNING giving `why` when a reload is the cause."""
        self.intercept.drop_held(rt, why)
        if rt.sock is not None:
            self.loop.unregister(rt.sock)
            if not self.handed_over.give_back(rt.sock):
                rt.sock.close()
            rt.sock = None

    def handed_over_socket(self, svc: ServiceConfig) -> socket.socket | None:
        """The socket the service manager bound for svc, if it passed one."""
        return self.handed_over.claim(svc)

    @staticmethod
    def _is_external_wait(svc: ServiceConfig) -> bool:
        return svc.wait and not svc.is_internal and not svc.is_redirect

    def handler_for(self, rt: ServiceRuntime) -> Handler:
        svc = rt.config
        connected = svc.socket_type in (SocketType.STREAM, SocketType.SEQPACKET)
        if connected:
            if svc.wait and not svc.is_internal and not svc.is_redirect:
                return lambda mask: self.waits.on_stream(rt)
            return lambda mask: self._on_acceptable(rt)
        if svc.is_internal:
            return lambda mask: self.dgram.on_internal(rt)
        if svc.wait:
            return lambda mask: self.dgram.on_wait(rt)
        return lambda mask: self.relays.on_readable(rt)

    # -- refusals, cps -----------------------------------------------------
    def refuse(self, rt: ServiceRuntime, peer: str, reason: str,
               conn: socket.socket | None, *, sender: tuple[object, ...] | None = None,
               greeted: bool = False) -> None:
        """Log and answer a refused request, in xinetd's order: the program-log line of
        a cps trip or of max_load first, then the FAIL line, then banner_fail (not
        when `greeted`: the client was sent banner_success already, see `judge_again`).
        `sender`: a datagram's source (address, port); an address refusal that repeats
        the last one of this service within a minute is not logged again."""
        svc = rt.config
        if reason == REASON_CPS:
            # Its held datagram senders' datagrams are lost with the socket: said so.
            self.intercept.drop_held(rt, CPS_TRIPPED)
            self.suspend.cps_tripped(rt)
        elif reason == REASON_LOAD:
            self.program.error("xinetd", f"refused connect from {peer} due to excessive load")
        if svc.log_type is not None and not (
                reason == REASON_ADDRESS and sender is not None
                and rt.repeated_refusal(sender)):
            self.logs.write(svc, fail_entry(svc, reason, peer))
        if conn is not None:
            if svc.banner_fail and not greeted:
                banners.banner_fail(svc, conn, self._banner_error, peer)
            if not self.userid.after_refusal(svc, conn, peer):
                # What the client sent is never read: closing over it would reset the
                # connection and could lose the banners before the client reads them.
                discard_input(conn)
                conn.close()

    def _banner_error(self, text: str) -> None:
        self.program.error("banner", text)

    def hold(self, rt: ServiceRuntime, peer: str, drop: Callable[[], None]
             ) -> Callable[[], bool]:
        """Hold an instance slot of `rt` for `peer` while its admitted request waits
        for a name or an aclexec check; returns `resume` (pyxinetd.waiting)."""
        return self.waiting.hold(rt.config, peer, drop)

    def parent_check(self, rt: ServiceRuntime, peer: str) -> str | None:
        """xinetd's checks before forking, then the SENSOR trap: the refusal reason or None."""
        if not rt.config.is_sensor:
            return rt.check(peer, self.children.occupancy, self.limits, self.denied)
        # A sensor does not consult the deny list: a listed client hits it again.
        reason = rt.check(peer, self.children.occupancy, self.limits)
        if reason is None:
            self.sensor.hit(rt.config, peer)
            return REASON_ADDRESS
        return reason

    def twist_check(self, rt: ServiceRuntime, peer: str) -> str | None:
        """The limits a `twist` command run for a client of a running intercepted
        server is checked against, as a server started for it: `max_load`,
        `access_times`, `instances`, `per_source`, `-limit` (the refusal reason or
        None). Not `cps`: the interceptor's clients are not requests on the service
        socket, and a trip would close that socket under the running server."""
        return rt.check(peer, self.children.occupancy, self.limits, rated=False)

    # -- stream ------------------------------------------------------------
    def _on_acceptable(self, rt: ServiceRuntime) -> None:
        sock = rt.sock
        if sock is None:
            return
        budget = ACCEPT_BATCH
        limited = False     # by the share's room: the batch may end with more queued
        svc = rt.config
        identified = self.userid.wanted(svc)
        if svc.is_internal or svc.is_redirect or identified:
            # Its sessions (or its clients' identity lookups) keep their descriptors:
            # no more are accepted than the share they may hold (pyxinetd.loopshare)
            # has room for. The clients beyond it wait in the queue until one ends.
            cost = 2 if identified else loopshare.session_cost(svc)
            share = loopshare.budget()
            room = (share - self.in_loop_descriptors()) // cost
            if room <= 0:
                self.suspend.wait_for_descriptors(rt, share)
                return
            if room < budget:
                budget, limited = room, True
        ceiling = descriptor_ceiling()
        while budget > 0:
            batch, err, crowded = accept_queued(sock, budget, ceiling)
            budget -= len(batch)
            if not self._serve_batch(rt, sock, batch):
                break
            if crowded:
                continue    # served, the batch gave its descriptors back: accept on
            if err is None:
                break
            if batch and err.errno in SHORTAGE_ERRNOS:
                continue    # its refused and started connections gave their descriptors back
            if err.errno in SHORTAGE_ERRNOS:
                self.suspend.pause_accept(rt, err)
            elif err.errno != errno.EBADF:
                self.program.error("svc_accept", f"{rt.id}: accept failed: {strerror(err)}")
            return
        if limited and budget <= 0:
            return      # the share's room is used up, not the queue: still short
        self.suspend.accepting(rt)

    def in_loop_descriptors(self) -> int:
        """The descriptors in-loop sessions, datagram relay channels and identity
        lookups hold now."""
        return (self.sessions.descriptors + self.relays.descriptors
                + self.userid.descriptors())

    def _serve_batch(self, rt: ServiceRuntime, sock: socket.socket,
                     batch: list[Accepted]) -> bool:
        """Handle the accepted connections in their order; False when the listener was
        closed or paused meanwhile (a cps trip): the rest of the batch is reset, as the
        kernel resets what a closed listener still had queued."""
        for index, (conn, addr, peer) in enumerate(batch):
            try:
                self._handle_connection(rt, conn, addr, peer)
            except Exception as exc:
                if self.loop.on_error is None:
                    reset_all(batch[index + 1:])
                    raise
                # A bug met while handling one client costs that client alone: raised
                # to the loop, it would stop watching the listener, ending the service
                # for every later client, and reset the rest of the batch unnamed.
                fate = self._let_go(conn, peer)
                self.loop.on_error(f"handling {rt.id}'s connection from {peer} "
                                   f"({fate})", exc)
            except BaseException:
                reset_all(batch[index + 1:])
                raise
            if rt.sock is not sock or not rt.wants_events:
                reset_all(batch[index + 1:])
                return False
        return True

    def _handle_connection(self, rt: ServiceRuntime, conn: socket.socket,
                           addr: tuple[object, ...], peer: str) -> None:
        svc = rt.config
        if svc.banner:
            banners.banner(svc, conn, self._banner_error, peer)
        reason = self.parent_check(rt, peer)
        if reason is not None:
            self.refuse(rt, peer, reason, conn)
            return
        self._admit(rt, conn, addr, peer, self.access.check(svc, peer, conn))

    def _admit(self, rt: ServiceRuntime, conn: socket.socket, addr: tuple[object, ...],
               peer: str, verdict: Verdict | None) -> None:
        """The end of the access checks (§4.4): refuse, or start the (possibly twisted)
        server. None: the rules need a name looked up or an aclexec check run; the
        connection waits, parked. A reload that replaces the rules meanwhile has the
        new ones judge it (`judge_again`): the old ones' verdict is never applied."""
        if verdict is None:
            resume = self.hold(rt, peer, conn.close)
            asked = rt.config

            def decide(v: Verdict) -> None:
                if not resume():
                    return
                now = _in_force(rt, asked)
                if now is not None:
                    self.judge_again(now, peer, conn=conn,
                                     admitted=lambda svc: self._go(now, svc, conn, addr, peer))
                else:
                    self._admit(rt, conn, addr, peer, v)

            def decided(v: Verdict) -> None:
                self._contained(rt, peer, conn, lambda: decide(v))
            try:
                self.access.wait(asked, peer, decided, conn,
                                 replaced=lambda: _in_force(rt, asked) is not None)
            except BaseException:
                # Unless the gate parked it (the wait has it, and its slot: `_let_go`
                # leaves it there), nothing waits (the caller, the accept batch or
                # `_contained`, resets the connection): the slot is free.
                if not self.access.holds(conn):
                    resume()
                raise
            return
        if not verdict.allowed:
            self.refuse(rt, peer, verdict.reason or "address", conn)
            return
        svc = rt.config
        if verdict.decision is not None:
            svc = self.access.prepare(svc, verdict, conn, peer)
        self._go(rt, svc, conn, addr, peer)

    def _go(self, rt: ServiceRuntime, svc: ServiceConfig, conn: socket.socket,
            addr: tuple[object, ...], peer: str) -> None:
        """An admitted connection: its client identified first (USERID), then its
        server or in-loop session started."""
        if self.userid.wanted(svc):
            self._identify_then_start(rt, svc, conn, addr, peer)
            return
        if svc.is_internal or svc.is_redirect:
            self.sessions.start(svc, conn, addr, peer)
        else:
            self._name_then_launch(rt, svc, conn, addr, peer)

    def judge_again(self, rt: ServiceRuntime, peer: str, *,
                    admitted: Callable[[ServiceConfig], None],
                    conn: socket.socket | None = None, datagram: Datagram | None = None,
                    dropped: Callable[[], None] = lambda: None,
                    greeted: bool = False) -> None:
        """A request admitted by rules a reload has since replaced, and not started yet
        (its verdict, client name or ident reply came in after the reload; its fork
        failed before it and is retried now): the service's rules in force now judge
        it, as the reload judged its running servers (pyxinetd.recheck): the deny
        list, `access_times`, then `only_from`/`no_access` and TCP Wrappers. Allowed,
        `admitted(svc)` gets the service to start, as the matched rule prepares it;
        refused, it gets the FAIL line (and banner_fail; `conn` is closed), then
        `dropped()`. Its instance slot is held while names are looked up; a reload
        that removes the service meanwhile closes `conn` and calls `dropped()`.
        `greeted`: `conn` was sent banner_success before its fork failed; refused, it
        gets no banner_fail after it (xinetd's child writes one or the other, §4.4).
        A runtime not available (its new socket could not be bound, a later reload
        removed it) starts no server: the request is dropped (`unavailable`)."""
        if self._unavailable(rt, peer, conn, dropped):
            return
        svc = rt.config
        if self.denied(peer):
            verdict: Verdict | None = Verdict(False, REASON_ADDRESS)
        elif svc.access_times and not within_access_times(svc):
            verdict = Verdict(False, REASON_TIME)
        else:
            verdict = self.access.check(svc, peer, conn, datagram)
        if verdict is None:
            settled = False

            def settle() -> None:
                # Once: a failure met after it (`_contained`) drops the request again.
                nonlocal settled
                if not settled:
                    settled = True
                    dropped()

            def drop() -> None:
                if conn is not None:
                    conn.close()
                settle()
            resume = self.hold(rt, peer, drop)

            def decided(v: Verdict) -> None:
                self._contained(rt, peer, conn, lambda: decide(v), settle)

            def decide(v: Verdict) -> None:
                if not resume():
                    return
                now = _in_force(rt, svc)
                if now is not None and datagram is not None and now is not rt:
                    # A reload replaced the socket the datagram was read from (or
                    # queued on): it went with that socket, judged by no rules.
                    settle()
                elif now is not None:
                    self.judge_again(now, peer, admitted=admitted, conn=conn,
                                     datagram=datagram, dropped=settle, greeted=greeted)
                elif not self._unavailable(rt, peer, conn, settle):
                    # The verdict stands, and the server is started as the runtime's
                    # configuration of now: a reload that changed nothing made a new,
                    # equal one, the one a later reload hands its servers over from.
                    self._judged(rt, rt.config, peer, v, admitted, conn, datagram,
                                 settle, greeted)
            try:
                self.access.wait(svc, peer, decided, conn, datagram,
                                 replaced=lambda: _in_force(rt, svc) is not None)
            except BaseException:
                if conn is None or not self.access.holds(conn):
                    resume()    # nothing waits: the slot is free
                raise
            return
        self._judged(rt, svc, peer, verdict, admitted, conn, datagram, dropped, greeted)

    def _unavailable(self, rt: ServiceRuntime, peer: str, conn: socket.socket | None,
                     dropped: Callable[[], None]) -> bool:
        """Whether `rt`, the runtime a request waiting at a reload is judged by, does
        not serve (the service's new socket could not be bound: it waits for its
        address, or failed; or it was taken out since). Then the request is closed
        with a WARNING naming its peer, and `dropped()` called: no server starts for
        a service that is not available, whatever the rules would say."""
        if rt.state in _AVAILABLE:
            return False
        self.program.warning("hard_reconfig", f"service {rt.id}: request from {peer} "
                                              f"dropped: the service is not available")
        if conn is not None:
            conn.close()
        dropped()
        return True

    def _judged(self, rt: ServiceRuntime, svc: ServiceConfig, peer: str, verdict: Verdict,
                admitted: Callable[[ServiceConfig], None], conn: socket.socket | None,
                datagram: Datagram | None, dropped: Callable[[], None],
                greeted: bool = False) -> None:
        if not verdict.allowed:
            self.refuse(rt, peer, verdict.reason or REASON_ADDRESS, conn,
                        sender=None if datagram is None else datagram.sender,
                        greeted=greeted)
            dropped()
            return
        admitted(self.access.prepare(svc, verdict, conn, peer)
                 if verdict.decision is not None else svc)

    def _contained(self, rt: ServiceRuntime, peer: str, conn: socket.socket | None,
                   step: Callable[[], None], dropped: Callable[[], None] | None = None
                   ) -> None:
        """Run `step` of a request that waited (for its client's name, a verdict, an
        ident reply, a fork retry), called from the loop by another descriptor's
        handler (the name resolver's, an ident socket's) or a timer. A bug met there
        costs that client alone, as in an accept batch: its connection is reset (a
        datagram is dropped; one an in-loop session or a forked server has is let go
        of by it: `_let_go`), `dropped()` is called, and one line names it. Raised to
        the loop, it would stop watching that other descriptor: every later name or
        ident reply unread, each request waiting for it until its deadline."""
        try:
            step()
        except Exception as exc:
            fate = "dropped" if conn is None else self._let_go(conn, peer)
            if dropped is not None:
                dropped()
            if self.loop.on_error is None:
                raise
            what = "connection" if conn is not None else "datagram"
            self.loop.on_error(f"handling {rt.id}'s {what} from {peer} ({fate})", exc)

    def _let_go(self, conn: socket.socket, peer: str) -> str:
        """A client whose handling failed, let go of by whoever has its connection now;
        returns what became of it, for the line naming it. An in-loop session (a
        redirect's relay, a builtin) ends with a reset: closed under it, the session
        would watch a descriptor number the next accept reuses, its slot never given
        back. Once a server is forked for it, the master's copy is closed already,
        normally: the server has the connection and keeps serving (a reset set now
        would be on the socket they share, and the server's own close would reset).
        One held for a fork retry is the retry's (its timer forks for it, or gives it
        up); one whose PEERENV name is being looked up, the lookup's. One handed to an ident lookup before its server starts (or after its
        refusal) is the lookup's, and one parked for its access checks' names or
        aclexec verdict the wait's: closed under them, they would go on with a closed
        socket (a server started on it, or on the descriptor number an accept reused).
        Otherwise the master alone has it: reset."""
        if self.sessions.reset(conn):
            return "reset"
        if conn in self._held_for_retry:
            return "kept for its fork retry"
        if conn in self._naming:
            return "kept for its name lookup"
        if self.userid.holds(conn):
            return "kept for its ident lookup"
        if self.access.holds(conn):
            return "kept for its access check"
        if conn.fileno() < 0:
            return "closed"
        reset_all([(conn, (), peer)])
        return "reset"

    def _name_then_launch(self, rt: ServiceRuntime, svc: ServiceConfig, conn: socket.socket,
                          addr: tuple[object, ...], peer: str) -> None:
        """Start the server; with PEERENV on TCP, once the client's name is known
        (TCPREMOTEHOST), looked up without blocking the loop."""
        if PEERENV_FLAG not in svc.flags or conn.type != socket.SOCK_STREAM:
            self.launch(svc, conn, addr, peer, checked=True, rt=rt)
            return

        resume = self.hold(rt, peer, conn.close)
        judged = rt.config

        def named(info: NameInfo) -> None:
            self._naming.discard(conn)
            self._contained(rt, peer, conn, lambda: launch(info))

        def launch(info: NameInfo) -> None:
            if not resume():
                return
            name = info.name if info.confirmed else None
            now = _in_force(rt, judged)
            if now is not None:
                # A reload came while the name was looked up: the new rules judge the
                # client, and its server is the new configuration's.
                self.judge_again(now, peer, conn=conn, admitted=lambda svc: self._start_as(
                    now, svc, conn, addr, peer, name))
                return
            self.launch(svc.as_of(judged, rt.config), conn, addr, peer, checked=True, rt=rt,
                        remote_name=name)
        # Before the call: the answer may come within it (`named` lets go of it then).
        self._naming.add(conn)
        try:
            self.access.resolver.lookup(normalize_address(peer), named)
        except BaseException:
            self._naming.discard(conn)
            resume()    # nothing waits: the slot is free
            raise

    def _identify_then_start(self, rt: ServiceRuntime, svc: ServiceConfig,
                             conn: socket.socket, addr: tuple[object, ...], peer: str) -> None:
        """USERID (§4.11): the server starts once its client is identified; by the
        rules in force then, if a reload came meanwhile (`judge_again`)."""
        judged = rt.config

        def run(serving: ServiceRuntime, now: ServiceConfig,
                identified: Callable[[ServiceConfig], None]) -> None:
            if now.is_internal or now.is_redirect:
                self.sessions.start(now, conn, addr, peer, started=identified)
                return
            # Written once the server has started (_start_on): its name lookup
            # (PEERENV) or a fork retry may come first, or it may never start.
            self._identified[conn] = identified
            self._name_then_launch(serving, now, conn, addr, peer)

        def start(identified: Callable[[ServiceConfig], None]) -> None:
            self._contained(rt, peer, conn, lambda: identify(identified))

        def identify(identified: Callable[[ServiceConfig], None]) -> None:
            serving = _in_force(rt, judged)
            if serving is None:
                run(rt, svc.as_of(judged, rt.config), identified)
                return
            # Refused by the new rules: FAIL, and no USERID line (nothing started).
            self.judge_again(serving, peer, conn=conn,
                             admitted=lambda now: run(serving, now, identified))
        self.userid.before_start(svc, conn, peer, start)

    def launch(self, svc: ServiceConfig, conn: socket.socket, addr: tuple[object, ...],
               peer: str, *, checked: bool = False, rt: ServiceRuntime | None = None,
               remote_name: str | None = None) -> None:
        """Start an external server on an accepted connection; closes our copy (once
        the server started, or for good when a failed fork is not retried)."""
        if not checked:
            rt = self._runtime(svc)
            if rt is not None:
                reason = rt.check(peer, self.children.occupancy, self.limits, self.denied)
                if reason is not None:
                    self.refuse(rt, peer, reason, conn)
                    return
                # The access checks come back here with checked=True (or park the
                # connection while the client's name is looked up).
                self._admit(rt, conn, addr, peer, self.access.check(svc, peer, conn))
                return
        try:
            tcpmux.acknowledge(svc, conn)
            if svc.banner_success:
                banners.banner_success(svc, conn, self._banner_error, peer)
        except BaseException:
            conn.close()
            raise
        self._start_on(rt, svc, conn, peer, addr, remote_name)

    def _start_on(self, rt: ServiceRuntime | None, svc: ServiceConfig, conn: socket.socket,
                  peer: str, addr: tuple[object, ...], remote_name: str | None = None
                  ) -> None:
        hold = None
        if rt is not None:
            judged = rt.config

            def retry() -> None:
                assert rt is not None
                self._held_for_retry.discard(conn)
                self._contained(rt, peer, conn, start_again)

            def start_again() -> None:
                assert rt is not None
                if not rules_replaced(judged, rt.config):
                    self._start_on(rt, svc.as_of(judged, rt.config), conn, peer, addr,
                                   remote_name)
                else:
                    # A reload since the failed fork: the new rules judge the client,
                    # and the server started is the new configuration's. The client
                    # has its banner_success (launch): neither banner is sent again.
                    self.judge_again(rt, peer, conn=conn, admitted=lambda now: self._restart_as(
                        rt, now, conn, peer, addr, remote_name), greeted=True)
            hold = Hold(rt, retry, lambda: close_unlingering(conn))
        try:
            result = self.starter.start(svc, conn, peer, hold=hold, remote_name=remote_name,
                                        client=addr)
        except BaseException:
            close_unlingering(conn)
            raise
        if result is Outcome.HELD:
            self._held_for_retry.add(conn)
        elif isinstance(result, int):
            conn.close()    # the server has its own copy: the last close is its
            self._identified.pop(conn, _nothing)(svc)
        else:
            self._identified.pop(conn, None)
            close_unlingering(conn)

    def _as_session(self, svc: ServiceConfig, conn: socket.socket,
                    addr: tuple[object, ...], peer: str) -> bool:
        """Serve a waiting client as a session when `svc`, the configuration a reload
        put in force while it waited, made the service a builtin or a redirect; False
        when it has a server to start."""
        if not (svc.is_internal or svc.is_redirect):
            return False
        self.sessions.start(svc, conn, addr, peer, started=self._identified.pop(conn, None))
        return True

    def _start_as(self, rt: ServiceRuntime, svc: ServiceConfig, conn: socket.socket,
                  addr: tuple[object, ...], peer: str, remote_name: str | None) -> None:
        """Start a client that waited for its name as `svc` (_as_session)."""
        if not self._as_session(svc, conn, addr, peer):
            self.launch(svc, conn, addr, peer, checked=True, rt=rt, remote_name=remote_name)

    def _restart_as(self, rt: ServiceRuntime, svc: ServiceConfig, conn: socket.socket,
                    peer: str, addr: tuple[object, ...], remote_name: str | None) -> None:
        """A fork retry's start as `svc` (_as_session; a session's greeting sends its
        banner_success, the client's second)."""
        if not self._as_session(svc, conn, addr, peer):
            self._start_on(rt, svc, conn, peer, addr, remote_name)

    def spawn_server(self, svc: ServiceConfig, sock: socket.socket, peer: str,
                     on_reap: Callable[[Child, ExitStatus], None] | None = None, *,
                     hold: Hold | None = None, announce: bool = True,
                     remote_name: str | None = None,
                     sender: object = None,
                     client: tuple[object, ...] | None = None,
                     addresses: socket.socket | None = None) -> int | Outcome | None:
        """Start svc's server on `sock` (pyxinetd.serverstart.ServerStarter.start)."""
        return self.starter.start(svc, sock, peer, on_reap, hold=hold, announce=announce,
                                  remote_name=remote_name, sender=sender, client=client,
                                  addresses=addresses)

    def _runtime(self, svc: ServiceConfig) -> ServiceRuntime | None:
        for rt in self._services():
            if rt.config is svc:
                return rt
        return None

    def start_wait_server(self, rt: ServiceRuntime, svc: ServiceConfig, peer: str,
                          drop: Callable[[socket.socket], None], *,
                          sender: Address | None = None,
                          again: Callable[[], None] | None = None) -> int | Outcome | None:
        """A wait = yes server for a request the datagram model admitted (WaitServers)."""
        return self.waits.start(rt, svc, peer, drop, sender=sender, again=again)

    # -- the view the `servers` and `services` builtins read ------------------
    def active_services(self) -> list[ServiceConfig]:
        return [rt.config for rt in self._services() if rt.state in LIVE_STATES]

    def datagram_builtin_ports(self) -> frozenset[int]:
        """The ports of the live datagram builtins, which every datagram a builtin
        answers is checked against (internal.dgram.loops_back): kept until a service
        enters or leaves LIVE_STATES or the service table is replaced, so a datagram
        costs a set lookup however many services are configured."""
        services = self._services()
        key = (ServiceRuntime.liveness_changes, id(services), len(services))
        if self._builtin_ports[0] != key:
            ports = frozenset(
                rt.config.port for rt in services
                if rt.state in LIVE_STATES and rt.config.port is not None
                and rt.config.is_internal and rt.config.socket_type is SocketType.DGRAM)
            self._builtin_ports = (key, ports)
        return self._builtin_ports[1]

    def port_of(self, svc: ServiceConfig) -> int | None:
        rt = self._runtime(svc)
        if svc.port is None and rt is not None and rt.sock is not None:
            # An RPC service without `port`: the kernel chose it at bind time.
            return int(rt.sock.getsockname()[1])
        return svc.port

    def running_servers(self) -> list[tuple[int, str, str, float]]:
        return [(c.pid, c.service.id, c.peer, c.started_at) for c in self.children]

    # -- shutdown ----------------------------------------------------------
    def session_count(self) -> int:
        """In-loop sessions plus held requests (ident lookups, fork retries, access
        checks): what holds an instance slot without a child in the table."""
        return (len(self.sessions) + self.userid.running() + len(self.retries)
                + len(self.waiting))

    def open_sessions(self) -> list[SessionRecord]:
        """The in-loop sessions, oldest first (a reload checks them again)."""
        return self.sessions.open()

    def rehome(self, moves: Mapping[int, ServiceConfig]) -> None:
        """A reload kept services (`moves`, ServiceConfig.moved): their in-loop
        sessions, ident lookups and held requests belong to the new ones from now on."""
        self.sessions.rehome(moves)
        self.userid.rehome(moves)
        self.retries.rehome(moves)
        self.waiting.rehome(moves)

    def close_sessions(self, selected: Callable[[ServiceConfig], bool],
                       why: str | None = None) -> int:
        """Close the in-loop sessions whose service `selected` picks (a reload removed
        it), drop its ident lookups and its requests waiting for a fork retry (one
        WARNING per service giving `why`). Returns how many sessions and held requests
        were closed."""
        self.userid.cancel(selected)
        closed = self.sessions.close_matching(selected) + self.waiting.cancel(selected)
        return closed + self.retries.release_matching(selected, why)

    def give_up_held(self, rt: ServiceRuntime, log_as: ServiceConfig) -> int:
        """A reload replaced the socket of `rt`: end its requests held for a fork
        retry, with their FAIL line (pyxinetd.forkretry). Returns how many."""
        return self.retries.give_up_runtime(rt, log_as)

    def close_all(self) -> None:
        self.intercept.close_all()
        self.waiting.cancel(lambda svc: True)
        self.retries.close_all()
        self.access.close()
        self.sessions.close_all()
        self.relays.close_all()
        self.userid.close()
        self.sensor.close()


# The states of a runtime that serves its requests (or is binding its socket).
_AVAILABLE = frozenset({State.STARTING, State.ACTIVE, State.SUSPENDED_WAIT,
                        State.SUSPENDED_CPS})


def _in_force(rt: ServiceRuntime, asked: ServiceConfig) -> ServiceRuntime | None:
    """The service's runtime whose rules judge a request `rt` asked `asked` about,
    when a reload has replaced them since (changed the service, or gave it a new
    socket: the request accepted on the old one is judged by the new configuration);
    None while `asked` is still in force."""
    now = rt.current()
    return None if now is rt and not rules_replaced(asked, now.config) else now


def _nothing(svc: ServiceConfig) -> None:
    """No USERID line to write (the client was not identified)."""
