"""Finding a free loopback port, shared by tests/daemon.py and the scenario scripts run in
namespaces (which import it as a sibling module).

Ports come from below the kernel's ephemeral range, never from bind(0). A port the
kernel picks for bind(0) is one it also gives the outgoing connections of every other
test running at the same time: between the moment a test finds it free and the moment
its daemon binds it, a client of another pytest-xdist worker may have taken it as its
local port, and the daemon's bind fails (EADDRINUSE). Below the ephemeral range no
connection is ever given a port, and each worker draws from a slice of its own, so the
only other takers are programs of the machine, which the bind probes see.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Container

# The pool: below Linux's default ephemeral range (32768-60999), above most fixed ports
# and the demo configuration's (etc/demo: 20007-20101), so the suite can run beside it.
_POOL = (21000, 32768)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as table:
            return int(table.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _POOL[1]


def _slice() -> range:
    """This worker's part of the pool (the whole pool outside pytest-xdist)."""
    low, high = _POOL[0], min(_POOL[1], _ephemeral_low())
    if high - low < 1000:
        # A machine whose ephemeral range covers the pool: the pool as it is, still
        # sliced per worker (collisions with connections become possible again).
        low, high = _POOL
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 0:
        size = (high - low) // int(count)
        low += int(worker[2:]) * size
        high = low + size
    return range(low, high)


_PORTS = _slice()
# Where this process goes on in its slice: a port is handed out again only after every
# other one of the slice was, so a port a finished test's daemon may still hold (it is
# being stopped) is not given to the next test.
_next = random.randrange(len(_PORTS))


def free_port(handed_out: Container[int],
              also_free: Callable[[int], None] | None = None) -> int:
    """A port of this worker's slice that TCP and UDP can both bind on 127.0.0.1, that is
    not in `handed_out`, and for which `also_free` raises no OSError. A test asking for
    several ports before starting its daemons must get different ones: the caller
    records what it handed out and passes it back in."""
    global _next
    for _ in range(len(_PORTS)):
        port = _PORTS[_next % len(_PORTS)]
        _next += 1
        if port in handed_out:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                # Without SO_REUSEADDR: a port still in TIME_WAIT (a test's own
                # listener binds without it) is passed over.
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            if also_free is not None:
                also_free(port)
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port in {_PORTS.start}-{_PORTS.stop - 1}")
