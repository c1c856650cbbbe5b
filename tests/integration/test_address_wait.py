"""A service whose bind address is not on the host yet is bound when it appears.

Each test runs the daemon in its own network namespace (`unshare -n`, only the loopback
device with 127.0.0.1 and ::1), adds addresses there with `ip` through `nsenter`, and talks to the
service from inside the namespace. Root only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, namespace_problem, wait_until
from tests.factories import make_service

# The loopback device comes up first: in a namespace without any IPv4 address the
# kernel has no local table yet and lets a bind to any IPv4 address succeed.
UNSHARE = ("unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")
ECHO_CLIENT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family) as s:
    s.settimeout(5)
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"hello, address\\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(100):
        data += chunk
sys.stdout.write(data.decode())
"""


pytestmark = pytest.mark.skipif(namespace_problem("ip", "nsenter") is not None,
                                reason=str(namespace_problem("ip", "nsenter")))


def in_namespace(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(daemon.pid), "-n", *argv],
                          capture_output=True, text=True, timeout=15, check=True)


def add_address(daemon: Daemon, address: str) -> None:
    prefix = "128" if ":" in address else "32"
    in_namespace(daemon, "ip", "link", "set", "lo", "up")
    in_namespace(daemon, "ip", "addr", "add", f"{address}/{prefix}", "dev", "lo")


def echo_from_namespace(daemon: Daemon, address: str, port: int) -> str:
    return in_namespace(daemon, sys.executable, "-c", ECHO_CLIENT, address, str(port)).stdout


def echo_config(address: str, port: int) -> str:
    return (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = late-echo\n"
            f"\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
            f"\tbind = {address}\n\tport = {port}\n}}\n")


def netlink_sockets(pid: int) -> int:
    """How many rtnetlink sockets `pid` holds (its descriptors against the namespace's
    netlink table)."""
    inodes = set()
    with open(f"/proc/{pid}/net/netlink") as table:
        for row in table.read().splitlines()[1:]:
            fields = row.split()
            if len(fields) >= 10 and fields[1] == "0":  # protocol 0: NETLINK_ROUTE
                inodes.add(fields[-1])
    held = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", link)
        if match and match.group(1) in inodes:
            held += 1
    return held


@pytest.mark.parametrize("address", ["10.77.0.1", "fd00:77::1"])
def test_service_starts_serving_when_its_address_appears(daemons: DaemonFactory,
                                                         address: str) -> None:
    port = free_port()
    daemon = daemons.start_config(echo_config(address, port), wrapper=UNSHARE)
    log = daemon.wait_for_log(r"will be activated when address")
    # xinetd's own lines for the failed binds come first, then the wait.
    assert re.search(r"bind failed \(Cannot assign requested address \(errno = 99\)\)\. "
                     r"service = late-echo", log)
    assert "ERROR: Service late-echo failed to start and is deactivated.\n" in log
    assert f"NOTICE: Service late-echo will be activated when address {address} appears" \
        in log
    assert "Started working: 0 available services" in log
    assert netlink_sockets(daemon.pid) == 1

    add_address(daemon, address)
    daemon.wait_for_log(rf"Service late-echo: address {re.escape(address)} appeared, "
                        r"service activated")
    assert echo_from_namespace(daemon, address, port) == "hello, address\n"
    # Nothing waits any more: the address watch is closed.
    wait_until(lambda: netlink_sockets(daemon.pid) == 0, what="netlink socket closed")


def test_other_addresses_leave_it_waiting_quietly(daemons: DaemonFactory) -> None:
    port = free_port()
    daemon = daemons.start_config(echo_config("10.77.0.1", port), wrapper=UNSHARE)
    log = daemon.wait_for_log(r"will be activated when address")
    failed_binds = log.count("bind failed")
    add_address(daemon, "10.77.0.2")
    add_address(daemon, "fd00:77::2")
    # A marker: SIGUSR1's dump line comes after whatever the new addresses caused.
    daemon.signal(signal.SIGUSR1)
    log = daemon.wait_for_log(r"generated state dump")
    assert log.count("bind failed") == failed_binds
    assert "appeared" not in log
    assert netlink_sockets(daemon.pid) == 1

    add_address(daemon, "10.77.0.1")
    daemon.wait_for_log(r"address 10\.77\.0\.1 appeared, service activated")
    assert echo_from_namespace(daemon, "10.77.0.1", port) == "hello, address\n"


def test_daemon_without_stayalive_keeps_running_for_a_waiting_service(
        daemons: DaemonFactory) -> None:
    # Without -dontfork/-stayalive xinetd exits when no service is available; a
    # service that only waits for its address keeps the daemon up.
    port = free_port()
    svc = make_service(id="late-echo", name="echo", types={"INTERNAL", "UNLISTED"},
                       bind="10.77.0.1", port=port)
    daemon = daemons.start_services([svc], wrapper=UNSHARE, dontfork=False)
    daemon.wait_for_log(r"will be activated when address")
    assert "no services. Exiting" not in daemon.log()
    assert daemon.proc.poll() is None
    add_address(daemon, "10.77.0.1")
    daemon.wait_for_log(r"appeared, service activated")
    assert echo_from_namespace(daemon, "10.77.0.1", port) == "hello, address\n"


def test_a_reload_leaving_only_a_waiting_service_keeps_the_daemon(
        daemons: DaemonFactory) -> None:
    # The same after a reload: without -stayalive, no available service would end the
    # daemon, but one waiting for its address will serve.
    port = free_port()
    daemon = daemons.start_master_on(echo_config("127.0.0.1", port), wrapper=UNSHARE)
    daemon.log_path.with_suffix(".conf").write_text(echo_config("10.77.0.1", port))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: ")
    assert "will be activated when address" in daemon.log()
    assert "No available services" not in daemon.log()
    assert daemon.proc.poll() is None
    add_address(daemon, "10.77.0.1")
    daemon.wait_for_log(r"appeared, service activated")
    assert echo_from_namespace(daemon, "10.77.0.1", port) == "hello, address\n"


def test_a_local_route_alone_activates_the_service(daemons: DaemonFactory) -> None:
    # "AnyIP": an address that is on no interface but has a route of type local is
    # bindable. Only the route's notification announces it (no RTM_NEWADDR comes), the
    # same notification that tells a new address's bind will now succeed.
    port = free_port()
    daemon = daemons.start_config(echo_config("10.77.0.1", port), wrapper=UNSHARE)
    daemon.wait_for_log(r"will be activated when address 10\.77\.0\.1 appears")
    in_namespace(daemon, "ip", "route", "add", "local", "10.77.0.1/32", "dev", "lo")
    daemon.wait_for_log(r"Service late-echo: address 10\.77\.0\.1 appeared, "
                        r"service activated")
    assert echo_from_namespace(daemon, "10.77.0.1", port) == "hello, address\n"
    assert netlink_sockets(daemon.pid) == 0


def test_other_bind_errors_still_deactivate(daemons: DaemonFactory) -> None:
    # The port is held by another socket, so the bind fails with EADDRINUSE: no
    # reason to wait, the service is deactivated as in xinetd.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        daemon = daemons.start_config(echo_config("127.0.0.1", port), "-stayalive",
                                      ready=False)
        log = daemon.wait_for_log(r"Service late-echo failed to start and is deactivated")
    assert "Address already in use" in log
    assert "will be activated" not in log
    assert netlink_sockets(daemon.pid) == 0


def test_reload_while_waiting_keeps_one_waiting_service(daemons: DaemonFactory) -> None:
    port = free_port()
    daemon = daemons.start_config(echo_config("10.77.0.1", port), wrapper=UNSHARE)
    daemon.wait_for_log(r"will be activated when address")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"will be activated when address", count=2)
    daemon.wait_for_log(r"Reconfigured")
    add_address(daemon, "10.77.0.1")
    log = daemon.wait_for_log(r"appeared, service activated")
    assert echo_from_namespace(daemon, "10.77.0.1", port) == "hello, address\n"
    assert log.count("appeared, service activated") == 1
    assert netlink_sockets(daemon.pid) == 0

