"""The share of the daemon's descriptor limit held by what runs in its loop.

An external server's connection is handed to the server and the daemon's copy closed
at once, but an in-loop session (an internal stream builtin, a redirect, tcpmux before
its handover) keeps its descriptors for as long as its client stays, a running
`dgram`/`wait = no` server keeps one end of its channel in the daemon (pyxinetd.
dgramrelay), and a client waiting for its USERID lookup keeps its connection and the
ident socket (pyxinetd.userid). xinetd forks those: a flood of them costs processes,
not xinetd's descriptors. Here they could take every descriptor, and every other
service's accept() would fail for as long as their clients stayed.

So together they may hold at most half the limit, counted (not judged from descriptor
numbers, which the daemon's own listeners and logs take too): a service whose session
would go beyond leaves its clients in its listen queue until one ends (pyxinetd.suspend.
wait_for_descriptors), a relay drops the datagram. pyxinetd raises its soft limit to
the hard one at start-up, so only a small hard limit brings this about.
"""

from __future__ import annotations

import resource
import sys

from pyxinetd.config.model import ServiceConfig

# In-loop sessions and relay channels together may hold 1/IN_LOOP_SHARE of the limit.
IN_LOOP_SHARE = 2


def budget() -> int:
    """How many descriptors in-loop sessions and relay channels may hold together."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    return soft // IN_LOOP_SHARE


def session_cost(service: ServiceConfig) -> int:
    """The descriptors one in-loop session of `service` holds: a redirect has its
    connection to the target too."""
    return 2 if service.is_redirect else 1
