"""Generating the benchmark configurations (xinetd syntax, read by both daemons).

Every service listens on 127.0.0.1 on a free port outside the kernel's ephemeral range
(free_ports), so that no client of a run can hold it. Rate limits are
switched off explicitly, in the defaults and in every service: xinetd's default
`cps = 50 10` would deactivate a service within the first second of a benchmark, and the
defaults `instances`/`per_source` are spelled out as UNLIMITED so neither daemon refuses
anything. There is no `log_type` unless asked for: that is Debian's stock configuration,
in which neither daemon writes a service log line per connection.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass

ECHO_BIN = "/bin/echo"
REPLY = b"hello\n"  # what /bin/echo hello and the wait server write
WAIT_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wait_server.py")

UNLIMITED = (("cps", "0 0"), ("instances", "UNLIMITED"), ("per_source", "UNLIMITED"))


@dataclass(frozen=True)
class BenchService:
    """One service of the benchmark configuration, and how a client talks to it."""

    key: str  # stable name used by the cases ("exec-root", "echo-tcp", ...)
    port: int
    kind: str  # request kind for bench.loadgen ("read", "echo", "udp")
    payload: bytes  # what the client expects back (and sends, for echo kinds)


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
# Where ports are drawn when the ephemeral range leaves room below it.
LOWEST_PORT = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open(EPHEMERAL_RANGE_FILE) as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999     # Linux's default


def _candidate_ports() -> list[int]:
    """Ports no client socket is given: below the ephemeral range (above it when there is
    more room there), shuffled. A service port inside the range could be the local port
    of a client connection, or of its TIME_WAIT, from an earlier case or the ceiling
    phase (thousands per second): bind() then fails with EADDRINUSE even with
    SO_REUSEADDR, and both daemons would serve nothing on it for a whole round."""
    low, high = _ephemeral_range()
    below = range(LOWEST_PORT, low)
    above = range(high + 1, 65536)
    ports = list(below if len(below) >= len(above) else above)
    random.shuffle(ports)
    return ports


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 for TCP and UDP at the time of the call,
    outside the ephemeral range (_candidate_ports).

    All sockets stay bound until every port is chosen (so the ports are distinct); a port
    is kept only if both protocols can bind it, so a service of either type fits.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in _candidate_ports():
            if len(ports) == count:
                break
            try:
                for protocol in (kind, socket.SOCK_DGRAM if kind == socket.SOCK_STREAM
                                 else socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, protocol)
                    held.append(s)
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for s in held:
            s.close()
    if len(ports) < count:
        raise RuntimeError(f"found only {len(ports)} of {count} free loopback ports")
    return ports


def _block(name: str, attrs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in attrs)
    body = "".join(f"\t{k.ljust(width)} = {v}\n" for k, v in attrs)
    return f"service {name}\n{{\n{body}}}\n"


def _defaults(service_log: str | None) -> str:
    attrs = list(UNLIMITED)
    if service_log is not None:
        attrs += [("log_type", f"FILE {service_log}"),
                  ("log_on_success", "HOST PID EXIT DURATION"),
                  ("log_on_failure", "HOST")]
    body = "".join(f"\t{k} = {v}\n" for k, v in attrs)
    return f"defaults\n{{\n{body}}}\n"


def _exec_service(service_id: str, port: int, user: str) -> str:
    return _block(service_id, [
        ("type", "UNLISTED"), ("socket_type", "stream"), ("protocol", "tcp"),
        ("wait", "no"), ("user", user), ("server", ECHO_BIN), ("server_args", "hello"),
        ("bind", "127.0.0.1"), ("port", str(port)), *UNLIMITED])


def bench_config(service_log: str | None = None) -> tuple[str, list[BenchService]]:
    """The serving benchmark's configuration text and its services."""
    tcp = free_ports(4)
    udp = free_ports(1, socket.SOCK_DGRAM)
    python = os.path.realpath(sys.executable)
    services = [
        BenchService("exec-root", tcp[0], "read", REPLY),
        BenchService("exec-nobody", tcp[1], "read", REPLY),
        BenchService("echo-tcp", tcp[2], "echo", b"hello, echo\n"),
        BenchService("echo-udp", udp[0], "udp", b"hello, echo\n"),
        BenchService("wait", tcp[3], "read", REPLY),
    ]
    blocks = [
        "# Generated by bench/serve.py: serving benchmark, loopback only.\n",
        _defaults(service_log),
        _exec_service("bench-exec-root", tcp[0], "root"),
        _exec_service("bench-exec-nobody", tcp[1], "nobody"),
        # Internal services are selected by service *name*, so both are called echo.
        _block("echo", [
            ("id", "bench-echo-tcp"), ("type", "INTERNAL UNLISTED"),
            ("socket_type", "stream"), ("protocol", "tcp"), ("wait", "no"),
            ("bind", "127.0.0.1"), ("port", str(tcp[2])), *UNLIMITED]),
        _block("echo", [
            ("id", "bench-echo-udp"), ("type", "INTERNAL UNLISTED"),
            ("socket_type", "dgram"), ("protocol", "udp"), ("wait", "yes"),
            ("bind", "127.0.0.1"), ("port", str(udp[0])), *UNLIMITED]),
        _block("bench-wait", [
            ("type", "UNLISTED"), ("socket_type", "stream"), ("protocol", "tcp"),
            ("wait", "yes"), ("user", "root"), ("server", python),
            ("server_args", f"-I -S {WAIT_SERVER}"),
            ("bind", "127.0.0.1"), ("port", str(tcp[3])), *UNLIMITED]),
    ]
    return "\n".join(blocks), services


def many_services_config(count: int) -> str:
    """`count` nowait TCP services exec'ing /bin/echo as nobody, each on its own port."""
    ports = free_ports(count)
    blocks = [f"# Generated by bench/serve.py: {count} services for the memory measurement.\n",
              _defaults(None)]
    blocks += [_exec_service(f"bench-many-{i:04d}", port, "nobody")
               for i, port in enumerate(ports)]
    return "\n".join(blocks)
