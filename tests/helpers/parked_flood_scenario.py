"""Large datagrams from a sender whose name the DNS never gives, to a datagram builtin
whose `only_from` needs names, inside a private network namespace.

    unshare -n python3 parked_flood_scenario.py WORKDIR DAEMON [ARG...]

Every nameserver of /etc/resolv.conf is a socket on `lo` that never answers, and the
daemon's lookups are given 60 s (PYXINETD_LOOKUP_TIMEOUT), so every datagram the daemon
reads stays held, waiting for its sender's name, for the whole run. Datagrams of SIZE
bytes are sent one at a time, each once the service socket's receive queue is empty
again (the daemon read the one before), until one stays queued for HOLD seconds. Prints
one JSON object: how many the daemon read, whether the last one stayed queued, and
whether the daemon's name resolver helper (its lookups still pending) ended with it.
Standard library only; every wait bounded.
"""

import json
import os
import socket
import time

from procs import receive_queue, resolver_helpers
from scenario_support import begin, free_port, running
from slow_dns_scenario import mute_dns, nameservers, write_echo_config

SIZE = 60_000
MOST = 200          # far beyond any bound the daemon may have
HOLD = 2.0


def drained(port: int, seconds: float) -> bool:
    """Whether the queue is empty within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if receive_queue(port) == 0:
            return True
        time.sleep(0.01)
    return False


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main() -> int:
    run = begin()
    servers = [mute_dns(address) for address in nameservers()]
    port = free_port()
    write_echo_config(run.conf, port, extra="    cps = 0 0\n")
    os.environ["RES_OPTIONS"] = "timeout:30 attempts:1"
    os.environ["PYXINETD_LOOKUP_TIMEOUT"] = "60"
    read, held = 0, False
    with running(run.daemon, run.conf, run.program_log) as daemon:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind(("127.0.0.5", 0))
            for _ in range(MOST):
                sender.sendto(b"x" * SIZE, ("127.0.0.1", port))
                if not drained(port, HOLD):
                    held = True
                    break
                read += 1
        helpers = resolver_helpers(daemon.pid)
    # The daemon stops its name resolver helper as it exits, lookups pending or not.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.02)
    result = {"read": read, "held": held, "helpers": len(helpers),
              "helpers_left": sum(alive(pid) for pid in helpers)}
    for sock in servers:
        sock.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
