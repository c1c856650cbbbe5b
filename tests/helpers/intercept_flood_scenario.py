"""Datagrams from many senders whose names the DNS never gives, to an intercepted
datagram server whose `only_from` needs names, inside a private network namespace.

    unshare -n python3 intercept_flood_scenario.py WORKDIR DAEMON [ARG...]

Every nameserver of /etc/resolv.conf is a socket on `lo` that never answers, and the
daemon's lookups are given 60 s (PYXINETD_LOOKUP_TIMEOUT). A sender on 127.0.0.1 (whose
name /etc/hosts gives at once) starts the server; then SENDERS sockets on 127.0.0.5
send one datagram of SIZE bytes each, one at a time, each once the service socket's
receive queue is empty again (the daemon read the one before): every such sender waits
for its name. Prints one JSON object: what the first sender got before and after the
flood, how many flood datagrams the daemon read (or the first one it left queued for
HOLD seconds), how much the daemon grew meanwhile (resident KiB) and the program log's
ERROR lines. Standard library only; every wait
bounded.
"""

import json
import os
import socket
import sys

from parked_flood_scenario import drained
from scenario_support import begin, free_port, read, running
from slow_dns_scenario import mute_dns, nameservers

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "intercept_server.py")
SIZE = 60_000
SENDERS = 400       # 24 MB: far beyond any bound the daemon may have
HOLD = 2.0


def ask(sock: socket.socket, port: int, data: bytes) -> str:
    sock.sendto(data, ("127.0.0.1", port))
    try:
        return sock.recv(1000).decode().split(" ", 1)[1]
    except OSError as err:
        return repr(err)


def resident_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def main() -> int:
    run = begin()
    servers = [mute_dns(address) for address in nameservers()]
    port = free_port()
    with open(run.conf, "w") as f:
        f.write(f"""
service icept
{{
    type = UNLISTED
    socket_type = dgram
    protocol = udp
    wait = yes
    user = root
    port = {port}
    bind = 127.0.0.1
    server = {sys.executable}
    server_args = -I -S {SERVER} 100000 30
    flags = INTERCEPT
    only_from = localhost
    cps = 0 0
}}
""")
    os.environ["RES_OPTIONS"] = "timeout:30 attempts:1"
    os.environ["PYXINETD_LOOKUP_TIMEOUT"] = "60"
    result: dict[str, object] = {}
    senders = []
    with running(run.daemon, run.conf, run.program_log) as daemon, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
        first.bind(("127.0.0.1", 0))
        first.settimeout(10)
        result["before"] = ask(first, port, b"before")
        result["read"] = 0
        start = resident_kib(daemon.pid)
        try:
            for _ in range(SENDERS):
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                senders.append(sender)
                sender.bind(("127.0.0.5", 0))
                sender.sendto(b"x" * SIZE, ("127.0.0.1", port))
                if not drained(port, HOLD):
                    break
                result["read"] += 1
        finally:
            for sender in senders:
                sender.close()
        result["grown_kib"] = resident_kib(daemon.pid) - start
        result["after"] = ask(first, port, b"after")
        result["errors"] = [line.split("]: ", 1)[1] for line in read(run.program_log)
                            .splitlines() if "ERROR" in line]
    for sock in servers:
        sock.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
