"""SENSOR services and the global deny list (reference §4.6).

A client that reaches a service flagged SENSOR is added to one process-wide list for
the service's deny_time (minutes; -1 = forever, 0 = not added); while listed, every
service refuses it with FAIL reason `address`. Expired entries are dropped when they
are next looked up, so no timer is needed.
"""

from __future__ import annotations

from collections.abc import Callable

from pyxinetd.children import NO_ADDRESS
from pyxinetd.config.model import ServiceConfig
from pyxinetd.log import ProgramLog

# Most addresses remembered at once; past it, new ones are not added (memory bound).
DENY_LIST_MAX = 10_240


class DenyList:
    """peer -> expiry (monotonic seconds, or infinity)."""

    def __init__(self, clock: Callable[[], float], program: ProgramLog) -> None:
        self._clock = clock
        self._program = program
        self._deny: dict[str, float] = {}

    def denied(self, peer: str) -> bool:
        if not self._deny:
            return False
        expiry = self._deny.get(peer)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._deny[peer]
            return False
        return True

    def hit(self, svc: ServiceConfig, peer: str) -> None:
        """`peer` reached the SENSOR service `svc`: list it for svc.deny_time minutes."""
        minutes = svc.deny_time
        if minutes == 0 or peer == NO_ADDRESS:
            return
        if peer not in self._deny and len(self._deny) >= DENY_LIST_MAX:
            return
        expiry = float("inf") if minutes < 0 else self._clock() + minutes * 60
        self._deny[peer] = expiry
        self._program.critical("process_sensor",
                               f"Adding {peer} to the global_no_access list for {minutes} "
                               "minutes")
