"""SENSOR services and the global deny list (reference §4.6).

A client that reaches a service flagged SENSOR is added to one process-wide list for
the service's deny_time (minutes; -1 = forever, 0 = not added); while listed, every
other service refuses it with FAIL reason `address`. As in xinetd (sensor.c):

* a sensor does not look at the list: a listed client that reaches a sensor again has
  its expiry moved to the later of the two (never earlier; a FOREVER entry stays), with
  no new CRITICAL line (what xinetd's code means to do; an inverted test keeps its
  first expiry: docs/compatibility.md);
* the list is scrubbed every minute (SCRUB_INTERVAL), from the first addition while it
  holds entries that can expire: expired entries leave it then (INFO `At least 1
  DENY_TIME has expired, global_no_access list updated`), and once it is empty
  `global_no_access list is empty.` is logged and the timer stops. Until its scrub an
  expired entry still denies.
  Unlike xinetd, whose timer goes on every minute for as long as the list holds
  anything, the timer also stops when only FOREVER entries are left (a scrub would
  find nothing to do): an idle daemon whose sensor caught a client for ever makes no
  wake-ups, and the next entry that can expire starts the timer again;
* a full list (DENY_LIST_MAX) takes nothing more: each hit then logs ERROR `Maximum
  global_no_access count reached.`, a listed client's included.

A client is listed as the host it is: an IPv4 client of a dual-stack socket
(`::ffff:a.b.c.d`, as the CRITICAL line names it) is refused on IPv4 sockets too, and one
caught on an IPv4 socket on dual-stack ones (xinetd only does the latter: its list holds
`::ffff:a.b.c.d` as an IPv6 address, which no IPv4 client matches).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

from pyxinetd.children import NO_ADDRESS
from pyxinetd.config.model import ServiceConfig
from pyxinetd.log import ProgramLog
from pyxinetd.timers import Timer, shortened

# Most addresses remembered at once; past it, new ones are not added (memory bound).
DENY_LIST_MAX = 10_240
# Seconds in a minute of deny_time, and between two scrubs of the list (xinetd's timer).
SCRUB_INTERVAL = 60.0
# Test-only override of SCRUB_INTERVAL, which also sets the length of a deny_time minute.
MINUTE_ENV = "PYXINETD_SENSOR_MINUTE"
FOREVER = float("inf")


def sensor_minute(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """SCRUB_INTERVAL, or $PYXINETD_SENSOR_MINUTE (seconds) when set and valid."""
    return shortened(SCRUB_INTERVAL, MINUTE_ENV, environ)


def _host(peer: str) -> str:
    """The key of `peer` in the list: an IPv4-mapped address as plain IPv4 (the same
    host); anything else as written (a link-local peer keeps its zone)."""
    if peer.startswith("::ffff:") and "." in peer:
        try:
            mapped = ipaddress.IPv6Address(peer).ipv4_mapped
        except ValueError:
            return peer
        if mapped is not None:
            return str(mapped)
    return peer


class DenyList:
    """peer -> expiry (loop clock seconds, or FOREVER)."""

    def __init__(self, clock: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], Timer],
                 program: ProgramLog) -> None:
        self._clock = clock
        self._call_later = call_later
        self._program = program
        self._deny: dict[str, float] = {}
        self._timer: Timer | None = None
        self._minute = sensor_minute()

    def denied(self, peer: str) -> bool:
        return bool(self._deny) and _host(peer) in self._deny

    def hit(self, svc: ServiceConfig, peer: str) -> None:
        """`peer` reached the SENSOR service `svc`: list it for svc.deny_time minutes."""
        minutes = svc.deny_time
        if minutes == 0 or peer == NO_ADDRESS:
            return
        if len(self._deny) >= DENY_LIST_MAX:
            self._program.error("process_sensor", "Maximum global_no_access count reached.")
            return
        expiry = FOREVER if minutes < 0 else self._clock() + minutes * self._minute
        host = _host(peer)
        listed = self._deny.get(host)
        if listed is not None:
            # Here again: a later expiry replaces the listed one (FOREVER stays).
            if minutes > 0 and expiry > listed:
                self._deny[host] = expiry
            return
        self._deny[host] = expiry
        self._program.critical("process_sensor",
                               f"Adding {peer} to the global_no_access list for {minutes} "
                               "minutes")
        if self._timer is None and expiry != FOREVER:
            self._timer = self._call_later(self._minute, self._scrub)

    def _scrub(self) -> None:
        self._timer = None
        if not self._deny:
            return
        now = self._clock()
        expired = [peer for peer, expiry in self._deny.items() if expiry <= now]
        for peer in expired:
            del self._deny[peer]
        if expired:
            self._program.info("scrub_global_no_access_list",
                               "At least 1 DENY_TIME has expired, global_no_access list "
                               "updated")
        if any(expiry != FOREVER for expiry in self._deny.values()):
            self._timer = self._call_later(self._minute, self._scrub)
        elif not self._deny:
            self._program.info("scrub_global_no_access_list", "global_no_access list is empty.")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
