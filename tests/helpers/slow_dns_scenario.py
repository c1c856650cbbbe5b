"""A burst of requests whose name lookups the DNS never answers, then a client whose
name /etc/hosts gives at once, inside a private network namespace.

    unshare -n python3 slow_dns_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up and puts every nameserver of /etc/resolv.conf on it, each with a socket
that reads queries and never answers (the daemon gets RES_OPTIONS="timeout:1
attempts:1", so each reverse lookup fails after about one second). Writes a
configuration with one dgram echo builtin whose `only_from = localhost` makes every
datagram wait for its sender's name, starts `DAEMON ARG... -f CONF -dontfork -filelog
LOG`, then: a client on 127.0.0.1 is answered; BURST datagrams from 127.0.0.5 (not in
/etc/hosts) all end refused once their lookups time out; the client on 127.0.0.1 asks
again. Prints one JSON object: whether the client was answered before and after the
burst, and how many FAIL lines the burst got. Standard library only; every wait bounded.
"""

import json
import os
import socket
import subprocess
import time

from scenario_support import begin, free_port, read, running

BURST = 200
ANSWER_WAIT = 4.0   # less than the daemon's 5 s lookup deadline


def nameservers() -> list[str]:
    found = []
    for line in read("/etc/resolv.conf").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1].split("%", 1)[0])
    return found or ["127.0.0.1"]


def mute_dns(address: str) -> socket.socket:
    """A socket on ADDRESS:53 that takes queries and never answers."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if address not in ("127.0.0.1", "::1"):
        prefix = "128" if family == socket.AF_INET6 else "32"
        subprocess.run(["ip", "addr", "add", f"{address}/{prefix}", "dev", "lo"],
                       check=True)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    return sock


def answered(source: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((source, 0))
        client.settimeout(ANSWER_WAIT)
        client.sendto(b"hello", ("127.0.0.1", port))
        try:
            return client.recv(100) == b"hello"
        except OSError:
            return False


def refusals(service_log: str) -> int:
    return read(service_log).count("FAIL: echo-dgram address from=127.0.0.5")


def write_echo_config(path: str, port: int, before: str = "", extra: str = "") -> None:
    """A configuration whose one service, the datagram echo builtin on 127.0.0.1:PORT,
    needs its senders' names (`only_from = localhost`); `before` goes ahead of it (a
    defaults entry), `extra` lines into it."""
    with open(path, "w") as f:
        f.write(f"""{before}
service echo
{{
    type = INTERNAL UNLISTED
    id = echo-dgram
    socket_type = dgram
    protocol = udp
    port = {port}
    bind = 127.0.0.1
    wait = yes
    only_from = localhost
{extra}}}
""")


def main() -> int:
    run = begin()
    servers = [mute_dns(address) for address in nameservers()]
    port = free_port()
    write_echo_config(run.conf, port, f"""defaults
{{
    log_type = FILE {run.service_log}
    log_on_success = HOST
    log_on_failure = HOST
    cps = 100000 1
}}
""")
    os.environ["RES_OPTIONS"] = "timeout:1 attempts:1"
    result: dict[str, object] = {}
    with running(run.daemon, run.conf, run.program_log):
        result["before"] = answered("127.0.0.1", port)
        # Each datagram from a port of its own (all open at once, so no port repeats):
        # a refusal is logged once a minute per sender (address and port), and the FAIL
        # lines count the refusals here.
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(BURST)]
        try:
            for sender in senders:
                sender.bind(("127.0.0.5", 0))
                sender.sendto(b"x", ("127.0.0.1", port))
        finally:
            for sender in senders:
                sender.close()
        # Every datagram of the burst has been given up (refused) by the daemon.
        deadline = time.monotonic() + 30
        while refusals(run.service_log) < BURST and time.monotonic() < deadline:
            time.sleep(0.05)
        result["fail_lines"] = refusals(run.service_log)
        result["after"] = answered("127.0.0.1", port)
    for sock in servers:
        sock.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
