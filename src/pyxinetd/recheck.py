"""Access control again for the running servers of a service a reload kept.

xinetd's manual (xinetd(8), SIGHUP) promises that on reconfiguration "access control is
performed again on running servers by checking the remote location, access times and
server instances", the instance limit last; xinetd 2.3.15.3 does not do it (reference
§6.2). pyxinetd does, for every kept service, with its new attributes:

1. access_times: outside the new window, every running server of the service fails
   (reason `time`);
2. only_from / no_access: a server with a peer address fails when the lists refuse that
   address (reason `address`), with the same matcher as new connections
   (pyxinetd.access.lists). When the lists hold host names, the peer's name comes from
   the same non-blocking resolver as for new connections: the recheck waits for it
   without ever blocking the loop, and a lookup that fails or times out makes name
   entries not match, as for a new connection; one that never ran (the resolver
   helper's queue stayed full) fails the server when some name would change the
   lists' verdict, as it refuses a new connection. Servers without a peer (stream
   `wait = yes`) skip this check;
3. instances: once every verdict of steps 1-2 is in, if more servers still run than the
   new `instances` allows, the most recently started ones fail (reason `instances`)
   until the limit holds.

The clients of an intercepted server (`flags = INTERCEPT`: its stream relays, its
datagram senders' channels, the stream clients held for its next server) are checked
the same way, steps 1-2 only, each with its own address.

This module decides; it neither signals nor logs. The caller (pyxinetd.reconfig) lists
the running servers of the service and says how to end each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyxinetd.access import lists
from pyxinetd.access.hostspatterns import normalize_address
from pyxinetd.access.resolver import Resolver
from pyxinetd.config.model import ServiceConfig
from pyxinetd.service import within_access_times

REASON_ADDRESS = "address"
REASON_TIME = "time"
REASON_INSTANCES = "instances"



class NotLookedUp:
    """The answer of a lookup that never ran: not a name the DNS lacks."""


NOT_LOOKED_UP = NotLookedUp()
# A peer's reverse name, None when none is known, or NOT_LOOKED_UP.
Name = str | None | NotLookedUp
# Resolves a peer address to its reverse name, calling back later.
NameLookup = Callable[[str, Callable[[Name], None]], None]


def resolver_lookup(resolver: Resolver) -> NameLookup:
    """The NameLookup of the resolver new connections use: a helper process, never
    blocking the loop."""
    def lookup(peer: str, done: Callable[[Name], None]) -> None:
        resolver.lookup(normalize_address(peer), lambda info: done(
            NOT_LOOKED_UP if info.not_looked_up else info.name))
    return lookup


@dataclass(frozen=True)
class Running:
    """One running server (external process or in-loop session) of a service."""

    peer: str
    started: float                  # loop clock; the latest started end first
    end: Callable[[str], None]      # terminate it, giving the reason
    alive: Callable[[], bool]       # False once it ended by itself (reaped, closed)


class Recheck:
    """One service's recheck; `start()` runs it, possibly finishing after name lookups."""

    def __init__(self, svc: ServiceConfig, servers: Sequence[Running], lookup: NameLookup,
                 *, on_tie: Callable[[str], None] | None = None,
                 now: float | None = None, instances: bool = True,
                 on_done: Callable[[], None] | None = None) -> None:
        self.svc = svc
        # Called once every verdict is in and the failed servers were ended.
        self._on_done = on_done
        # Whether step 3 applies: not to the clients of an intercepted server, which
        # are not servers and do not count toward `instances`.
        self._instances = instances
        self.servers = list(servers)
        self._lookup = lookup
        self._on_tie = on_tie
        self._now = now
        self._failed: set[int] = set()      # indexes into self.servers
        self._pending = 0
        self.cancelled = False
        self.done = False

    def cancel(self) -> None:
        """A newer reload took over: verdicts still to come are ignored."""
        self.cancelled = True

    def start(self) -> None:
        svc = self.svc
        if svc.access_times and not within_access_times(svc, self._now):
            for index in range(len(self.servers)):
                self._fail(index, REASON_TIME)
        elif lists.has_lists(svc):
            names = lists.needs_names(svc)
            # Held while the lookups are sent: an answer given at once cannot finish early.
            self._pending += 1
            for index, server in enumerate(self.servers):
                if lists.parse_peer(server.peer) is None:
                    continue    # no peer (stream wait = yes): no address check
                if names:
                    self._pending += 1
                    self._lookup(server.peer, self._verdict_for(index))
                else:
                    self._judge(index, None)
            self._settle()
            return
        self._limit()

    def _verdict_for(self, index: int) -> Callable[[Name], None]:
        def verdict(name: Name) -> None:
            if self.cancelled:
                return
            self._judge(index, name)
            self._settle()
        return verdict

    def _judge(self, index: int, name: Name) -> None:
        server = self.servers[index]
        if not server.alive():
            return
        if isinstance(name, NotLookedUp):
            if lists.depends_on_name(self.svc, server.peer):
                self._fail(index, REASON_ADDRESS)
                return
            name = None     # the verdict is the same whatever the name
        result = lists.check(self.svc, server.peer, name)
        if result.tie and self._on_tie is not None:
            self._on_tie(server.peer)
        if not result.allowed:
            self._fail(index, REASON_ADDRESS)

    def _settle(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._limit()

    def _limit(self) -> None:
        self.done = True
        if self.cancelled:
            return
        self._enforce_instances()
        if self._on_done is not None:
            self._on_done()

    def _enforce_instances(self) -> None:
        """Step 3: the instances limit, over the servers that passed steps 1-2."""
        limit = self.svc.instances
        if limit is None or not self._instances:
            return
        survivors = [i for i, s in enumerate(self.servers)
                     if i not in self._failed and s.alive()]
        excess = len(survivors) - limit
        if excess <= 0:
            return
        # Servers are listed in start order: among equal start times the later listed
        # one is the more recent.
        newest_first = sorted(survivors, key=lambda i: (self.servers[i].started, i),
                              reverse=True)
        for index in newest_first[:excess]:
            self._fail(index, REASON_INSTANCES)

    def _fail(self, index: int, reason: str) -> None:
        if index in self._failed:
            return
        self._failed.add(index)
        self.servers[index].end(reason)
