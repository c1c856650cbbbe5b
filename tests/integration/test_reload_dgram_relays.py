"""A reload keeps a dgram wait = no service's running servers talking to their clients,
and the daemon's stop ends their channels with an EOF they can see.

Real daemon, real datagram servers (tests/helpers/dgram_nowait_server.py), which answer
`pid=PID got=DATA` to every datagram of their client while it keeps sending.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.daemon import HELPERS, DaemonFactory, alive, free_port, wait_until
from tests.integration.test_reload import defaults, reload, service_log

needs_ipv6 = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")


def dgram_service(port: int, **attrs: str) -> str:
    lines = {
        "type": "UNLISTED", "socket_type": "dgram", "protocol": "udp", "port": str(port),
        "wait": "no", "user": "root", "server": sys.executable,
        # Answers every datagram of its client for as long as it keeps sending.
        "server_args": f"{HELPERS / 'dgram_nowait_server.py'} 20",
    }
    lines.update(attrs)
    body = "".join(f"\t{key} = {value}\n" for key, value in lines.items())
    return f"service relayed\n{{\n{body}}}\n"


def ask(client: socket.socket, port: int, data: bytes) -> str:
    client.sendto(data, ("127.0.0.1", port))
    return client.recv(1000).decode()


def check_same_server(daemons: DaemonFactory, tmp_path: Path, before: dict[str, str],
                      after: dict[str, str], started: str) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + dgram_service(port, **before))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        first = ask(client, port, b"one")
        assert first.endswith("got=one")
        pid = first.split()[0]
        log = reload(daemon, defaults(tmp_path) + dgram_service(port, **after), 1)
        assert "readjusting service" in log
        # The client's next datagram goes to the server it has, which answers it.
        assert ask(client, port, b"two") == f"{pid} got=two"
    assert len(re.findall(rf"START: {started} ", service_log(tmp_path))) == 1


def test_a_server_keeps_its_client_when_only_the_ids_case_changes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    check_same_server(daemons, tmp_path, {"id": "Relayed"}, {"id": "relayed"}, "Relayed")


def test_a_server_keeps_answering_when_the_reload_replaces_its_socket(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The wildcard socket is replaced by one bound to the loopback address the client
    # talks to: the server it already has goes on answering, from the new socket.
    check_same_server(daemons, tmp_path, {"flags": "IPv4"},
                      {"flags": "IPv4", "bind": "127.0.0.1"}, "relayed")


@needs_ipv6
def test_a_server_keeps_its_client_when_the_new_socket_is_ipv4(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The dual-stack socket saw the client as ::ffff:127.0.0.1, the IPv4 one sees
    # 127.0.0.1: the same client, still served by its server, answered from IPv4.
    check_same_server(daemons, tmp_path, {"flags": "IPv6"}, {"flags": "IPv4"}, "relayed")


@needs_ipv6
def test_a_server_keeps_its_client_when_the_new_socket_is_dual_stack(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    check_same_server(daemons, tmp_path, {"flags": "IPv4"}, {"flags": "IPv6"}, "relayed")


def test_services_sharing_an_id_each_start_their_own_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    daemons.start_config(defaults(tmp_path) + dgram_service(one, id="shared")
                         + dgram_service(two, id="shared"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        first = ask(client, one, b"one")
        # The same client, another port: that service's own server answers.
        second = ask(client, two, b"two")
        assert second.endswith("got=two") and second.split()[0] != first.split()[0]


def test_a_server_that_closes_its_channel_does_not_cut_its_client_off(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, marker = free_port(), tmp_path / "first-server"
    daemon = daemons.start_config(defaults(tmp_path) + dgram_service(
        port, server_args=f"{HELPERS / 'dgram_closing_server.py'} {marker}"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"one", ("127.0.0.1", port))
        first = int(wait_until(lambda: marker.exists() and marker.read_text(),
                               what="the first server"))
        # Its channel is closed but it runs on: the client's next datagram gets a
        # server that reads it.
        reply = wait_until(lambda: ask_once(client, port, b"two"), what="a reply")
        assert reply.endswith("got=two") and reply.split()[0] != f"pid={first}"
    daemon.wait_for_log(rf"WARNING: service relayed server {first} from (::ffff:)?"
                        r"127\.0\.0\.1 closed its datagram channel")


def test_servers_reading_until_eof_end_when_the_daemon_stops(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # A datagram socket pair says nothing to a server when the daemon closes its end:
    # without the empty datagram it gets at shutdown, such a server would read for ever.
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + dgram_service(
        port, server_args=str(HELPERS / "dgram_until_eof_server.py")))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        reply = ask(client, port, b"one")
    assert reply.endswith("got=one")
    server = int(reply.split()[0].removeprefix("pid="))
    daemon.signal(signal.SIGTERM)
    daemon.wait_exit()
    wait_until(lambda: not alive(server), what="the server's exit")


def ask_once(client: socket.socket, port: int, data: bytes) -> str | None:
    """One datagram, one short wait for the answer (None: none came)."""
    client.sendto(data, ("127.0.0.1", port))
    client.settimeout(1)
    try:
        return client.recv(1000).decode()
    except TimeoutError:
        return None
