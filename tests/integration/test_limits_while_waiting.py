"""A request admitted by the limits but waiting for a name lookup (only_from by name,
PEERENV) counts toward instances and per_source meanwhile, as xinetd's forked child
does: a burst of clients never starts more servers than `instances`."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import pytest

from pyxinetd.access.resolver import resolve
from tests.daemon import HELPERS, DaemonFactory, free_port, read_log, wait_log_lines

TIMEOUT = 10.0
LOCALHOST_KNOWN = resolve("127.0.0.1").name == "localhost"


def service(port: int, log: Path, extra: str, *, dgram: bool = False) -> str:
    if dgram:
        kind = "socket_type = dgram\n    protocol = udp"
        server = (f"server = {sys.executable}\n"
                  f"    server_args = {HELPERS / 'dgram_nowait_server.py'} 3")
    else:
        kind = "socket_type = stream\n    protocol = tcp"
        server = "server = /bin/sleep\n    server_args = 30"
    return f"""
service limited
{{
    type = UNLISTED
    {kind}
    port = {port}
    wait = no
    user = root
    {server}
    bind = 127.0.0.1
    log_type = FILE {log}
    log_on_success = PID HOST
    log_on_failure = HOST
    {extra}
}}
"""


def outcomes(log: Path, count: int) -> tuple[int, list[str]]:
    """Wait until `count` requests were decided: the STARTs and the FAIL reasons."""
    wait_log_lines(log, r"(START|FAIL): limited", count, TIMEOUT)
    text = read_log(log)
    return (len(re.findall(r"START: limited", text)),
            re.findall(r"FAIL: limited (\S+)", text))


@pytest.mark.skipif(not LOCALHOST_KNOWN, reason="127.0.0.1 does not resolve to localhost")
@pytest.mark.parametrize("extra", ["instances = 1\n    only_from = localhost",
                                   "instances = 1\n    flags = PEERENV",
                                   "per_source = 1\n    only_from = localhost"])
def test_a_burst_waiting_for_names_starts_no_more_servers_than_the_limit(
        daemons: DaemonFactory, tmp_path: Path, extra: str) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemons.start_config(service(port, log, extra))
    clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
               for _ in range(3)]
    try:
        started, failed = outcomes(log, 3)
        reason = "service_limit" if "instances" in extra else "per_source_limit"
        assert (started, failed) == (1, [reason, reason])
    finally:
        for conn in clients:
            conn.close()


@pytest.mark.skipif(not LOCALHOST_KNOWN, reason="127.0.0.1 does not resolve to localhost")
def test_dgram_nowait_senders_waiting_for_names_hold_their_slot(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemons.start_config(service(port, log, "instances = 1\n    only_from = localhost",
                                 dgram=True))
    senders = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(TIMEOUT)
        senders.append(sock)
    try:
        first = senders[0]
        first.sendto(b"one", ("127.0.0.1", port))
        first.sendto(b"two", ("127.0.0.1", port))   # follows "one" to its server
        for sock in senders[1:]:
            sock.sendto(b"other", ("127.0.0.1", port))
        assert outcomes(log, 3) == (1, ["service_limit", "service_limit"])
        replies = sorted(first.recv(1000).decode().split()[1] for _ in range(2))
        assert replies == ["got=one", "got=two"]
    finally:
        for sock in senders:
            sock.close()
