"""Requests whose server could not be forked, held by the master and retried later.

Reference §4.15: when fork() itself fails (EAGAIN at the process limit, ENOMEM...),
xinetd logs `ID: fork failed: ...`, keeps the connection open and tries again every
5 s; after 5 consecutive failures it logs `service ID: too many consecutive fork
failures` and gives up with FAIL reason `fork`. NORETRY services give up at once.

Only failures where no process was created are held (SpawnError.no_process). A child
that failed a set-up step or exec would fail the same way again, so those keep the
plain failure path (one ERROR line and FAIL fork).

What "held" means depends on the dispatch model, so the dispatcher hands over two
callbacks with each request (`Hold`): `retry` runs the model's spawn step again, and
`release` lets go of whatever was kept (closes the connection; for wait = yes services
drops the queued request and watches the socket again). This module only decides,
counts and keeps the timers: one deadline per held request, never a sleep or a tick.

Counting is per service (`ServiceRuntime.fork_failures`): every failed fork adds one,
any successful spawn of the service resets it. At MAX_FORK_FAILURES the request that
failed is given up, and so is every later one whose first fork fails, until a fork of
that service succeeds again: a service whose forks keep failing does not pile up held
connections. A held request keeps its instance slot (it counts toward instances,
per_source and -limit, like the server it is waiting to become).

A reload that removes the service lets go of its held requests (release_matching), with
one WARNING per service naming their peers, as for the other clients a removal closes;
one that replaces its socket gives them up as the last failed fork does, FAIL line
included (give_up_runtime): they were to be served from a socket that is gone.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyxinetd.children import Occupancy
from pyxinetd.config.model import ServiceConfig
from pyxinetd.errors import SpawnError
from pyxinetd.log import ProgramLog
from pyxinetd.servicelog import ServiceLogs, fail_entry
from pyxinetd.loop import Loop
from pyxinetd.service import ServiceRuntime, State
from pyxinetd.timers import Timer, seconds_setting

# Seconds between two fork attempts for a held request (xinetd: RETRY_INTERVAL, 5 s).
RETRY_INTERVAL = 5.0
# Test-only override of RETRY_INTERVAL (so the give-up path runs in seconds).
RETRY_INTERVAL_ENV = "PYXINETD_FORK_RETRY_INTERVAL"
MAX_RETRY_INTERVAL = 3600.0
# Consecutive failed forks of one service after which its requests are given up.
MAX_FORK_FAILURES = 5
REASON_FORK = "fork"


def retry_interval(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """RETRY_INTERVAL, or $PYXINETD_FORK_RETRY_INTERVAL (seconds) when set and valid."""
    return seconds_setting(RETRY_INTERVAL, RETRY_INTERVAL_ENV, MAX_RETRY_INTERVAL, environ)

class Outcome(enum.Enum):
    """What became of a request whose fork failed (besides a pid or a plain failure)."""

    HELD = "held"           # kept; a timer will run Hold.retry
    RELEASED = "released"   # given up; Hold.release has already run


@dataclass(frozen=True)
class Hold:
    """How to retry, and how to let go of, one request of service `rt`."""

    rt: ServiceRuntime
    retry: Callable[[], None]
    release: Callable[[], None]


@dataclass(eq=False)
class _Held:
    hold: Hold
    service: ServiceConfig
    peer: str
    timer: Timer | None = field(default=None)
    # When its last fork failed (wall clock, for the state dump).
    since: float = field(default_factory=time.time)


@dataclass(frozen=True)
class HeldRequest:
    """What the state dump shows of a request held for a fork retry."""

    rt: ServiceRuntime
    service: ServiceConfig
    peer: str
    since: float
    # The service's consecutive failed forks when the dump was taken.
    fork_failures: int


class ForkRetry:
    """The held requests of every service, each with its retry deadline."""

    def __init__(self, loop: Loop, program: ProgramLog, logs: ServiceLogs,
                 occupancy: Occupancy, interval: float | None = None) -> None:
        self.loop = loop
        self.program = program
        self.logs = logs
        self.occupancy = occupancy
        self.interval = retry_interval() if interval is None else interval
        self._held: list[_Held] = []

    def __len__(self) -> int:
        return len(self._held)

    def held(self) -> list[HeldRequest]:
        """The requests waiting for their retry, oldest first."""
        return [HeldRequest(h.hold.rt, h.service, h.peer, h.since, h.hold.rt.fork_failures)
                for h in self._held]

    @staticmethod
    def succeeded(rt: ServiceRuntime) -> None:
        """A server of `rt` started: its consecutive failures start again from 0."""
        rt.fork_failures = 0

    def failed(self, hold: Hold, svc: ServiceConfig, peer: str, err: SpawnError) -> Outcome:
        """fork() failed for this request (err.no_process): hold it, or give it up."""
        rt = hold.rt
        # xinetd's `fork failed: %m`: the text, then `(errno = N)`.
        reason = (f"{os.strerror(err.errno)} (errno = {err.errno})" if err.errno
                  else err.message)
        self.program.error("server_start", f"{svc.id}: fork failed: {reason}")
        rt.fork_failures += 1
        noretry = "NORETRY" in svc.flags
        if noretry or rt.fork_failures >= MAX_FORK_FAILURES:
            if not noretry:
                self.program.error("server_retry",
                                   f"service {svc.id}: too many consecutive fork failures")
            self._log_fail(svc, peer)
            hold.release()
            return Outcome.RELEASED
        held = _Held(hold, svc, peer)
        self.occupancy.add(svc.id, peer)
        held.timer = self.loop.call_later(self.interval, lambda: self._retry(held))
        self._held.append(held)
        return Outcome.HELD

    def _retry(self, held: _Held) -> None:
        if not self._forget(held):
            return
        if held.hold.rt.state is State.STOPPED:
            # The service went away (reload, shutdown) without release_matching or
            # give_up_runtime.
            held.hold.release()
            return
        held.hold.retry()

    def _forget(self, held: _Held) -> bool:
        """Drop `held` from the queue and give back its slot; False if it was gone."""
        try:
            self._held.remove(held)
        except ValueError:
            return False
        if held.timer is not None:
            held.timer.cancel()
        self.occupancy.remove(held.service.id, held.peer)
        return True

    def rehome(self, moves: Mapping[int, ServiceConfig]) -> None:
        """A reload kept services (`moves`, ServiceConfig.moved): their held requests
        belong to the new ones (a later reload that removes them finds them). Their
        Hold.retry sees that the service's configuration changed and has the new one
        judge them (Dispatcher.judge_again)."""
        for held in self._held:
            moved = held.service.moved(moves)
            if moved is not None:
                held.service = moved

    def release_matching(self, selected: Callable[[ServiceConfig], bool],
                         why: str | None = None) -> int:
        """Let go of the held requests of the services `selected` picks, without a FAIL
        line: they were never refused. `why` (a reload removed them): one WARNING per
        service, naming its peers, says so. Returns how many."""
        doomed = [h for h in self._held if selected(h.service)]
        released: dict[str, list[str]] = {}
        for held in doomed:
            if self._forget(held):
                released.setdefault(held.service.id, []).append(held.peer)
                held.hold.release()
        if why is not None:
            for service_id, peers in released.items():
                noun = "request" if len(peers) == 1 else "requests"
                self.program.warning(
                    "server_retry", f"service {service_id}: {len(peers)} {noun} from "
                                    f"{', '.join(sorted(set(peers)))} held for a fork retry "
                                    f"dropped: {why}")
        return len(doomed)

    def give_up_runtime(self, rt: ServiceRuntime, log_as: ServiceConfig) -> int:
        """A reload replaced the socket of `rt` (the service is kept under `log_as`):
        its held requests cannot be retried there, so they end as a request given up
        after its last failed fork does, with `FAIL: ID fork`. Returns how many."""
        doomed = [h for h in self._held if h.hold.rt is rt]
        for held in doomed:
            if self._forget(held):
                self._log_fail(log_as, held.peer)
                held.hold.release()
        return len(doomed)

    def _log_fail(self, svc: ServiceConfig, peer: str) -> None:
        if svc.log_type is not None:
            self.logs.write(svc, fail_entry(svc, REASON_FORK, peer))

    def close_all(self) -> None:
        """Shutdown: let go of every held request."""
        self.release_matching(lambda svc: True)
