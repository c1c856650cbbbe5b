"""Two reverse lookups in the resolver helper's threads, in a private network namespace:
one that the DNS answers a second late, then one it answers at once.

    unshare -n python3 lookup_side_by_side_scenario.py WORKDIR

Uses slow_dns_burst_scenario's DNS server (127.0.3.1 answered DELAY seconds late,
127.0.3.250 at once, the server a thread of this process). The slow lookup starts
first; once the DNS server has its query (or after a bounded wait) the quick one
starts. Prints one JSON object: the order in which the two lookups finished and the
names they found. A lookup that held the interpreter for its whole duration (Debian
12's Python 3.11.2 does so in socket.getnameinfo) lets nothing else run meanwhile, not
even the DNS server's thread: the quick lookup then finishes last. Standard library and
pyxinetd only; every wait bounded.
"""

import json
import os
import sys
import threading
import time

from scenario_support import bring_up_loopback
from slow_dns_burst_scenario import WARM, BurstDns
from slow_dns_scenario import mute_dns, nameservers

from pyxinetd.access.lookups import resolve

SLOW = "127.0.3.1"


def main() -> int:
    bring_up_loopback()
    os.environ["RES_OPTIONS"] = "timeout:3 attempts:1"
    dns = BurstDns([mute_dns(address) for address in nameservers()])
    finished: list[str] = []
    names: dict[str, str | None] = {}
    lock = threading.Lock()

    def look(address: str) -> None:
        info = resolve(address)
        with lock:
            finished.append(address)
            names[address] = info.name

    slow = threading.Thread(target=look, args=(SLOW,))
    slow.start()
    deadline = time.monotonic() + 5
    while SLOW not in dns.ptr_queries and time.monotonic() < deadline:
        time.sleep(0.01)
    quick = threading.Thread(target=look, args=(WARM,))
    quick.start()
    quick.join(10)
    slow.join(10)
    dns.stop.set()
    dns.thread.join(5)
    print(json.dumps({"finished": finished, "names": names}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
