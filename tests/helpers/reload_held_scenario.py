"""A connection held for its client's name (flags = PEERENV) or its ident reply
(log_on_success USERID) while a reload comes, inside a private network namespace.

    unshare -n python3 reload_held_scenario.py WORKDIR WHAT CHANGE DAEMON [ARG...]

WHAT `name`: every nameserver of /etc/resolv.conf is put on `lo`, served by a DNS
server that holds the PTR answer for the client 127.0.3.7 (h-7.held.test) until told,
and answers the rest at once (the A query of that name with 127.0.3.7). WHAT `ident`:
ident_scenario's identd on port 113 holds its answer (USERID alice) until told; the
client is 127.0.0.1. The daemon serves one stream service whose server prints its
`server_args` and $TCPREMOTEHOST. Once the DNS server or the identd has the daemon's
query, the configuration is written again and the daemon gets SIGHUP: CHANGE `none`
(the same file, its lines moved), `refused` (`no_access` names the client) or `socket`
(`flags = KEEPALIVE`, a new socket, and `server_args = new`). Once the reload is in
(`Reconfigured`), the answer goes out. Prints one JSON object: what the client got,
the service log, the program log, and how many queries the DNS server or identd had.
Standard library only; every wait bounded.
"""

import json
import os
import select
import socket
import sys
import threading
import time

from ident_scenario import Identd
from scenario_support import bring_up_loopback, free_port, read, running, seen, \
    wait_count, write_file
from slow_dns_burst_scenario import encode, question, reply
from slow_dns_scenario import mute_dns, nameservers

CLIENT = "127.0.3.7"
NAME = "h-7.held.test"
DEADLINE = 20.0


class HeldDns:
    """Answers the PTR query of CLIENT once `release` is set, everything else at once."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        self.ptr_queries = 0
        self.held = threading.Event()
        self.release = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, packet: bytes) -> tuple[bool, bytes]:
        """(whether it waits for `release`, the reply) for one query."""
        name, qtype, end = question(packet)
        if qtype == 12 and name == "7.3.0.127.in-addr.arpa":
            self.ptr_queries += 1
            self.held.set()
            return True, reply(packet, end, 12, encode(NAME))
        if qtype == 1 and name == NAME:
            return False, reply(packet, end, 1, socket.inet_aton(CLIENT))
        if name.endswith(".held.test"):
            return False, reply(packet, end)
        return False, reply(packet, end, rcode=3)

    def serve(self) -> None:
        waiting: list[tuple[socket.socket, bytes, object]] = []
        while not self.stop.is_set():
            ready, _, _ = select.select(self.socks, [], [], 0.05)
            for sock in ready:
                packet, peer = sock.recvfrom(4096)
                try:
                    held, answer = self.answer(packet)
                except (IndexError, ValueError):
                    continue
                if held:
                    waiting.append((sock, answer, peer))
                else:
                    sock.sendto(answer, peer)
            if self.release.is_set():
                for sock, answer, peer in waiting:
                    sock.sendto(answer, peer)
                waiting.clear()


def config(workdir: str, port: int, what: str, change: str, log: str) -> str:
    printer = write_file(os.path.join(workdir, "print.sh"),
                         '#!/bin/sh\necho "$1 ${TCPREMOTEHOST:-unnamed}"\n', 0o755)
    lines = ["type = UNLISTED", "socket_type = stream", "protocol = tcp", "wait = no",
             "user = root", f"port = {port}", "bind = 127.0.0.1", f"server = {printer}",
             "server_args = new" if change == "socket" else "server_args = old"]
    flags = ["PEERENV"] if what == "name" else []
    if change == "socket":
        flags.append("KEEPALIVE")
    if flags:
        lines.append("flags = " + " ".join(flags))
    if what == "ident":
        # "quiet": the reload stops logging USERID while the reply is awaited.
        lines.append("log_on_success = PID HOST EXIT"
                     + ("" if change == "quiet" else " USERID"))
    if change == "refused":
        lines.append(f"no_access = {CLIENT if what == 'name' else '127.0.0.1'}")
    if change == "none":
        lines.reverse()     # the same service, its lines moved
    body = "".join(f"    {line}\n" for line in lines)
    return f"""defaults
{{
    log_type = FILE {log}
    log_on_success = PID HOST EXIT
    log_on_failure = HOST
}}
service held
{{
{body}}}
"""


def main() -> int:
    workdir, what, change, daemon = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    bring_up_loopback()
    conf = os.path.join(workdir, "xinetd.conf")
    log = os.path.join(workdir, "services.log")
    program_log = os.path.join(workdir, "program.log")
    port = free_port()
    write_file(conf, config(workdir, port, what, "", log))
    # The daemon's lookup deadline, well beyond how long the answer is held.
    os.environ["PYXINETD_LOOKUP_TIMEOUT"] = "60"
    if what == "name":
        dns: HeldDns | None = HeldDns([mute_dns(address) for address in nameservers()])
        identd: Identd | None = None
        held, release = dns.held, dns.release
        client_host = CLIENT
    else:
        dns = None
        identd = Identd({port: "held"})
        held, release = identd.held, identd.release
        client_host = "127.0.0.1"
    result: dict[str, object] = {}
    try:
        with running(daemon, conf, program_log) as proc:
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.bind((client_host, 0))
            client.connect(("127.0.0.1", port))
            with client:
                result["held"] = held.wait(DEADLINE)
                write_file(conf, config(workdir, port, what, change, log))
                proc.send_signal(1)
                result["reloaded"] = wait_count(program_log, "Reconfigured: ", 1,
                                                time.monotonic() + DEADLINE)
                release.set()
                result["client"] = seen(client, wait=DEADLINE)
            # The server's EXIT (or the refusal's FAIL) is in before the daemon stops.
            wait_count(log, r"EXIT: |FAIL: ", 1, time.monotonic() + DEADLINE)
    finally:
        if dns is not None:
            dns.stop.set()
            dns.thread.join(5)
        if identd is not None:
            identd.close()
    result["queries"] = dns.ptr_queries if dns is not None else \
        len(identd.queries) if identd is not None else 0
    result["service_log"] = read(log).splitlines()
    result["program_log"] = read(program_log).splitlines()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
