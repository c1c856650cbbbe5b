"""A reload keeps the running intercepted server (flags = INTERCEPT) of a kept service
served: the daemon goes on reading the service socket for it, and checks the clients
it relays again against the new rules.

Real daemon, real servers (tests/helpers/intercept_server.py, as in test_intercept.py).
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_log_lines
from tests.integration.test_intercept import (closed, config, exchange, gated_aclexec,
                                            release, server_exits_while_held, tcp_from,
                                            udp_from)
from tests.integration.test_reload import conf_path, reload


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
        pid = read_lines(banned, 1)[0].split()[0]
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
            why = "a reload removed the service"
        reload(daemon, text, 1)
        release(gate)
        assert closed(late)
    daemon.wait_for_log(rf"WARNING: .*service icept client 127\.0\.0\.5 held for the next "
                        rf"server: {re.escape(why)}; disconnecting")


def replaced_socket(text: str) -> str:
    """The same service on a new socket: the same address, but on a dual-stack IPv6
    socket (its IPv4-mapped form), where IPv4 clients reach it as before."""
    assert "\tbind = 127.0.0.1\n" in text
    return text.replace("\tbind = 127.0.0.1\n", "\tbind = ::ffff:127.0.0.1\n")


def read_lines(conn: socket.socket, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        chunk = conn.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data.decode().splitlines()


def test_clients_a_replaced_sockets_server_left_go_to_the_new_sockets_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Two clients wait, relayed, for a busy server that serves one client per start;
    # a reload replaces the socket (its server ends) and refuses one of them. Before,
    # both were closed with a WARNING; now the one the new rules admit is served by the
    # new socket's server, with what it had sent, and only the other is closed.
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(config(tmp_path, port, count=1))
    with tcp_from("127.0.0.2", port) as busy, tcp_from("127.0.0.4", port) as kept, \
            tcp_from("127.0.0.3", port) as banned:
        old = read_lines(busy, 1)[0].split()[0]
        kept.sendall(b"early\n")
        banned.sendall(b"early\n")
        wait_log_lines(log, rf"START: icept {old} from=127\.0\.0\.3")
        wait_log_lines(log, rf"START: icept {old} from=127\.0\.0\.4")
        reload(daemon, replaced_socket(config(tmp_path, port, "no_access = 127.0.0.3",
                                              count=1)), 1)
        assert closed(busy)     # its server was ended with the old socket
        greeting, echoed = read_lines(kept, 2)[:2]
        assert greeting.split()[0] != old and echoed == "early"
        assert closed(banned)
    daemon.wait_for_log(r"WARNING: .*service icept client 127\.0\.0\.3 of the next server "
                        r"no longer allowed \(reason=address\); disconnecting")
    assert not re.search(r"client 127\.0\.0\.4 .*disconnecting", daemon.log())


def test_a_client_admitted_late_goes_to_the_new_sockets_server(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its verdict comes after a reload replaced the socket: it reaches the new
    # socket's server (before: closed with a WARNING).
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    text = config(tmp_path, port, "libwrap = in.icept", count=1)
    daemon = daemons.start_config(text)
    with tcp_from("127.0.0.5", port) as late:
        first = exchange(tcp_from("127.0.0.2", port))["pid"]
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={first}")
        reload(daemon, replaced_socket(text), 1)
        release(gate)
        second = exchange(late)["pid"]
    assert second != first
    assert "disconnecting" not in daemon.log()


@pytest.mark.parametrize("change", ["flag", "service", "socket"])
def test_held_datagrams_a_reload_drops_get_one_line_or_reach_the_new_socket(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    # A sender admitted after its server exited waits for the next one with its
    # datagrams. A reload that removes INTERCEPT or the service drops them with one
    # WARNING for all (before: without a word); one that replaces the socket hands
    # them to the new socket's server.
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port, other = free_port(), free_port()
    text = config(tmp_path, port, "libwrap = in.icept", socket_type="dgram", count=2)
    daemon = daemons.start_config(text)
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.5") as late:
        first = server_exits_while_held(a, late, port, tmp_path / "services.log",
                                        (b"l1", b"l2"))
        if change == "flag":
            reload(daemon, text.replace("\tflags = INTERCEPT\n", ""), 1)
            why = "a reload removed flags = INTERCEPT"
        elif change == "service":
            reload(daemon, config(tmp_path, other, socket_type="dgram").replace(
                "service icept", "service other"), 1)
            why = "a reload removed the service"
        else:
            reload(daemon, replaced_socket(text), 1)
            release(gate)
            replies = sorted(late.recv(1000).decode() for _ in range(2))
            second = replies[0].split()[0]
            assert second != first
            # The server's own socket is of the new socket's family (IPv6 now):
            # what it sees is the daemon's relay on ::1.
            assert replies == [f"{second} peer=::1 got=l1", f"{second} peer=::1 got=l2"]
            assert "held for the next server dropped" not in daemon.log()
            return
        release(gate)
    daemon.wait_for_log(rf"WARNING: .*service icept: 2 datagrams from 127\.0\.0\.5 held for "
                        rf"the next server dropped: {re.escape(why)}")
    assert len(re.findall(r"held for the next server dropped", daemon.log())) == 1


def test_a_sender_admitted_before_a_reload_is_judged_by_the_new_rules(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its verdict, asked under the old rules, comes after the server exited and a
    # reload (keeping the socket) refused it: it is judged again and dropped, with the
    # WARNING of a reload's recheck (before: it kept the old verdict and started the
    # next server).
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    log = tmp_path / "services.log"
    text = config(tmp_path, port, "libwrap = in.icept", socket_type="dgram", count=2)
    daemon = daemons.start_config(text)
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.5") as late:
        first = server_exits_while_held(a, late, port, log)
        reload(daemon, config(tmp_path, port, "libwrap = in.icept", "no_access = 127.0.0.5",
                              socket_type="dgram", count=1), 1)
        release(gate)
        daemon.wait_for_log(r"WARNING: .*service icept client 127\.0\.0\.5 of the next "
                            r"server no longer allowed \(reason=address\); disconnecting")
        # The next server is a's: a held sender would have been served first.
        a.sendto(b"a3", ("127.0.0.1", port))
        second = a.recv(1000).decode().split()[0]
        assert second != first
    text = wait_log_lines(log, rf"EXIT: icept status=0 {second}")
    assert re.findall(r"START: icept .*", text) == [f"START: icept {first} from=127.0.0.2",
                                                    f"START: icept {second} from=127.0.0.2"]


@pytest.mark.parametrize("socket_type", ["stream", "dgram"])
def test_a_late_client_of_a_replaced_socket_without_intercept_is_told_the_flag_went(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        socket_type: str) -> None:
    # One reload gives the service another address and removes INTERCEPT: the client
    # whose verdict comes after it is closed (its datagrams dropped) because the flag
    # went, not because the service did, which the reload kept.
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    # A datagram server answers two: the late sender's datagram comes between them,
    # so that the running server's interceptor holds it (server_exits_while_held).
    count = 1 if socket_type == "stream" else 2
    text = config(tmp_path, port, "libwrap = in.icept", socket_type=socket_type, count=count)
    daemon = daemons.start_config(text)
    late: socket.socket
    if socket_type == "stream":
        late = tcp_from("127.0.0.5", port)
        first = "pid=" + exchange(tcp_from("127.0.0.2", port))["pid"]
    else:
        late = udp_from("127.0.0.5")
        with udp_from("127.0.0.2") as a:
            # Its verdict waits for the gate.
            first = server_exits_while_held(a, late, port, tmp_path / "services.log")
    with late:
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {first}")
        reload(daemon, config(tmp_path, port, "libwrap = in.icept", socket_type=socket_type,
                              count=count, bind="127.0.0.9").replace(
                                  "\tflags = INTERCEPT\n", ""), 1)
        release(gate)
        why = re.escape("a reload removed flags = INTERCEPT")
        if socket_type == "stream":
            daemon.wait_for_log(rf"WARNING: .*service icept client 127\.0\.0\.5 held for "
                                rf"the next server: {why}; disconnecting")
        else:
            daemon.wait_for_log(rf"WARNING: .*service icept: 1 datagram from 127\.0\.0\.5 "
                                rf"held for the next server dropped: {why}")
    assert "a reload removed the service" not in daemon.log()


@pytest.mark.parametrize("socket_type", ["stream", "dgram"])
def test_a_verdict_asked_before_a_reload_is_judged_by_the_new_rules_while_the_server_runs(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        socket_type: str) -> None:
    # Its verdict, asked under the old rules, comes after a reload (keeping the socket)
    # refused it, while the server still runs: it never reaches that server (before:
    # relayed to it, with a START line, by the old verdict).
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(config(tmp_path, port, "libwrap = in.icept",
                                         socket_type=socket_type, count=3))
    if socket_type == "stream":
        with tcp_from("127.0.0.5", port) as late:
            first = "pid=" + exchange(tcp_from("127.0.0.2", port))["pid"]
            reload(daemon, config(tmp_path, port, "libwrap = in.icept",
                                  "no_access = 127.0.0.5", count=3), 1)
            release(gate)
            assert closed(late)
        # The server still runs: it serves the next client.
        assert "pid=" + exchange(tcp_from("127.0.0.2", port))["pid"] == first
    else:
        with udp_from("127.0.0.2") as a, udp_from("127.0.0.5") as late:
            a.sendto(b"a1", ("127.0.0.1", port))
            first = a.recv(1000).decode().split()[0]
            late.sendto(b"l1", ("127.0.0.1", port))     # its verdict waits for the gate
            reload(daemon, config(tmp_path, port, "libwrap = in.icept",
                                  "no_access = 127.0.0.5", socket_type="dgram", count=3), 1)
            release(gate)
            daemon.wait_for_log(r"WARNING: .*service icept client 127\.0\.0\.5 of the "
                                r"next server no longer allowed \(reason=address\)")
            # The same server answers a's next datagrams; l1 never reached it.
            a.sendto(b"a2", ("127.0.0.1", port))
            assert a.recv(1000).decode() == f"{first} peer=127.0.0.1 got=a2"
            a.sendto(b"a3", ("127.0.0.1", port))
            assert a.recv(1000).decode() == f"{first} peer=127.0.0.1 got=a3"
            late.setblocking(False)
            with pytest.raises(BlockingIOError):
                late.recv(1000)
    daemon.wait_for_log(r"WARNING: .*service icept client 127\.0\.0\.5 of the next server "
                        r"no longer allowed \(reason=address\); disconnecting")
    assert "from=127.0.0.5" not in log.read_text()


def test_clients_waiting_for_a_socket_still_binding_go_to_the_next_reloads_socket(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A reload gives the service an address whose port is taken: its bind is retried
    # while the client its old server left waits for the new socket. A second reload
    # gives it a free address before the retries end: the client is served there
    # (before: closed with "the service's new socket is not bound").
    monkeypatch.setenv("XINETD_BIND_DELAY", "500000")   # ten retries over 5 s
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(config(tmp_path, port, count=1))
    with socket.socket() as taken, tcp_from("127.0.0.2", port) as busy, \
            tcp_from("127.0.0.4", port) as kept:
        taken.bind(("127.0.0.9", port))
        taken.listen()
        old = read_lines(busy, 1)[0].split()[0]
        kept.sendall(b"early\n")
        wait_log_lines(log, rf"START: icept {old} from=127\.0\.0\.4")
        conf_path(daemon).write_text(config(tmp_path, port, count=1, bind="127.0.0.9"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"NOTICE: bind retry attempt 1\n")
        # The old server ended with its socket: kept waits for the new one.
        wait_log_lines(log, rf"EXIT: icept signal=\d+ {old}")
        conf_path(daemon).write_text(config(tmp_path, port, count=1, bind="127.0.0.10"))
        daemon.signal(signal.SIGHUP)
        greeting, echoed = read_lines(kept, 2)[:2]
        assert greeting.split()[0] != old and echoed == "early"
    daemon.wait_for_log(r"Reconfigured: ", count=2)
    assert "disconnecting" not in daemon.log()


@pytest.mark.parametrize("change", ["refused", "twisted elsewhere", "removed"])
def test_a_twist_asked_before_a_reload_follows_the_new_rules(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    # hosts.allow's aclexec command fails once the gate opens, after a reload: the
    # hosts.deny rule after it, a twist, would decide. The new rules refuse the
    # client, send it to another twist, or the service is gone: before, the old twist
    # answered it in every case.
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    (tmp_path / "hosts.allow").write_text(
        f"in.icept: 127.0.0.5: aclexec /bin/sh -c 'head -c 1 {gate} >/dev/null; exit 1'\n")
    (tmp_path / "hosts.deny").write_text("in.icept: 127.0.0.5: twist /bin/echo old %a\n"
                                         "in.other: 127.0.0.5: twist /bin/echo new %a\n")
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(config(tmp_path, port, "libwrap = in.icept"))
    with tcp_from("127.0.0.5", port) as late:
        first = exchange(tcp_from("127.0.0.2", port))["pid"]
        if change == "refused":
            new = config(tmp_path, port, "libwrap = in.icept", "no_access = 127.0.0.5")
        elif change == "twisted elsewhere":
            new = config(tmp_path, port, "libwrap = in.other")
        else:
            new = config(tmp_path, free_port()).replace("service icept", "service other")
        reload(daemon, new, 1)
        release(gate)
        answer = b""
        while chunk := late.recv(4096):
            answer += chunk
    if change == "twisted elsewhere":
        assert answer == b"new 127.0.0.5\n"
        # The server still runs: it serves the next client.
        assert exchange(tcp_from("127.0.0.2", port))["pid"] == first
        return
    assert answer == b""
    if change == "refused":
        wait_log_lines(log, r"FAIL: icept address from=127\.0\.0\.5")
    else:
        daemon.wait_for_log(r"WARNING: .*service icept client 127\.0\.0\.5 held for the next "
                            r"server: a reload removed the service; disconnecting")
    assert "twist 127.0.0.5 to /bin/echo old" not in daemon.log()
