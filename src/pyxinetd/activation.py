"""Activating services: bind, RPC registration, and waiting for a missing address.

One activation per service in flight (reference §4.2): the bind with xinetd's retries
(timers, pyxinetd.listener.Binder), then for RPC services the portmapper registration
(pyxinetd.rpc), then the dispatcher watches the socket. `settled()` tells the caller
(start-up, a reload) once the service is ACTIVE, FAILED, AWAITING_ADDRESS: its `bind`
address is not on the host yet, and pyxinetd.addresswait tries again when an address
appears, or AWAITING_RESOURCES: the daemon had no descriptor (or memory) left for its
socket, and it is tried again each second, silently, until the shortage ends (xinetd
leaves such a service off until a reload; a shortage is a moment, not a verdict on the
service). From the start-up's first bind on (`keep_reserve`), a service's socket is
made only while more than reserve() descriptors are free, else it waits the same way:
the services that serve need descriptors for their clients (and a reload for its
loader). Binding until socket() failed (at start-up, a reload's new services, or
waiting ones retried as each descriptor came free) took them all, and no service could
accept a client; only a restart got them back. xinetd keeps a reserve too (`Maximum
number of services reached`).
"""

from __future__ import annotations

import errno
import os
import resource
import socket
from collections.abc import Callable

from pyxinetd import rpc
from pyxinetd.addresswait import AddressWait
from pyxinetd.dispatch import Dispatcher
from pyxinetd.listener import BATCH_RESERVE, BIND_RETRIES, SHORTAGE_ERRNOS, Binder
from pyxinetd.log import ProgramLog
from pyxinetd.loop import Loop
from pyxinetd.service import Event, ServiceRuntime, State
from pyxinetd.timers import Timer

# A service short of descriptors for its socket is tried again this often (the NOTICE
# says "each second").
SHORTAGE_RETRY_DELAY = 1.0


class Activations:
    """The activations in flight, by service; the address watch for waiting ones."""

    def __init__(self, loop: Loop, program: ProgramLog, dispatcher: Dispatcher,
                 registry: rpc.RpcRegistry,
                 services: Callable[[], list[ServiceRuntime]]) -> None:
        self.loop = loop
        self.program = program
        self.dispatcher = dispatcher
        self.rpc = registry
        self._services = services
        # Pending binds (retries) and registrations, with what to call once settled.
        self._pending: dict[ServiceRuntime,
                            tuple[Binder | rpc.Activation, Callable[[], None]]] = {}
        # Services waiting for descriptors, with the timer of their next attempt.
        self._short: dict[ServiceRuntime, Timer] = {}
        # Set once the start-up binds are under way (module docstring).
        self.keep_reserve = False
        # The descriptors free, counted once per loop turn (None: not counted yet).
        self._free_this_turn: int | None = None
        self._address_wait = AddressWait(
            loop, self._awaiting_address, self._address_appeared,
            lambda text: program.warning("activate_normal", text))

    def start(self, rt: ServiceRuntime, settled: Callable[[], None]) -> None:
        """Bind `rt` (retries are timers); `settled()` runs once it is active or failed
        (or waits for its address to appear: State.AWAITING_ADDRESS)."""
        svc = rt.config
        awaiting = rt.state is State.AWAITING_ADDRESS
        short_before = rt.state is State.AWAITING_RESOURCES
        if svc.port is None and not rpc.is_rpc(svc):
            # TCPMUX clients own no socket: they are reached through tcpmux.
            if self._log_opened(rt, short_before, settled):
                self.dispatcher.activate(rt, None, Event.BOUND)
                settled()
            return

        handed = self.dispatcher.handed_over_socket(svc)
        if handed is not None:
            self.program.debug("activate_normal", f"Service {svc.id} uses the socket the "
                                                  f"service manager passed")
        binder: Binder | None = None

        def bound(sock: object) -> None:
            assert isinstance(sock, socket.socket)
            # The log is opened once the socket is bound, as xinetd's svc_activate()
            # does: a service whose port is taken leaves no empty log file behind, and
            # one that can have neither says first that its port is taken.
            if not self._log_opened(rt, short_before, settled, pending=True):
                if not self.dispatcher.handed_over.give_back(sock):
                    sock.close()
                return
            if rpc.is_rpc(svc):
                # Bound to port 0: the service is available once registered.
                step = self.rpc.activation(rt, sock, registered, failed)
                self._pending[rt] = (step, settled)
                step.start()
                return
            registered(sock)

        def registered(sock: socket.socket) -> None:
            self._pending.pop(rt, None)
            if rt.state is State.AWAITING_ADDRESS:
                self.program.notice("activate_normal",
                                    f"Service {svc.id}: address {svc.bind} appeared, "
                                    f"service activated")
            elif rt.state is State.AWAITING_RESOURCES:
                self.program.notice("activate_normal",
                                    f"Service {svc.id}: descriptors available again, "
                                    f"service activated")
            if self.program.debug_mode:
                host, port = sock.getsockname()[:2]
                self.program.debug("activate_normal",
                                   f"Service {svc.id} listens on {host} port {port}")
            self.dispatcher.activate(rt, sock, Event.BOUND)
            self._address_wait.refresh()
            settled()

        def failed() -> None:
            self._pending.pop(rt, None)
            missing = (binder is not None and binder.last_errno == errno.EADDRNOTAVAIL
                       and svc.bind is not None and self._address_wait.can_wait())
            short = binder is not None and binder.last_errno in SHORTAGE_ERRNOS
            if awaiting and missing:
                settled()   # still not there: wait on, silently
                return
            if short:
                self._short_of_descriptors(rt, quietly=short_before)
                settled()
                return
            # xinetd's line either way (log watchers look for it): the service does not
            # serve now. A missing address is waited for; any other failure is final.
            self.program.error("activate_normal",
                               f"Service {svc.id} failed to start and is deactivated.")
            if missing:
                rt.transition(Event.ADDRESS_MISSING)
                self.program.notice("activate_normal",
                                    f"Service {svc.id} will be activated when address "
                                    f"{svc.bind} appears")
            else:
                rt.transition(Event.BIND_FAILED)
                self._address_wait.refresh()
            settled()

        if handed is not None:
            bound(handed)
            return
        if self.keep_reserve:
            free = self._take_descriptors()
            if free is not None:
                if not short_before:
                    self.program.warning("activate_normal",
                                         f"Service {svc.id}: {max(free, 0)} descriptors "
                                         f"left, kept for the clients of the services "
                                         f"that serve; its socket is not made now")
                self._short_of_descriptors(rt, quietly=short_before)
                settled()
                return
        # A waiting service's attempt is one bind, silent while the address is missing.
        binder = Binder(self.loop, svc, bound, failed,
                        lambda text: self.program.error("activate_normal", text),
                        log_notice=lambda text: self.program.notice("activate_normal", text),
                        retries=0 if awaiting or short_before else BIND_RETRIES,
                        quiet=(frozenset({errno.EADDRNOTAVAIL}) if awaiting
                               else SHORTAGE_ERRNOS if short_before else frozenset()))
        self._pending[rt] = (binder, settled)
        binder.start()

    def _log_opened(self, rt: ServiceRuntime, short_before: bool,
                    settled: Callable[[], None], *, pending: bool = False) -> bool:
        """Open rt's FILE log (ServiceLogs.open); when it cannot be, the service does
        not serve: it waits for descriptors (a shortage, as for its socket) or fails,
        as xinetd's log_start() fails it, and `settled()` has run. `pending`: its bind
        is in self._pending, done with now."""
        logs = self.dispatcher.logs
        if logs.open(rt.config, quiet=SHORTAGE_ERRNOS if short_before else frozenset()):
            return True
        if pending:
            self._pending.pop(rt, None)
        if logs.open_errno in SHORTAGE_ERRNOS:
            self._short_of_descriptors(rt, quietly=short_before)
        else:
            self.program.error("activate_normal",
                               f"Service {rt.config.id} failed to start and is deactivated.")
            rt.transition(Event.BIND_FAILED)
        settled()
        return False

    def _take_descriptors(self) -> int | None:
        """None when a bind may go ahead; else the descriptors free, no more than
        reserve(). Counting /proc/self/fd for each of a thousand services a reload binds
        in one loop turn took the loop half a second: the count is made once per turn,
        each bind then taking one off (its socket), and made again for each bind once
        within twice the reserve, where a log file opened with a socket counts."""
        keep = reserve()
        free = self._free_this_turn
        if free is None or keep < free <= 2 * keep:
            counted = descriptors_free()
            if counted is None:
                return None
            if free is None:
                self.loop.call_soon(self._forget_count)
            free = counted
        if free <= keep:
            self._free_this_turn = free
            return free
        self._free_this_turn = free - 1
        return None

    def _forget_count(self) -> None:
        self._free_this_turn = None

    def _short_of_descriptors(self, rt: ServiceRuntime, *, quietly: bool) -> None:
        """No descriptor (or memory) for rt's socket or log file: try again in a
        second; `quietly` while it already waits."""
        if not quietly:
            # xinetd's line (log watchers look for it), then why it is not final.
            svc = rt.config
            self.program.error("activate_normal",
                               f"Service {svc.id} failed to start and is deactivated.")
            rt.transition(Event.RESOURCES_SHORT)
            self.program.notice("activate_normal",
                                f"Service {svc.id} will be activated when the daemon "
                                f"has descriptors again (tried each second)")
            self._address_wait.refresh()
        self._retry_later(rt)

    def _retry_later(self, rt: ServiceRuntime) -> None:
        self._short[rt] = self.loop.call_later(SHORTAGE_RETRY_DELAY,
                                               lambda: self._retry_short(rt))

    def _retry_short(self, rt: ServiceRuntime) -> None:
        del self._short[rt]
        # A reload drops a waiting runtime from the services (it binds a new one), and
        # cancels this timer; the test is for safety only.
        if rt.state is State.AWAITING_RESOURCES and rt in self._services():
            self.start(rt, lambda: None)

    def _awaiting_address(self) -> list[ServiceRuntime]:
        """Services waiting for their address, without an attempt in flight."""
        return [rt for rt in self._services()
                if rt.state is State.AWAITING_ADDRESS and rt not in self._pending]

    def _address_appeared(self, rt: ServiceRuntime) -> None:
        self.start(rt, lambda: None)

    def cancel(self, rt: ServiceRuntime) -> None:
        """Abandon the activation of `rt` in flight (a reload replaced it); it counts as
        settled."""
        timer = self._short.pop(rt, None)
        if timer is not None:
            timer.cancel()
        entry = self._pending.pop(rt, None)
        if entry is not None:
            binder, settled = entry
            binder.cancel()
            settled()

    def refresh(self) -> None:
        """After a reload: stop watching addresses if no service waits any more."""
        self._address_wait.refresh()

    def close(self) -> None:
        """Shutdown: abandon every activation in flight (nothing is called back)."""
        for pending, _ in self._pending.values():
            pending.cancel()
        self._pending.clear()
        for timer in self._short.values():
            timer.cancel()
        self._short.clear()
        self._address_wait.close()


def reserve() -> int:
    """The descriptors a bind after the start-up leaves free: the accept path's
    reserve, or a quarter of a small limit, so that a daemon run with a tiny one can
    still add a service."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return BATCH_RESERVE
    return min(BATCH_RESERVE, soft // 4)


def descriptors_free() -> int | None:
    """How many more descriptors this process may open now; None when that cannot be
    told (no limit, no /proc)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        # The listing's own descriptor is among those it lists.
        open_now = len(os.listdir("/proc/self/fd")) - 1
    except OSError as err:
        # No descriptor left to list them with: none is free (counted as "cannot be
        # told", the bind went ahead and took the last ones).
        return 0 if err.errno in (errno.EMFILE, errno.ENFILE) else None
    return soft - open_now
