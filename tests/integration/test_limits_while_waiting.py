"""A request admitted by the limits but waiting for a name lookup (only_from by name,
PEERENV) counts toward instances and per_source meanwhile, as xinetd's forked child
does: a burst of clients never starts more servers than `instances`."""

from __future__ import annotations

import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from pyxinetd.access.resolver import resolve
from tests.daemon import HELPERS, DaemonFactory, free_port, read_log, wait_log_lines, \
    wait_until

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


def gated_by_aclexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """hosts.allow for daemon name `in.gated`: an aclexec check that creates `checking`
    when it starts, then runs until the test creates `gate` (and allows), 30 s at most."""
    gate, checking = tmp_path / "gate", tmp_path / "checking"
    (tmp_path / "hosts.allow").write_text(
        f"in.gated: ALL: aclexec touch {checking}; n=0; "
        f"while [ ! -e {gate} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    return gate, checking


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


def test_a_dgram_wait_request_held_by_an_aclexec_check_keeps_its_slot_under_limit(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The aclexec check runs until the test creates `gate`: meanwhile the admitted
    # datagram holds the only process slot of -limit 1, so the stream client is refused.
    log = tmp_path / "services.log"
    gate, checking = gated_by_aclexec(tmp_path, monkeypatch)
    udp, tcp = free_port(), free_port()
    gated = f"""
service gated
{{
    type = UNLISTED
    socket_type = dgram
    protocol = udp
    port = {udp}
    wait = yes
    user = root
    server = {sys.executable}
    server_args = {HELPERS / 'udp_wait_server.py'}
    bind = 127.0.0.1
    libwrap = in.gated
    log_type = FILE {log}
    log_on_success = PID HOST
    log_on_failure = HOST
}}
"""
    daemon = daemons.start_config(gated + service(tcp, log, "flags = NOLIBWRAP"),
                                  "-limit", "1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(b"x", ("127.0.0.1", udp))
        wait_until(checking.exists, TIMEOUT)
        with socket.create_connection(("127.0.0.1", tcp), timeout=TIMEOUT) as conn:
            assert conn.recv(10) == b""
        wait_log_lines(log, r"FAIL: limited process_limit", 1, TIMEOUT)
        # The held slot is accounted for: the counters agree with what holds them.
        daemon.signal(signal.SIGABRT)
        daemon.wait_for_log(r"Consistency check (passed|detected)")
        assert "Consistency check passed" in daemon.log()
        gate.write_text("")
        assert client.recv(100).decode().endswith("got=x")
    wait_log_lines(log, r"START: gated", 1, TIMEOUT)
    assert "START: limited" not in read_log(log)


def test_a_request_waiting_for_its_access_check_goes_with_its_removed_service(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "services.log"
    gate, checking = gated_by_aclexec(tmp_path, monkeypatch)
    port, other = free_port(), free_port()
    conf = tmp_path / "daemon1.conf"
    daemon = daemons.start_config(service(port, log, "libwrap = in.gated")
                                  + service(other, log, "").replace("limited", "other"))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        wait_until(checking.exists, TIMEOUT)
        conf.write_text(service(other, log, "").replace("limited", "other"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"Reconfigured: new=0 old=1 dropped=1")
        gate.write_text("")
        assert conn.recv(10) == b""     # closed by the reload, nothing started
    daemon.signal(signal.SIGABRT)
    daemon.wait_for_log(r"Consistency check (passed|detected)")
    assert "Consistency check passed" in daemon.log()
    assert "START" not in read_log(log)
