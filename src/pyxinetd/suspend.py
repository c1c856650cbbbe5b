"""Taking a listener out of the loop for a while, and putting it back.

Three reasons, all timed by the loop's deadline timers (nothing sleeps):

* cps (reference §4.5): a service accepting more than its rate closes its listening
  socket for the configured number of seconds, then binds a new one (xinetd's
  "Deactivating service ... Restarting in N seconds"). The service is SUSPENDED_CPS
  meanwhile; a bind failure at the end leaves it FAILED, logged, and the loop serving,
  except for want of descriptors or memory: then the socket is tried again each second
  (logged once) until the shortage ends.
* accept() out of descriptors or memory: the socket stays open but is not watched for
  ACCEPT_RETRY_DELAY seconds, so the loop does not spin on a backlog it cannot accept.
  The shortage is logged when it starts, not again at each retry that fails the same
  way: a listener is "starved" until it accepts again (`accepting`).
* an in-loop service (internal stream builtin, redirect) or a USERID one when in-loop
  sessions and lookups hold their share of the descriptor limit (pyxinetd.loopshare):
  its clients wait in the
  queue, the socket unwatched until a session or server ends, or REFUSED_RETRY_DELAY
  passes at the latest, as for the next point. Accepting on, its clients would take
  the last descriptors, and every other service's accept() would fail for as long as
  they stay.
* a wait = yes stream request refused by a limit above 0 (`-limit`, instances, per_source)
  stays queued, but the socket is not watched until a server or in-loop session ends (a
  slot may be free), or REFUSED_RETRY_DELAY passes at the latest. Watched all along, the
  queued request would be refused again on every loop turn (100 % CPU, a FAIL line each
  time); xinetd 2.3.15.3 instead never resumes the service (docs/compatibility.md).
"""

from __future__ import annotations

import select
import socket
import weakref
from collections.abc import Callable
from typing import Protocol

from pyxinetd.children import Occupancy
from pyxinetd.config.model import ServiceConfig
from pyxinetd.errors import BindError
from pyxinetd.listener import SHORTAGE_ERRNOS, bind_socket, create_socket
from pyxinetd.log import ProgramLog, strerror
from pyxinetd.loop import Loop
from pyxinetd.service import Event, ServiceRuntime, State
from pyxinetd.timers import Timer

# Pause of a listener after EMFILE/ENFILE/ENOBUFS/ENOMEM on accept.
ACCEPT_RETRY_DELAY = 1.0
# A refused wait = yes request is looked at again after this long at the latest.
REFUSED_RETRY_DELAY = 1.0
# A service's clients waiting for the in-loop share are logged at most this often.
CROWDED_LOG_INTERVAL = 60.0


class Listeners(Protocol):
    """What the dispatcher offers: (un)watching and replacing a service's listener."""

    def activate(self, rt: ServiceRuntime, sock: socket.socket | None,
                 event: Event) -> None: ...

    def refresh(self, rt: ServiceRuntime) -> None: ...

    def close_listener(self, rt: ServiceRuntime) -> None: ...

    def handed_over_socket(self, svc: ServiceConfig) -> socket.socket | None: ...


class Suspensions:
    def __init__(self, loop: Loop, program: ProgramLog, listeners: Listeners,
                 occupancy: Occupancy) -> None:
        self.loop = loop
        self.program = program
        self.listeners = listeners
        self.occupancy = occupancy
        # Services whose queued wait = yes request was refused, with their retry timer.
        self._refused: dict[ServiceRuntime, Timer] = {}
        # Services whose accept() ran out of a resource and has not accepted since: their
        # failure is logged once, not once a second for as long as the shortage lasts.
        # Weak: a service a reload removed while starved is not kept alive here.
        self._starved: weakref.WeakSet[ServiceRuntime] = weakref.WeakSet()
        # In-loop services waiting for their sessions' descriptors, logged once until
        # they accept again (as _starved).
        self._crowded: weakref.WeakSet[ServiceRuntime] = weakref.WeakSet()
        # When each was last logged so (at most once in CROWDED_LOG_INTERVAL).
        self._crowded_said: weakref.WeakKeyDictionary[ServiceRuntime, float] = \
            weakref.WeakKeyDictionary()
        # Whether _starved or _crowded may hold anything: `accepting` runs on every
        # accept batch, and a WeakSet's own test is a Python call.
        self._maybe_starved = False
        # Services whose socket could not be made again after a cps pause for want of
        # descriptors or memory: retried each second, logged once.
        self._short_rebind: weakref.WeakSet[ServiceRuntime] = weakref.WeakSet()
        # Called when a cps trip closes a listener and when its new one is bound (on a
        # new port): RPC services follow it in the portmapper (pyxinetd.rpc).
        self.on_cps_closed: Callable[[ServiceRuntime], None] | None = None
        self.on_cps_reopened: Callable[[ServiceRuntime], None] | None = None

    def cps_tripped(self, rt: ServiceRuntime) -> None:
        wait = rt.config.cps[1]
        self.listeners.close_listener(rt)
        rt.transition(Event.CPS_TRIPPED)
        if self.on_cps_closed is not None:
            self.on_cps_closed(rt)
        self.program.error("service_stop",
                           f"Deactivating service {rt.config.name} due to excessive incoming "
                           f"connections.  Restarting in {wait} seconds.")
        self.loop.call_later(wait, lambda: self._reactivate(rt))

    def _reactivate(self, rt: ServiceRuntime) -> None:
        if rt.state is not State.SUSPENDED_CPS:
            return
        # The cps window carries on, as in xinetd (the counter is not reset): a burst
        # within the window's `rate` seconds may deactivate the service again at once.
        if rt.config.is_tcpmux_client:
            # It owns no socket (it is reached through tcpmux): nothing to bind.
            self.program.error("cps_service_restart", f"Activating service {rt.config.name}")
            self.listeners.activate(rt, None, Event.CPS_EXPIRED)
            return
        try:
            sock = self.listeners.handed_over_socket(rt.config)
            if sock is None:
                sock = create_socket(rt.config)
                try:
                    bind_socket(sock, rt.config)
                except OSError:
                    sock.close()
                    raise
        except (BindError, OSError) as err:
            # BindError: no socket at all (EMFILE...). Ending here must not end the loop.
            cause = err if isinstance(err, OSError) else err.__cause__
            short = isinstance(cause, OSError) and cause.errno in SHORTAGE_ERRNOS
            if not (short and rt in self._short_rebind):
                self.program.error("cps_service_restart",
                                   f"Error activating service {rt.config.name}")
            if short:
                # Out of descriptors or memory for a while only: try again each second
                # (logged once) rather than leave the service off until a reload.
                self._short_rebind.add(rt)
                self.loop.call_later(ACCEPT_RETRY_DELAY, lambda: self._reactivate(rt))
                return
            rt.transition(Event.REBIND_FAILED)
            return
        self._short_rebind.discard(rt)
        self.program.error("cps_service_restart", f"Activating service {rt.config.name}")
        self.listeners.activate(rt, sock, Event.CPS_EXPIRED)
        if self.on_cps_reopened is not None:
            self.on_cps_reopened(rt)

    def pause_accept(self, rt: ServiceRuntime, err: OSError) -> None:
        """Out of descriptors or memory: stop watching the listener for a while."""
        if rt.sock is not None and not _backlog_waiting(rt.sock):
            # Linux reserves the new descriptor before it looks at the queue, so with
            # the last descriptor just given to a connection, the accept() that ends a
            # batch fails on an empty queue: no client was turned away, and the next
            # one is accepted when it comes (or finds the shortage then).
            return
        rt.accept_paused = True
        self.listeners.refresh(rt)
        if rt not in self._starved:
            self._starved.add(rt)
            self._maybe_starved = True
            self.program.error("svc_accept",
                               f"{rt.id}: accept failed: {strerror(err)}; "
                               f"retrying in {ACCEPT_RETRY_DELAY:g} seconds")

        def resume() -> None:
            rt.accept_paused = False
            self.listeners.refresh(rt)

        self.loop.call_later(ACCEPT_RETRY_DELAY, resume)

    def accepting(self, rt: ServiceRuntime) -> None:
        """rt's listener accepted (or found nothing to accept): a later shortage is a
        new one, logged again."""
        if self._maybe_starved:
            self._starved.discard(rt)
            self._crowded.discard(rt)
            self._maybe_starved = bool(self._starved) or bool(self._crowded)

    def wait_for_descriptors(self, rt: ServiceRuntime, share: int) -> None:
        """In-loop sessions, relay channels and identity lookups hold their `share` of
        the descriptor limit (pyxinetd.loopshare): rt's clients wait in its queue until
        one of them or a server ends (hold_refused). Logged when the shortage starts,
        at most once in CROWDED_LOG_INTERVAL."""
        if rt not in self._crowded:
            self._crowded.add(rt)
            self._maybe_starved = True
            # Clients arriving at the share's edge empty the queue and fill it again
            # at each session's end: one line a minute says it all.
            now = self.loop.clock()
            last = self._crowded_said.get(rt)
            if last is None or now - last >= CROWDED_LOG_INTERVAL:
                self._crowded_said[rt] = now
                self.program.warning(
                    "svc_accept",
                    f"{rt.id}: in-loop sessions, servers' channels and identity lookups "
                    f"hold {share} descriptors, half the limit; the rest are kept for the "
                    f"services whose servers run on their own, and new clients of "
                    f"{rt.id} wait until one of them ends")
        self.hold_refused(rt)

    def hold_refused(self, rt: ServiceRuntime) -> None:
        """A queued wait = yes request was refused, or an in-loop service must wait for
        descriptors: look again when a slot frees or after REFUSED_RETRY_DELAY, not on
        every loop turn."""
        if rt in self._refused:
            return
        rt.accept_paused = True
        self.listeners.refresh(rt)
        self._refused[rt] = self.loop.call_later(REFUSED_RETRY_DELAY,
                                                 lambda: self._look_again(rt))
        self.occupancy.on_release = self._slot_freed

    def _slot_freed(self) -> None:
        for rt in list(self._refused):
            self._look_again(rt)

    def _look_again(self, rt: ServiceRuntime) -> None:
        timer = self._refused.pop(rt, None)
        if timer is None:
            return
        timer.cancel()
        if not self._refused:
            self.occupancy.on_release = None
        rt.accept_paused = False
        self.listeners.refresh(rt)


def _backlog_waiting(sock: socket.socket) -> bool:
    """Whether a connection waits in the listener's queue, without waiting."""
    # poll(), not select(): a listener may have a descriptor above FD_SETSIZE.
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):   # closed meanwhile: nothing to watch either
        return False
    return bool(poller.poll(0))
