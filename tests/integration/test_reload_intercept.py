"""A reload keeps the running intercepted server (flags = INTERCEPT) of a kept service
served: the daemon goes on reading the service socket for it, and checks the clients
it relays again against the new rules.

Real daemon, real servers (tests/helpers/intercept_server.py, as in test_intercept.py).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_log_lines
from tests.integration.test_intercept import (TIMEOUT, config, exchange, gated_aclexec,
                                            release, tcp_from)
from tests.integration.test_reload import reload


def test_the_running_server_keeps_its_clients_when_only_the_ids_case_changes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, "id = Icept"))
    pid = exchange(tcp_from("127.0.0.2", port))["pid"]
    reload(daemon, config(tmp_path, port, "id = icept"), 1)
    # The same service: its running server is handed the next client.
    assert exchange(tcp_from("127.0.0.2", port))["pid"] == pid


def test_two_services_sharing_an_id_each_keep_their_own_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    second = config(tmp_path, two, "id = shared").split("service icept", 1)[1]
    text = config(tmp_path, one, "id = shared") + "service icept" + second
    daemon = daemons.start_config(text)
    first_pid = exchange(tcp_from("127.0.0.2", one))["pid"]
    second_pid = exchange(tcp_from("127.0.0.2", two))["pid"]
    assert first_pid != second_pid
    reload(daemon, None, 1)
    # Each server goes on being handed its own service's clients.
    assert exchange(tcp_from("127.0.0.2", one))["pid"] == first_pid
    assert exchange(tcp_from("127.0.0.2", two))["pid"] == second_pid


def udp_from(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(TIMEOUT)
    return sock


def test_a_reload_judges_the_running_servers_senders_by_the_new_rules(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # 127.0.0.2 starts the server, 127.0.0.3 is refused, 127.0.0.4 admitted; the
    # reload then refuses 127.0.0.2 and admits 127.0.0.3.
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, "no_access = 127.0.0.3",
                                         socket_type="dgram", count=4))
    a, r, b = udp_from("127.0.0.2"), udp_from("127.0.0.3"), udp_from("127.0.0.4")
    with a, r, b:
        a.sendto(b"a1", ("127.0.0.1", port))
        pid = a.recv(1000).decode().split()[0]
        r.sendto(b"r1", ("127.0.0.1", port))
        b.sendto(b"b1", ("127.0.0.1", port))
        assert b.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=b1"
        reload(daemon, config(tmp_path, port, "no_access = 127.0.0.2",
                              socket_type="dgram", count=4), 1)
        # The newly refused sender loses its channel; the server, which other
        # senders still use, keeps running although that sender started it.
        a.sendto(b"a2", ("127.0.0.1", port))
        r.sendto(b"r2", ("127.0.0.1", port))
        assert r.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=r2"
        b.sendto(b"b2", ("127.0.0.1", port))
        assert b.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=b2"
        # Its fourth datagram answered, the server exits: a2 never reached it.
        text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {pid}")
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            a.recv(1000)
        r.setblocking(False)
        with pytest.raises(BlockingIOError):
            r.recv(1000)    # r1 never reached it either
    assert re.findall(r"(?:START|FAIL): icept .*", text) == [
        f"START: icept {pid} from=127.0.0.2",
        "FAIL: icept address from=127.0.0.3",
        f"START: icept {pid} from=127.0.0.4",
        "FAIL: icept address from=127.0.0.2",
        f"START: icept {pid} from=127.0.0.3",
    ]
    assert re.search(r"WARNING: service icept client 127\.0\.0\.2 of server \d+ no "
                     r"longer allowed \(reason=address\); disconnecting", daemon.log())


def test_a_reload_disconnects_a_relayed_client_the_new_rules_refuse(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port))
    banned = tcp_from("127.0.0.2", port)
    with banned:
        greeting = b""
        while not greeting.endswith(b"\n"):
            data = banned.recv(4096)
            assert data, f"closed after {greeting!r}"
            greeting += data
        pid = greeting.split()[0].decode()
        reload(daemon, config(tmp_path, port, "no_access = 127.0.0.2"), 1)
        # The server, still busy with that client, sees it leave and serves the next.
        assert banned.recv(4096) == b""
    assert f"pid={exchange(tcp_from('127.0.0.4', port))['pid']}" == pid
    assert re.search(rf"WARNING: service icept client 127\.0\.0\.2 of server "
                     rf"{pid.split('=')[1]} no longer allowed \(reason=address\); "
                     rf"disconnecting", daemon.log())


@pytest.mark.parametrize("change", ["flag", "service"])
def test_a_held_client_closed_by_a_reload_gets_a_line_that_says_why(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    # A client admitted after its server exited waits for the next one; a reload that
    # removes INTERCEPT (the next server reads the socket itself) or the service
    # closes it, with a WARNING naming it and the reason (before: without a word).
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port, other = free_port(), free_port()
    daemon = daemons.start_config(config(tmp_path, port, "libwrap = in.icept", count=1))
    with tcp_from("127.0.0.5", port) as late:
        first = exchange(tcp_from("127.0.0.2", port))["pid"]
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={first}")
        if change == "flag":
            text = config(tmp_path, port, "libwrap = in.icept", count=1).replace(
                "\tflags = INTERCEPT\n", "")
            why = "a reload removed flags = INTERCEPT"
        else:
            text = config(tmp_path, other, "libwrap = in.icept", count=1).replace(
                "service icept", "service other").replace("type = UNLISTED",
                                                          "type = UNLISTED\n\tid = other")
            why = "a reload removed the service or replaced its socket"
        reload(daemon, text, 1)
        release(gate)
        try:
            assert late.recv(4096) == b""
        except ConnectionResetError:
            pass
    daemon.wait_for_log(rf"WARNING: .*service icept client 127\.0\.0\.5 held for the next "
                        rf"server: {re.escape(why)}; disconnecting")
