"""Replies on a wildcard-bound datagram service leave from the address the request was
sent to, not from the kernel's choice of source for the route back.

Each test runs the daemon in its own network namespace (`unshare -n`) where the host
has two addresses of one family on `lo` (127.0.0.1 and 127.0.0.2; 2001:db8::1 and
2001:db8::2): a client bound to the first sends to the second from a connect()ed UDP
socket, which only accepts datagrams from the address it connected to. The kernel's
choice of source for a reply to the first address is the first address itself, so a
reply that does not name its source never reaches the client. Root only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port, namespace_problem

pytestmark = pytest.mark.skipif(namespace_problem("ip", "nsenter") is not None,
                                reason=str(namespace_problem("ip", "nsenter")))

UNSHARE = ("unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")
BUILTINS = ("echo", "daytime", "time", "chargen")
# The names the relayed servers' replies are checked under: dgram/nowait, INTERCEPT.
RELAY = "relay"
INTERCEPT = "intercept"
SERVERS = (RELAY, INTERCEPT)
INTERCEPT_FLAG = "\tflags = INTERCEPT\n"

# Sends one datagram per (name, port) from a socket bound to argv[1] and connect()ed to
# argv[2]; prints, as JSON, what each received (or null when nothing came).
CLIENT = """
import json, socket, sys
source, target, probes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
family = socket.AF_INET6 if ":" in source else socket.AF_INET
replies = {}
for name, port in probes:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.bind((source, 0))
        s.connect((target, port))
        s.send(b"hello " + name.encode())
        try:
            replies[name] = s.recv(70000).decode("latin-1")
        except TimeoutError:
            replies[name] = None
print(json.dumps(replies))
"""


def config(ports: dict[str, int], flags: str) -> str:
    blocks = []
    for name in BUILTINS:
        blocks.append(f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tid = {name}-dgram\n"
                      f"\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes\n"
                      f"\tport = {ports[name]}\n{flags}}}\n")
    blocks.append(f"service {RELAY}\n{{\n\ttype = UNLISTED\n\tsocket_type = dgram\n"
                  f"\tprotocol = udp\n\twait = no\n\tuser = root\n\tport = {ports[RELAY]}\n"
                  f"\tserver = {sys.executable}\n"
                  f"\tserver_args = -I -S {HELPERS / 'dgram_nowait_server.py'}\n{flags}}}\n")
    blocks.append(f"service {INTERCEPT}\n{{\n\ttype = UNLISTED\n\tsocket_type = dgram\n"
                  f"\tprotocol = udp\n\twait = yes\n\tuser = root\n"
                  f"\tport = {ports[INTERCEPT]}\n\tserver = {sys.executable}\n"
                  f"\tserver_args = -I -S {HELPERS / 'intercept_server.py'} 1 5\n"
                  f"{flags.replace('flags =', 'flags = INTERCEPT') or INTERCEPT_FLAG}}}\n")
    return "".join(blocks)


def in_namespace(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(daemon.pid), "-n", *argv],
                          capture_output=True, text=True, timeout=60, check=True)


def ask_all(daemons: DaemonFactory, flags: str, source: str, target: str,
            addresses: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Start a daemon serving every probe on a wildcard address, then ask each from
    `source` to `target`; what each answered."""
    ports = {name: free_port() for name in (*BUILTINS, *SERVERS)}
    daemon = daemons.start_config(config(ports, flags), wrapper=UNSHARE)
    for address in addresses:
        in_namespace(daemon, "ip", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
    probes = json.dumps([[name, port] for name, port in ports.items()])
    done = in_namespace(daemon, sys.executable, "-c", CLIENT, source, target, probes)
    replies: dict[str, str | None] = json.loads(done.stdout)
    return replies


def check(replies: dict[str, str | None]) -> None:
    assert replies["echo"] == "hello echo"
    assert replies["daytime"] is not None and replies["daytime"].endswith("\r\n")
    assert replies["time"] is not None and len(replies["time"]) == 4
    assert replies["chargen"] is not None and len(replies["chargen"]) == 1024
    for name in SERVERS:
        assert replies[name] is not None and replies[name].endswith(f"got=hello {name}")


def test_ipv4_service_answers_from_the_address_asked(daemons: DaemonFactory) -> None:
    check(ask_all(daemons, "\tflags = IPv4\n", "127.0.0.1", "127.0.0.2"))


def test_ipv6_service_answers_from_the_address_asked(daemons: DaemonFactory) -> None:
    check(ask_all(daemons, "\tflags = IPv6\n", "2001:db8::1", "2001:db8::2",
                  ("2001:db8::1", "2001:db8::2")))


def test_dual_stack_service_answers_ipv4_clients_from_the_address_asked(
        daemons: DaemonFactory) -> None:
    # The default: an IPv6 socket on `::`, which IPv4 clients reach as ::ffff:a.b.c.d.
    check(ask_all(daemons, "", "127.0.0.1", "127.0.0.2"))


BROADCAST_CLIENT = """
import socket, sys
port = int(sys.argv[1])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind(("10.9.0.1", 0))
    s.sendto(b"hello broadcast", ("10.9.0.255", port))
    data, sender = s.recvfrom(100)
print(sender[0], data.decode())
"""


@pytest.mark.parametrize("flags", ["\tflags = IPv4\n", ""], ids=["ipv4", "dual-stack"])
def test_broadcast_request_is_answered_from_the_interface_address(
        daemons: DaemonFactory, flags: str) -> None:
    # A broadcast destination cannot be a source: the reply leaves from the address of
    # the interface the request came in on.
    ports = {name: free_port() for name in (*BUILTINS, *SERVERS)}
    daemon = daemons.start_config(config(ports, flags), wrapper=UNSHARE)
    for step in (["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                 ["link", "set", "d0", "up"], ["link", "set", "d1", "up"],
                 ["addr", "add", "10.9.0.1/24", "brd", "+", "dev", "d0"]):
        in_namespace(daemon, "ip", *step)
    done = in_namespace(daemon, sys.executable, "-c", BROADCAST_CLIENT, str(ports["echo"]))
    assert done.stdout == "10.9.0.1 hello broadcast\n"


MULTICAST_CLIENT = """
import socket, sys
group, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    for _ in range(5):      # bounded: a datagram lost on the way is sent again
        s.sendto(b"hello group", (group, port))
        try:
            print(s.recv(100).decode())
            break
        except TimeoutError:
            continue
"""


def test_a_service_bound_to_a_multicast_group_joins_it(daemons: DaemonFactory) -> None:
    # `bind = 239.1.2.3` (as xinetd): the socket is bound to the group's address and
    # joins the group, so datagrams sent to the group reach it. Without the join,
    # nothing answers.
    group, port = "239.1.2.3", free_port()
    unshare = ("unshare", "-n", "--", "sh", "-c",
               "ip link set lo up && ip link set lo multicast on && "
               'ip route add 239.0.0.0/8 dev lo && exec "$@"', "sh")
    daemon = daemons.start_config(
        f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = echo-dgram\n"
        f"\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes\n\tport = {port}\n"
        f"\tbind = {group}\n}}\n", wrapper=unshare)
    # The kernel's list of the groups joined on lo: 239.1.2.3, in its byte order.
    igmp = in_namespace(daemon, "cat", "/proc/net/igmp").stdout
    assert "030201EF" in igmp, igmp
    done = in_namespace(daemon, sys.executable, "-c", MULTICAST_CLIENT, group, str(port))
    assert done.stdout.strip() == "hello group"
