"""`wait = yes` servers: the server gets the service socket itself, and the service is
suspended until that server is reaped (reference §4.3).

  stream   `on_stream`: the request has no address yet (the server will accept it), so
           the parent-level checks run, then TCP Wrappers without a client address
           (the address lists have nothing to test); refused by a limit it stays
           queued and is looked at again when a slot frees (pyxinetd.suspend), refused
           by access_times, max_load or TCP Wrappers it is accepted and closed, and so
           is one whose server could not start (a failed exec would otherwise be tried
           again at once, for ever)
  both     `start`: the server on the service socket, or with INTERCEPT on a private one
           while the master reads the service socket for it (pyxinetd.intercept); a
           failed fork keeps the request queued for the retry (pyxinetd.forkretry);
           after a reload, the retry starts the new configuration's server, for a
           datagram once the new rules admit its sender (Dispatcher.judge_again)
           `reaped`: the resume, serving a request that queued meanwhile in the same
           loop turn (dgram/wait first drains what the server left)

The datagram side of the checks lives in pyxinetd.dgram, which starts its servers here.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Protocol

from pyxinetd.access.gate import AccessGate, Datagram, Verdict
from pyxinetd.children import NO_ADDRESS, Child, ChildTable, ExitStatus
from pyxinetd.config.model import ServiceConfig, SocketType
from pyxinetd.dgram import drain
from pyxinetd.forkretry import Hold, Outcome
from pyxinetd.intercept import INTERCEPT_FLAG, Address, Interceptors
from pyxinetd.listener import SHORTAGE_ERRNOS
from pyxinetd.loop import READ, Handler, Loop
from pyxinetd.reload import rules_replaced
from pyxinetd.spawnrequest import TWIST_FLAG
from pyxinetd.service import REASON_ADDRESS, REASON_CPS, REASON_LOAD, REASON_TIME, Event, \
    Limits, ServiceRuntime, State
from pyxinetd.suspend import Suspensions

OnReap = Callable[[Child, ExitStatus], None]


class Host(Protocol):
    """What the wait = yes models use of the dispatcher."""

    loop: Loop
    children: ChildTable
    limits: Limits
    suspend: Suspensions
    intercept: Interceptors
    denied: Callable[[str], bool]

    access: AccessGate

    def refuse(self, rt: ServiceRuntime, peer: str, reason: str,
               conn: socket.socket | None) -> None: ...

    def hold(self, rt: ServiceRuntime, peer: str, drop: Callable[[], None]
             ) -> Callable[[], bool]: ...

    def refresh(self, rt: ServiceRuntime) -> None: ...

    def handler_for(self, rt: ServiceRuntime) -> Handler: ...

    def judge_again(self, rt: ServiceRuntime, peer: str, *,
                    admitted: Callable[[ServiceConfig], None],
                    conn: socket.socket | None = None, datagram: Datagram | None = None,
                    dropped: Callable[[], None] = ...) -> None: ...

    def spawn_server(self, svc: ServiceConfig, sock: socket.socket, peer: str,
                     on_reap: OnReap | None = None, *,
                     hold: Hold | None = None,
                     client: Address | None = None) -> int | Outcome | None: ...


class WaitServers:
    def __init__(self, host: Host) -> None:
        self.host = host

    def on_stream(self, rt: ServiceRuntime) -> None:
        """A stream wait = yes service's socket is readable."""
        host = self.host
        reason = rt.check(NO_ADDRESS, host.children.occupancy, host.limits, host.denied)
        if reason is not None:
            host.refuse(rt, NO_ADDRESS, reason, None)
            if rt.sock is None or reason == REASON_CPS:
                host.intercept.drop_held(rt)
                return  # a cps trip closed the socket already
            if reason in (REASON_TIME, REASON_LOAD) or rt.limit_is_zero(reason):
                # Outside access_times, over max_load, or a limit of 0: the client is
                # turned away as a wait = no service's would be, not kept waiting for
                # hours (or for ever, refused again every second).
                self._turn_away(rt)
            else:
                # A limit: the connection stays queued until a slot frees.
                host.suspend.hold_refused(rt)
            return
        # TCP Wrappers judge the request too, as xinetd's libwrap call does: without a
        # client address, so the rules that need none decide (`ALL: ALL`, the daemon's
        # own name, `ALL: UNKNOWN`), with their options. The address lists are skipped
        # (there is no address to test).
        verdict = host.access.check(rt.config, NO_ADDRESS)
        if verdict is None:
            self._await_verdict(rt)
            return
        self._admit(rt, verdict)

    def _admit(self, rt: ServiceRuntime, verdict: Verdict) -> None:
        """Start the server the access verdict admits, or turn the request away: the
        connection queued is accepted and closed, as a refused wait = no client's is
        (left queued, it would be judged and refused again at once, in a loop until
        cps trips, as under xinetd)."""
        host = self.host
        if not verdict.allowed:
            host.refuse(rt, NO_ADDRESS, verdict.reason or REASON_ADDRESS, None)
            if rt.sock is not None:
                self._turn_away(rt)
            return
        svc = host.access.prepare(rt.config, verdict, None, NO_ADDRESS)
        if TWIST_FLAG in svc.flags:
            self._twist(rt, svc)
            return
        if self.start(rt, svc, NO_ADDRESS, lambda sock: self._turn_away(rt)) is None:
            # The server could not start (a failed exec, logged): the same would happen
            # again at once for the connection still queued, in a loop until cps trips.
            self._turn_away(rt)

    def _twist(self, rt: ServiceRuntime, svc: ServiceConfig) -> None:
        """A `twist` rule's command answers the client in the server's place: here on
        the connection queued, accepted for it, as for a wait = no service. (xinetd
        runs it on the listening socket, where its output fails, the connection stays
        queued and is judged again at once, until cps trips.) The service is not
        suspended: no wait = yes server runs."""
        host = self.host
        sock = rt.sock
        assert sock is not None
        sock.setblocking(False)
        try:
            conn, _ = sock.accept()
        except OSError as err:
            if err.errno in SHORTAGE_ERRNOS:
                host.suspend.pause_accept(rt, err)
            return  # gone meanwhile (the client gave up): nothing to answer
        finally:
            sock.setblocking(True)
        try:
            host.spawn_server(svc, conn, NO_ADDRESS)
        finally:
            conn.close()    # the command has its own copy
        host.suspend.accepting(rt)

    def _await_verdict(self, rt: ServiceRuntime) -> None:
        """The rules need a look-up (the server's name) or an aclexec check: the socket
        is not watched meanwhile (the connection stays queued), and an instance slot is
        held as its server would hold it. A reload that replaces the rules meanwhile
        leaves the connection queued for the new ones to judge."""
        host = self.host
        rt.accept_paused = True
        host.refresh(rt)
        resume = host.hold(rt, NO_ADDRESS, _nothing)
        asked = rt.config

        def decided(verdict: Verdict) -> None:
            still_held = resume()
            rt.accept_paused = False
            if (not still_held or rt.sock is None or rt.state is not State.ACTIVE
                    or rules_replaced(asked, rt.config)):
                host.refresh(rt)
                return
            try:
                self._admit(rt, verdict)
            finally:
                host.refresh(rt)
        try:
            host.access.wait(asked, NO_ADDRESS, decided,
                             replaced=lambda: rules_replaced(asked, rt.current().config))
        except BaseException:
            resume()
            rt.accept_paused = False
            host.refresh(rt)
            raise

    def _turn_away(self, rt: ServiceRuntime) -> None:
        """Give up the request a stream wait = yes service could not serve: the clients
        held for an intercepted server, or else the connection queued on the socket."""
        if not self.host.intercept.drop_held(rt) and rt.sock is not None:
            err = _reject_pending(rt.sock)
            if err is not None:
                # Out of descriptors: the connection is still queued and the socket
                # still readable; look again later, as a wait = no listener does.
                self.host.suspend.pause_accept(rt, err)
            else:
                self.host.suspend.accepting(rt)

    def start(self, rt: ServiceRuntime, svc: ServiceConfig, peer: str,
              drop: Callable[[socket.socket], None], *,
              sender: Address | None = None,
              again: Callable[[], None] | None = None) -> int | Outcome | None:
        """Start a wait = yes server on the service socket (or, with INTERCEPT, on a
        private one, the interceptor reading the service socket; `sender`: the datagram
        sender already checked). While a failed fork waits for its retry, the socket is
        not watched (the request stays queued); `drop` removes that request when it is
        given up. `again`: how the retry serves the request (default: this same start
        again)."""
        host = self.host
        judged = rt.config
        # The request went on to a server start, or was let go of: not again.
        settled = False

        def release() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            rt.accept_paused = False
            if rt.sock is not None:
                drop(rt.sock)
            host.refresh(rt)

        def admitted(now: ServiceConfig) -> None:
            nonlocal settled
            settled = True
            rt.accept_paused = False
            try:
                self.start(rt, now, peer, drop, sender=sender)
            except BaseException:
                # Nothing holds the request now (a new fork held keeps the socket
                # paused; a server that started has it): the socket is watched again,
                # where the request still queued is read.
                host.refresh(rt)
                raise

        def retry() -> None:
            # From a timer: a bug met there costs this request alone. Raised, it left
            # the socket paused for good (the service served nobody after it).
            try:
                retry_now()
            except Exception as exc:
                # Let go of, unless the new rules admitted it already: its new start
                # has it then (a server running, or a new fork held whose own retry
                # serves it: the socket stays paused, or the request is read twice).
                handed_on = settled
                release()
                host.refresh(rt)
                if host.loop.on_error is None:
                    raise
                what = "connection" if sender is None else "datagram"
                fate = "kept for its new start" if handed_on else "dropped"
                host.loop.on_error(f"handling {rt.id}'s {what} from {peer} ({fate}) at "
                                   f"its fork retry", exc)

        def retry_now() -> None:
            rt.accept_paused = False
            if rt.sock is None or rt.state is not State.ACTIVE:
                host.refresh(rt)
                return
            if again is not None:
                again()
            elif not rules_replaced(judged, rt.config):
                self.start(rt, svc.as_of(judged, rt.config), peer, drop, sender=sender)
            elif sender is None:
                # A reload since the failed fork; a stream request has no address to
                # judge: the server is the new configuration's.
                self.start(rt, rt.config, peer, drop)
            else:
                # The datagram stays queued while the new rules judge its sender.
                rt.accept_paused = True
                host.judge_again(rt, peer, datagram=Datagram(rt.sock, sender),
                                 admitted=admitted, dropped=release)

        assert rt.sock is not None
        hold = Hold(rt, retry, release)
        if INTERCEPT_FLAG in svc.flags:
            result = host.intercept.start(rt, svc, peer, self.reaped(rt), hold, sender)
        else:
            result = host.spawn_server(svc, rt.sock, peer, self.reaped(rt), hold=hold,
                                       client=sender)
        if isinstance(result, int):
            rt.transition(Event.WAIT_SPAWNED)
        elif result is Outcome.HELD:
            rt.accept_paused = True
        host.refresh(rt)
        return result

    def reaped(self, rt: ServiceRuntime) -> OnReap:
        """What to do when rt's wait = yes server is reaped: resume the service."""
        def resume(child: Child, status: ExitStatus) -> None:
            if rt.state is not State.SUSPENDED_WAIT:
                return
            if rt.sock is not None and rt.config.socket_type is not SocketType.STREAM:
                drain(rt.sock)
            rt.transition(Event.WAIT_REAPED)
            # A request that queued while the server ran is usually already there:
            # serve it at the end of this turn instead of one more select() later, and
            # without watching the socket only to stop again for the next server.
            sock = rt.sock
            if sock is not None and rt.wants_events and self._pending(rt, sock):
                self.host.loop.call_soon(lambda: self.serve_pending(rt, sock))
            else:
                self.host.refresh(rt)
        return resume

    def _pending(self, rt: ServiceRuntime, sock: socket.socket) -> bool:
        return self.host.intercept.holds(rt) or _readable_now(sock)

    def serve_pending(self, rt: ServiceRuntime, sock: socket.socket) -> None:
        """Serve a request waiting for rt (on its socket, or held by the interceptor)."""
        if rt.sock is sock and rt.wants_events and self._pending(rt, sock):
            self.host.handler_for(rt)(READ)
        # Watch whatever the service now wants: nothing while the new server runs; the
        # socket if the request was refused, or gone meanwhile (the client gave up, a
        # reload replaced the socket).
        self.host.refresh(rt)


def _reject_pending(sock: socket.socket) -> OSError | None:
    """Accept and close the connection a given-up stream/wait request left queued (the
    server was to accept it), so it does not wake the loop again at once. Returns the
    error when accept() ran out of a resource (EMFILE...): the connection stays queued."""
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
        conn.close()
    except OSError as err:
        if err.errno in SHORTAGE_ERRNOS:
            return err
    finally:
        sock.setblocking(True)
    return None


def _readable_now(sock: socket.socket) -> bool:
    """Whether a request waits on `sock`, without waiting (a zero-timeout poll)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile
        return False


def _nothing() -> None:
    """A held slot's drop: the request is the queued connection, nothing to close."""
