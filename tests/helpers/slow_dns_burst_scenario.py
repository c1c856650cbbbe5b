"""A burst of clients whose reverse lookups a DNS server answers one second late,
inside a private network namespace.

    unshare -n python3 slow_dns_burst_scenario.py WORKDIR MODE DAEMON [ARG...]

Puts every nameserver of /etc/resolv.conf on `lo`, served by a small DNS server that
answers the PTR query of 127.0.3.N (N < 250) DELAY seconds late with h-N.burst.test,
that of 127.0.3.250 at once with warm.burst.test, the A query of those names at once,
and everything else at once with no record. The daemon (lookup deadline 3 s through
$PYXINETD_LOOKUP_TIMEOUT) serves a dgram echo builtin with `only_from = .burst.test`,
so every datagram waits for its sender's name. A datagram from 127.0.3.250 first (the
resolver helper is started and answers), then the burst: MODE `distinct` sends one
datagram from each of 127.0.3.1 to 127.0.3.BURST, MODE `same` BURST datagrams from
127.0.3.1 (each from a port of its own). MODE `network` is an attack: the burst's PTR
answers come only after LATE seconds (past the deadline, as from a reverse zone that
never answers), the pool has 8 threads ($PYXINETD_LOOKUP_THREADS), and a client of
another network, 127.0.4.9 (named at once, l-9.burst.test), sends its datagram just
after the burst. Prints one JSON object: how many of the burst were echoed, how many
FAIL lines they got, how many PTR queries reached the DNS server for the burst's
addresses, and (`network`) whether the other client was echoed. Standard library only;
every wait bounded.
"""

import heapq
import json
import os
import select
import socket
import struct
import sys
import threading
import time

from scenario_support import free_port, read, running, Scenario, bring_up_loopback
from slow_dns_scenario import mute_dns, nameservers, write_echo_config

BURST = 30
DELAY = 1.0          # the PTR answers of the burst's addresses: well within...
DEADLINE = "3"       # ...the daemon's lookup deadline, but 4 at a time would miss it
WARM = "127.0.3.250"
LATE = 10.0          # `network`: the burst's PTR answers, past the deadline
OTHER = "127.0.4.9"  # `network`: a client of another network, named at once
ANSWER_WAIT = 15.0


def question(packet: bytes) -> tuple[str, int, int]:
    """The first question's name, type, and the offset after it."""
    labels, at = [], 12
    while packet[at]:
        labels.append(packet[at + 1:at + 1 + packet[at]].decode("ascii", "replace"))
        at += 1 + packet[at]
    qtype = struct.unpack("!H", packet[at + 1:at + 3])[0]
    return ".".join(labels).lower(), qtype, at + 5


def encode(name: str) -> bytes:
    return b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"


def reply(packet: bytes, end: int, rtype: int = 0, rdata: bytes = b"",
          rcode: int = 0) -> bytes:
    count = 1 if rdata else 0
    head = packet[:2] + struct.pack("!HHHHH", 0x8180 | rcode, 1, count, 0, 0)
    body = packet[12:end]
    if rdata:
        body += struct.pack("!HHHIH", 0xC00C, rtype, 1, 60, len(rdata)) + rdata
    return head + body


class BurstDns:
    """The DNS server of the scenario, on SOCKS; counts the PTR queries per address."""

    def __init__(self, socks: list[socket.socket], delay: float = DELAY) -> None:
        self.socks = socks
        self.delay = delay
        self.ptr_queries: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, packet: bytes) -> tuple[float, bytes]:
        """(how late, the reply) for one query."""
        name, qtype, end = question(packet)
        if qtype == 12 and name.endswith(".3.0.127.in-addr.arpa"):
            last = int(name.split(".")[0])
            address = f"127.0.3.{last}"
            self.ptr_queries[address] = self.ptr_queries.get(address, 0) + 1
            host = "warm.burst.test" if address == WARM else f"h-{last}.burst.test"
            return (0.0 if address == WARM else self.delay,
                    reply(packet, end, 12, encode(host)))
        if qtype == 12 and name.endswith(".4.0.127.in-addr.arpa"):
            return 0.0, reply(packet, end, 12, encode(f"l-{name.split('.')[0]}.burst.test"))
        if qtype == 1 and name.endswith(".burst.test"):
            label = name.split(".")[0]
            if label.startswith("l-"):
                return 0.0, reply(packet, end, 1, socket.inet_aton(f"127.0.4.{label[2:]}"))
            last = 250 if label == "warm" else int(label[2:])
            return 0.0, reply(packet, end, 1, socket.inet_aton(f"127.0.3.{last}"))
        if name.endswith(".burst.test"):
            return 0.0, reply(packet, end)
        return 0.0, reply(packet, end, rcode=3)

    def serve(self) -> None:
        due: list[tuple[float, int, socket.socket, bytes, object]] = []
        order = 0
        while not self.stop.is_set():
            wait = 0.2 if not due else max(0.0, min(0.2, due[0][0] - time.monotonic()))
            ready, _, _ = select.select(self.socks, [], [], wait)
            for sock in ready:
                packet, peer = sock.recvfrom(4096)
                try:
                    late, answer = self.answer(packet)
                except (IndexError, ValueError, struct.error):
                    continue
                order += 1
                heapq.heappush(due, (time.monotonic() + late, order, sock, answer, peer))
            while due and due[0][0] <= time.monotonic():
                _, _, sock, answer, peer = heapq.heappop(due)
                sock.sendto(answer, peer)


def main() -> int:
    workdir, mode, daemon = sys.argv[1], sys.argv[2], sys.argv[3:]
    bring_up_loopback()
    run = Scenario(daemon, os.path.join(workdir, "xinetd.conf"),
                   os.path.join(workdir, "services.log"),
                   os.path.join(workdir, "program.log"))
    dns = BurstDns([mute_dns(address) for address in nameservers()],
                   LATE if mode == "network" else DELAY)
    port = free_port()
    write_echo_config(run.conf, port, f"""defaults
{{
    log_type = FILE {run.service_log}
    log_on_success = HOST
    log_on_failure = HOST
    cps = 100000 1
}}
""")
    with open(run.conf) as f:
        text = f.read()
    with open(run.conf, "w") as f:
        f.write(text.replace("only_from = localhost", "only_from = .burst.test"))
    os.environ["RES_OPTIONS"] = "timeout:5 attempts:1"
    os.environ["PYXINETD_LOOKUP_TIMEOUT"] = DEADLINE
    if mode == "network":
        os.environ["RES_OPTIONS"] = f"timeout:{int(LATE) + 5} attempts:1"
        os.environ["PYXINETD_LOOKUP_THREADS"] = "8"
    sources = (["127.0.3.1"] * BURST if mode == "same"
               else [f"127.0.3.{n}" for n in range(1, BURST + 1)])
    result: dict[str, object] = {}
    with running(run.daemon, run.conf, run.program_log):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as warm:
            warm.bind((WARM, 0))
            warm.settimeout(ANSWER_WAIT)
            warm.sendto(b"warm", ("127.0.0.1", port))
            try:
                result["warm"] = warm.recv(100) == b"warm"
            except OSError:
                result["warm"] = False
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in sources]
        try:
            for sender, source in zip(senders, sources):
                sender.bind((source, 0))
                sender.sendto(b"x", ("127.0.0.1", port))
            if mode == "network":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    other.bind((OTHER, 0))
                    other.settimeout(ANSWER_WAIT)
                    time.sleep(0.2)     # the burst's lookups have taken their threads
                    other.sendto(b"other", ("127.0.0.1", port))
                    try:
                        result["other"] = other.recv(100) == b"other"
                    except OSError:
                        result["other"] = False
            waiting, echoed = set(senders), 0
            deadline = time.monotonic() + ANSWER_WAIT
            while waiting and time.monotonic() < deadline:
                ready, _, _ = select.select(list(waiting), [], [],
                                            deadline - time.monotonic())
                for sender in ready:
                    waiting.discard(sender)
                    echoed += sender.recv(100) == b"x"
        finally:
            for sender in senders:
                sender.close()
        result["echoed"] = echoed
        result["fail_lines"] = read(run.service_log).count(
            "FAIL: echo-dgram address from=127.0.3.")
        result["ptr_queries"] = sum(count for address, count in dns.ptr_queries.items()
                                    if address != WARM)
        result["late_lines"] = read(run.program_log).count(" unanswered after ")
    dns.stop.set()
    dns.thread.join(5)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
