"""Per-service runtime state: the state machine, cps, and the parent-level checks.

A ServiceRuntime wraps one ServiceConfig with what changes while serving: its state,
its listening socket, its cps window. The state moves only through `transition()`,
driven by one explicit (state, event) table, so every path that suspends a service
has exactly one way back (s6's actions[state][event]).

The checks run in xinetd's order (reference §4.4) and cost a few comparisons per
request: no DNS, no NSS, no configuration work.
"""

from __future__ import annotations

import enum
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pyxinetd.children import Occupancy
from pyxinetd.config.model import ServiceConfig
from pyxinetd.localzone import local_time


class State(enum.Enum):
    STARTING = "starting"              # binding (retries pending)
    ACTIVE = "active"                  # listener registered
    SUSPENDED_WAIT = "suspended_wait"  # a wait=yes server owns the socket
    SUSPENDED_CPS = "suspended_cps"    # closed by a cps trip, reopened by a timer
    AWAITING_ADDRESS = "awaiting_address"  # its bind address is not on the host yet
    AWAITING_RESOURCES = "awaiting_resources"  # no descriptor (or memory) for its socket
    FAILED = "failed"                  # could not bind: deactivated for good
    STOPPED = "stopped"                # shut down


class Event(enum.Enum):
    BOUND = "bound"
    BIND_FAILED = "bind_failed"
    ADDRESS_MISSING = "address_missing"  # bind failed with EADDRNOTAVAIL
    RESOURCES_SHORT = "resources_short"  # socket() failed with EMFILE, ENFILE, ENOMEM...
    WAIT_SPAWNED = "wait_spawned"
    WAIT_REAPED = "wait_reaped"
    CPS_TRIPPED = "cps_tripped"
    CPS_EXPIRED = "cps_expired"        # the socket was bound again
    REBIND_FAILED = "rebind_failed"
    STOP = "stop"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.STARTING, Event.BOUND): State.ACTIVE,
    (State.STARTING, Event.BIND_FAILED): State.FAILED,
    (State.STARTING, Event.ADDRESS_MISSING): State.AWAITING_ADDRESS,
    (State.AWAITING_ADDRESS, Event.BOUND): State.ACTIVE,
    (State.AWAITING_ADDRESS, Event.BIND_FAILED): State.FAILED,
    (State.AWAITING_ADDRESS, Event.RESOURCES_SHORT): State.AWAITING_RESOURCES,
    (State.STARTING, Event.RESOURCES_SHORT): State.AWAITING_RESOURCES,
    (State.AWAITING_RESOURCES, Event.BOUND): State.ACTIVE,
    (State.AWAITING_RESOURCES, Event.BIND_FAILED): State.FAILED,
    (State.AWAITING_RESOURCES, Event.ADDRESS_MISSING): State.AWAITING_ADDRESS,
    (State.ACTIVE, Event.WAIT_SPAWNED): State.SUSPENDED_WAIT,
    (State.SUSPENDED_WAIT, Event.WAIT_REAPED): State.ACTIVE,
    (State.ACTIVE, Event.CPS_TRIPPED): State.SUSPENDED_CPS,
    (State.SUSPENDED_CPS, Event.CPS_EXPIRED): State.ACTIVE,
    (State.SUSPENDED_CPS, Event.REBIND_FAILED): State.FAILED,
    **{(state, Event.STOP): State.STOPPED for state in State},
}


class InvalidTransition(RuntimeError):
    pass


# The states in which a service holds its port (bound, or a wait = yes server or a
# cps pause has it for now): the services the `services` builtin lists, and the ones
# whose port the datagram builtins' loop check counts.
LIVE_STATES = frozenset({State.ACTIVE, State.SUSPENDED_WAIT, State.SUSPENDED_CPS})


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"{event.value} in state {state.value}") from None


class Cps:
    """xinetd's connections-per-second window (reference §4.5), in whole seconds.

    The window length in seconds equals the rate; the test is integer division.
    """

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self.count = 0
        self.window = 0

    def admit(self) -> bool:
        """Count one request; False means the service must be deactivated."""
        now = int(self._clock())
        if self.rate <= 0:
            # No limit (cps = 0 0): the window restarts at every request, as below.
            self.count, self.window = 1, now
            return True
        if self.count == 0:
            self.count, self.window = 1, now
            return True
        if now - self.window < self.rate:
            self.count += 1
            elapsed = max(1, now - self.window)
            return self.count // elapsed <= self.rate
        self.count, self.window = 1, now
        return True

    def reset(self) -> None:
        self.count = 0
        self.window = 0


# FAIL reasons, as xinetd spells them.
REASON_CPS = "connections per second"
REASON_LOAD = "load"
REASON_TIME = "time"
REASON_INSTANCES = "service_limit"
REASON_PER_SOURCE = "per_source_limit"
REASON_PROCESS_LIMIT = "process_limit"
REASON_ADDRESS = "address"

# A datagram sender refused for its address again within this many seconds is not
# logged again (xinetd's DGRAM_IGNORE_TIME, service.c failed_service()).
DGRAM_IGNORE_TIME = 60


def read_load_average(path: str = "/proc/loadavg") -> float:
    try:
        with open(path, encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def within_access_times(service: ServiceConfig, now: float | None = None) -> bool:
    if not service.access_times:
        return True
    t = local_time(now)
    minute = t.tm_hour * 60 + t.tm_min
    return any(w.start <= minute <= w.end for w in service.access_times)


@dataclass
class Limits:
    """Process-wide limits from the command line."""

    process_limit: int | None = None     # -limit


# Datagrams (and their bytes) a service may hold at once while names are looked up:
# the ones after them wait in the socket's receive buffer, whose size the kernel bounds
# (and beyond which it drops), as they would if the daemon looked the names up itself.
# Without a bound, a flood from senders the DNS answers slowly grew the daemon by each
# datagram (up to 64 KiB) for the lookup's 5 seconds.
MAX_PARKED_DATAGRAMS = 1024
MAX_PARKED_BYTES = 4 * 1024 * 1024


class ServiceRuntime:
    """One configured service while the daemon runs."""

    def __init__(self, config: ServiceConfig, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.config = config
        self.state = State.STARTING
        self.sock: socket.socket | None = None
        self.cps = Cps(config.cps[0], clock)
        self._clock = clock
        # The accept loop is paused after EMFILE and friends (listener stays open).
        self.accept_paused = False
        # Datagrams read and held while their sender's name is looked up (builtins and
        # dgram/nowait), and their bytes; at either bound (MAX_PARKED_*) the socket is
        # not read until one is decided.
        self.parked = 0
        self.parked_bytes = 0
        # Forks that failed in a row (no process created); see pyxinetd.forkretry.
        self.fork_failures = 0
        # The last datagram sender refused for its address, and when it was last logged.
        self._refused_sender: tuple[object, ...] | None = None
        self._refused_logged_at = 0
        # Datagrams a builtin dropped as possible loops: when the last warning was
        # written (None: never) and how many were dropped silently since.
        self._loop_warned_at: int | None = None
        self._loops_unlogged = 0
        # The configuration `_unlimited` was computed for (reloads replace self.config).
        self._limits_of: ServiceConfig | None = None
        self._unlimited = False
        # The runtime a reload's new socket for this service gave it (reconfig): the
        # requests accepted here and still waiting are judged by its configuration.
        self.successor: ServiceRuntime | None = None

    @property
    def id(self) -> str:
        return self.config.id

    def current(self) -> ServiceRuntime:
        """The service's runtime now: this one, or the one that replaced its socket
        (and so on, reload after reload)."""
        rt = self
        while rt.successor is not None:
            rt = rt.successor
        return rt

    # Counts the transitions into or out of LIVE_STATES, of every runtime: what is
    # derived from the set of live services is computed again only when it changes.
    liveness_changes: ClassVar[int] = 0

    def transition(self, event: Event) -> State:
        before = self.state
        self.state = next_state(before, event)
        if (before in LIVE_STATES) is not (self.state in LIVE_STATES):
            ServiceRuntime.liveness_changes += 1
        return self.state

    @property
    def wants_events(self) -> bool:
        """True when the listener should be watched for requests."""
        return (self.state is State.ACTIVE and not self.accept_paused and self.sock is not None
                and self.parked < MAX_PARKED_DATAGRAMS and self.parked_bytes < MAX_PARKED_BYTES)

    def repeated_refusal(self, sender: tuple[object, ...]) -> bool:
        """Whether a datagram from `sender` (address and port), refused for its address,
        repeats the last one logged for this service within DGRAM_IGNORE_TIME seconds:
        then it is not logged again. Clients of datagram services resend before they
        give up, and nothing tells them they were refused (xinetd, failed_service())."""
        now = int(self._clock())
        sender = sender[:2]     # address and port; an IPv6 flow label does not count
        if sender == self._refused_sender and now - self._refused_logged_at <= DGRAM_IGNORE_TIME:
            return True
        self._refused_sender, self._refused_logged_at = sender, now
        return False

    def loop_warning_due(self) -> int | None:
        """A datagram builtin dropped a datagram from a builtin's port (a forged sender):
        whether to warn now. At most one warning per DGRAM_IGNORE_TIME seconds, since a
        flood of forged datagrams, whatever source they claim, must not flood the log;
        returns how many were dropped unlogged since the last warning, or None (do not
        log this one)."""
        now = int(self._clock())
        if self._loop_warned_at is not None and now - self._loop_warned_at <= DGRAM_IGNORE_TIME:
            self._loops_unlogged += 1
            return None
        dropped, self._loops_unlogged, self._loop_warned_at = self._loops_unlogged, 0, now
        return dropped

    def limit_is_zero(self, reason: str) -> bool:
        """Whether `reason` is a limit of 0 (`instances = 0`, `per_source = 0`): no
        slot will ever free for the refused request."""
        svc = self.config
        return ((reason == REASON_INSTANCES and svc.instances == 0)
                or (reason == REASON_PER_SOURCE and svc.per_source == 0))

    def check(self, peer: str, occupancy: Occupancy, limits: Limits,
              deny_peer: Callable[[str], bool] | None = None, *,
              rated: bool = True) -> str | None:
        """Run the parent-level checks in xinetd's order; the FAIL reason or None.

        A cps trip returns REASON_CPS; the caller then deactivates the service.
        `rated`: the request counts against `cps` (not a process started for a client
        an intercepted server's interceptor admitted: pyxinetd.intercept.common).
        """
        svc = self.config
        # `cps = 0 0` counts nothing: no call (a reload setting a rate resets the window).
        if rated and self.cps.rate > 0 and not self.cps.admit():
            return REASON_CPS
        if svc is not self._limits_of:
            self._limits_of = svc
            self._unlimited = (svc.max_load is None and not svc.access_times
                               and svc.instances is None and svc.per_source is None)
        if self._unlimited:
            # No per-service limit can refuse: only -limit and the global deny list.
            if limits.process_limit is not None and occupancy.total >= limits.process_limit:
                return REASON_PROCESS_LIMIT
            if deny_peer is not None and deny_peer(peer):
                return REASON_ADDRESS
            return None
        if svc.max_load is not None and read_load_average() >= svc.max_load:
            return REASON_LOAD
        if svc.access_times and not within_access_times(svc):
            return REASON_TIME
        if svc.instances is not None and occupancy.of_service(svc.id) >= svc.instances:
            return REASON_INSTANCES
        # A request without an address (stream/wait) is checked too, as by xinetd: none
        # of the running servers can be its, so only per_source = 0 refuses it.
        if svc.per_source is not None and occupancy.of_peer(svc.id, peer) >= svc.per_source:
            return REASON_PER_SOURCE
        if limits.process_limit is not None and occupancy.total >= limits.process_limit:
            return REASON_PROCESS_LIMIT
        if deny_peer is not None and deny_peer(peer):
            return REASON_ADDRESS
        return None
