"""Listening sockets through a real daemon: family and v6only, the peer a server sees,
NODELAY/KEEPALIVE, SO_REUSEADDR across a restart, accept back-off on EMFILE, raw and
seqpacket services, and bind retries that never block the loop (reference §4.2, §4.3).

Behaviour is checked first (a client connects or is refused); the listening address
`ss` shows is checked as well when `ss` is installed (`*:P` is a dual-stack socket,
`[::]:P` a v6-only one).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pyxinetd.master import MasterOptions
from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port, wait_until
from tests.helpers.procs import receive_queue
from tests.factories import make_service

TIMEOUT = 10.0
# Services whose binds retry at once: the more, the longer their retries last.
SERVICES_RETRYING = 20
PROBE = HELPERS / "listener_probe.py"
RESEND_AFTER = 0.5
# Probe servers start without site-packages or PYTHON* variables: quicker, same report.
FAST = "-S -E"
# A protocol number nothing else on a test machine listens for (xtp).
RAW_PROTOCOL = ("xtp", 36)


def _have_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _have_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this machine")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")


def free_ports(count: int) -> list[int]:
    """Ports free for TCP on 127.0.0.1 and ::1 (a dual-stack bind) and for UDP on every
    IPv4 address, all different."""
    def udp_everywhere(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("0.0.0.0", port))

    found: list[int] = []
    for _ in range(200):
        if len(found) == count:
            return found
        port = free_port()
        try:
            udp_everywhere(port)
        except OSError:
            continue
        found.append(port)
    raise RuntimeError("no free ports")


# What each kind of service runs: stream/nowait and dgram/nowait servers report on
# their fd 1; a dgram/wait server reads the datagram itself and answers its sender.
KINDS = {
    "stream": {"socket_type": "stream", "wait": "no", "server_args": f"{FAST} {PROBE} report"},
    "dgram": {"socket_type": "dgram", "wait": "yes", "server_args": f"{FAST} {PROBE} dgram"},
    "dgram_nowait": {"socket_type": "dgram", "wait": "no",
                     "server_args": f"{FAST} {PROBE} report"},
}


def block(name: str, port: int, kind: str = "stream", **attrs: str) -> str:
    """One `service` entry of an UNLISTED service running the probe."""
    lines = {"type": "UNLISTED", "port": str(port), "user": "root",
             "server": sys.executable, **KINDS[kind], **attrs}
    body = "".join(f"    {k} = {v}\n" for k, v in lines.items())
    return f"service {name}\n{{\n{body}}}\n"


def ask(conn: socket.socket) -> bytes:
    """One datagram request, sent again until answered: a dgram/wait service discards
    what arrives while its previous server runs (xinetd's drain), as designed."""
    deadline = time.monotonic() + TIMEOUT
    conn.settimeout(RESEND_AFTER)
    while True:
        conn.send(b"probe")
        try:
            return conn.recv(4096)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def fetch(host: str, port: int, kind: str = "stream") -> dict[str, object] | None:
    """The probe's report for one request, or None when the request is refused
    (a TCP RST, or for UDP the ICMP port unreachable a connected socket reports)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    stream = kind == "stream"
    with socket.socket(family, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM) as conn:
        conn.settimeout(TIMEOUT)
        try:
            conn.connect((host, port))
            if stream:
                chunks = []
                while data := conn.recv(4096):
                    chunks.append(data)
                text = b"".join(chunks)
            else:
                text = ask(conn)
        except ConnectionRefusedError:
            return None
    report: dict[str, object] = json.loads(text)
    return report


def listening_address(port: int, kind: str = "stream") -> str | None:
    """The local address `ss` shows for the listener on `port`, when ss exists."""
    if shutil.which("ss") is None:
        return None
    which = "-Hltn" if kind == "stream" else "-Hlun"
    out = subprocess.run(["ss", which, f"sport = :{port}"], capture_output=True,
                         text=True, timeout=TIMEOUT, check=True).stdout
    addresses = [line.split()[3] for line in out.splitlines() if line.strip()]
    assert len(addresses) == 1, out
    return addresses[0]


def start_limited(factory: DaemonFactory, services: list[object], nofile: int) -> Daemon:
    """Run a Master under RLIMIT_NOFILE soft = hard = `nofile`, set before exec (the
    master raises its soft limit to the hard one at start, so both are lowered)."""
    tmp = factory.tmp_path
    log_path = tmp / "limited.log"
    spec = tmp / "limited.pickle"
    spec.write_bytes(pickle.dumps((services, replace(MasterOptions(dontfork=True),
                                                     filelog=str(log_path)))))
    command = [sys.executable, str(HELPERS / "run_master.py"), str(spec)]
    limit = (f"import resource, os, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
             f"({nofile}, {nofile})); os.execv(sys.executable, {command!r})")
    with open(tmp / "limited.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", limit], stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, start_new_session=True, cwd=tmp)
    daemon = Daemon(proc, log_path)
    factory.daemons.append(daemon)
    daemon.wait_ready()
    return daemon


# -- 1, 2, 3: family choice, the peer a server sees, NODELAY/KEEPALIVE ------------------


@dataclass(frozen=True)
class FamilyCase:
    name: str
    attrs: dict[str, str]
    ipv4: str | None            # REMOTE_HOST for a 127.0.0.1 client, None when refused
    ipv6: bool                  # ::1 served
    shown: str                  # local address in `ss`, with P for the port
    kind: str = "stream"        # a key of KINDS


FAMILY_CASES = [
    FamilyCase("dual", {}, "::ffff:127.0.0.1", True, "*:P"),
    FamilyCase("flag_ipv4", {"flags": "IPv4"}, "127.0.0.1", False, "0.0.0.0:P"),
    FamilyCase("flag_ipv6", {"flags": "IPv6"}, "::ffff:127.0.0.1", True, "*:P"),
    FamilyCase("flags_both", {"flags": "IPv4 IPv6"}, "::ffff:127.0.0.1", True, "*:P"),
    FamilyCase("bind_v6", {"bind": "::1"}, None, True, "[::1]:P"),
    FamilyCase("bind_v4", {"bind": "127.0.0.1"}, "127.0.0.1", False, "127.0.0.1:P"),
    FamilyCase("interface_v4", {"interface": "127.0.0.1"}, "127.0.0.1", False,
               "127.0.0.1:P"),
    FamilyCase("v6only_yes", {"v6only": "yes"}, None, True, "[::]:P"),
    # xinetd 2.3.15.3 turns V6ONLY on for `v6only = no` too; the manual says dual stack.
    FamilyCase("v6only_no", {"v6only": "no"}, "::ffff:127.0.0.1", True, "*:P"),
    FamilyCase("ipv4_v6only", {"flags": "IPv4", "v6only": "yes"}, "127.0.0.1", False,
               "0.0.0.0:P"),
    FamilyCase("nodelay", {"flags": "NODELAY"}, "::ffff:127.0.0.1", True, "*:P"),
    FamilyCase("keepalive", {"flags": "IPv4 KEEPALIVE"}, "127.0.0.1", False, "0.0.0.0:P"),
    FamilyCase("udp_dual", {}, "::ffff:127.0.0.1", True, "*:P", "dgram"),
    FamilyCase("udp_ipv4", {"flags": "IPv4"}, "127.0.0.1", False, "0.0.0.0:P", "dgram"),
    FamilyCase("udp_bind_v6", {"bind": "::1"}, None, True, "[::1]:P", "dgram"),
    FamilyCase("udp_v6only_yes", {"v6only": "yes"}, None, True, "[::]:P", "dgram"),
    FamilyCase("udp_v6only_no", {"v6only": "no"}, "::ffff:127.0.0.1", True, "*:P", "dgram"),
    FamilyCase("udp_nowait_dual", {}, "::ffff:127.0.0.1", True, "*:P", "dgram_nowait"),
    FamilyCase("udp_nowait_ipv4", {"flags": "IPv4"}, "127.0.0.1", False, "0.0.0.0:P",
               "dgram_nowait"),
]


@dataclass
class Running:
    daemon: Daemon
    ports: dict[str, int]


@pytest.fixture(scope="module")
def family_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if not HAVE_IPV6:
        pytest.skip("no IPv6 loopback on this machine")
    factory = DaemonFactory(tmp_path_factory.mktemp("families"))
    ports = dict(zip((c.name for c in FAMILY_CASES), free_ports(len(FAMILY_CASES))))
    conf = "".join(block(c.name, ports[c.name], c.kind, **c.attrs) for c in FAMILY_CASES)
    try:
        daemon = factory.start_config(conf)
        yield Running(daemon, ports)
    finally:
        factory.stop_all()


@pytest.mark.parametrize("case", FAMILY_CASES, ids=lambda c: c.name)
def test_family_choice(family_daemon: Running, case: FamilyCase) -> None:
    port = family_daemon.ports[case.name]
    shown = listening_address(port, case.kind)
    if shown is not None:
        assert shown == case.shown.replace("P", str(port))
    service_family = socket.AF_INET6 if case.ipv6 else socket.AF_INET

    four = fetch("127.0.0.1", port, case.kind)
    if case.ipv4 is None:
        assert four is None, f"{case.name}: an IPv4 client was served"
    else:
        assert four is not None, f"{case.name}: an IPv4 client was refused"
        # REMOTE_HOST is the address xinetd logs.
        assert four["remote_host"] == case.ipv4
        if case.kind == "stream":
            # The accepted socket is made plain IPv4 (IPV6_ADDRFORM), so the server's
            # getpeername() gives 127.0.0.1 either way.
            assert four["family"] == socket.AF_INET
            assert four["peer"][0] == "127.0.0.1"  # type: ignore[index]
        elif case.kind == "dgram":
            # A wait = yes server reads the service socket itself.
            assert four["family"] == service_family
            assert four["peer"][0] == case.ipv4  # type: ignore[index]
        else:
            assert four["family"] == socket.AF_UNIX

    if case.kind == "dgram":
        # Its server must be gone, or the drain that follows its exit eats the request.
        wait_until(lambda: not family_daemon.daemon.children(), TIMEOUT,
                   what="the dgram server reaped")
    six = fetch("::1", port, case.kind)
    if case.ipv6:
        assert six is not None, f"{case.name}: ::1 was refused"
        assert six["remote_host"] == "::1"
        if case.kind != "dgram_nowait":
            assert six["family"] == socket.AF_INET6
            assert six["peer"][0] == "::1"  # type: ignore[index]
    else:
        assert six is None, f"{case.name}: an IPv6 client was served"


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss is not installed")
def test_stream_listeners_use_xinetds_backlog(family_daemon: Running) -> None:
    for case in FAMILY_CASES:
        if case.kind != "stream":
            continue
        port = family_daemon.ports[case.name]
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=TIMEOUT, check=True).stdout
        # For a listener, ss shows the backlog as Send-Q.
        assert out.split()[2] == "64", out


def test_nodelay_and_keepalive_reach_the_server(family_daemon: Running) -> None:
    ports = family_daemon.ports
    plain = fetch("::1", ports["dual"])
    mapped = fetch("127.0.0.1", ports["dual"])
    nodelay6 = fetch("::1", ports["nodelay"])
    nodelay_mapped = fetch("127.0.0.1", ports["nodelay"])
    keepalive = fetch("127.0.0.1", ports["keepalive"])
    for report in (plain, mapped):
        assert report is not None
        assert (report["nodelay"], report["keepalive"]) == (0, 0)
    for report in (nodelay6, nodelay_mapped):
        assert report is not None
        assert report["nodelay"] != 0 and report["keepalive"] == 0
    assert keepalive is not None
    assert keepalive["keepalive"] != 0 and keepalive["nodelay"] == 0


@needs_ipv6
def test_v6only_from_defaults_applies(daemons: DaemonFactory) -> None:
    inherit, override = free_ports(2)
    conf = ("defaults\n{\n    v6only = yes\n}\n" + block("inherit", inherit)
            + block("override", override, v6only="no"))
    daemon = daemons.start_config(conf)
    # xinetd 2.3.15.3 ignores v6only in defaults; the loader warns that it applies here.
    assert "v6only" in daemon.log()
    assert fetch("127.0.0.1", inherit) is None
    six = fetch("::1", inherit)
    assert six is not None and six["remote_host"] == "::1"
    mapped = fetch("127.0.0.1", override)
    assert mapped is not None and mapped["remote_host"] == "::ffff:127.0.0.1"
    if shutil.which("ss"):
        assert listening_address(inherit) == f"[::]:{inherit}"
        assert listening_address(override) == f"*:{override}"


# -- 4: SO_REUSEADDR: a restart on a port with connections in TIME_WAIT --------------


def time_wait_on(port: int) -> bool:
    """True when a TCP socket with local port `port` is in TIME_WAIT (state 06)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "06":
                return True
    return False


def test_restart_binds_at_once_over_time_wait(daemons: DaemonFactory) -> None:
    (port,) = free_ports(1)
    attrs = {"server": "/bin/echo", "server_args": "bye"}
    first = daemons.start_config(block("svc", port, **attrs))
    # The server writes and exits: the daemon's side of the connection closes first
    # and keeps the port in TIME_WAIT after the client closes.
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        assert conn.recv(100) == b"bye\n"
        assert conn.recv(100) == b""
    wait_until(lambda: time_wait_on(port), TIMEOUT, what="TIME_WAIT on the service port")
    first.signal(15)
    assert first.wait_exit() == 0

    # SO_REUSEADDR is always set (the REUSE flag is accepted and changes nothing), so
    # the port is bound at the first attempt; then TIME_WAIT again, and once more.
    second = daemons.start_config(block("svc", port, flags="REUSE", **attrs))
    assert "bind" not in second.log(), second.log()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        assert conn.recv(100) == b"bye\n"
        assert conn.recv(100) == b""
    wait_until(lambda: time_wait_on(port), TIMEOUT, what="TIME_WAIT on the service port")
    second.signal(15)
    assert second.wait_exit() == 0
    third = daemons.start_config(block("svc", port, **attrs))
    assert "bind" not in third.log(), third.log()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        assert conn.recv(100) == b"bye\n"


# -- 5: accept back-off when the daemon runs out of descriptors -----------------------

ACCEPT_FAILED = r"ERROR: echo_tcp: accept failed: Too many open files"


def udp_echo(port: int, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(payload, ("127.0.0.1", port))
        data, _ = sock.recvfrom(1024)
        return data


def cpu_ticks(pid: int) -> int:
    """The process's user + system CPU time so far, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def short_of_descriptors(pid: int) -> tuple[int, int]:
    """Lower the daemon's soft descriptor limit to its lowest free descriptor number:
    the next descriptor it asks for (an accept(), a socket()) fails with EMFILE. Its
    in-loop sessions cannot bring this about themselves: they leave a quarter of the
    limit to the other services (test_in_loop_descriptor_share.py). Returns the limits
    to put back."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE,
                     (min(set(range(len(used) + 1)) - used), limits[1]))
    return limits


def test_accept_backs_off_on_emfile(daemons: DaemonFactory) -> None:
    tcp_port, udp_port = free_ports(2)
    internal = {"types": {"INTERNAL"}, "server": None, "server_argv": (),
                "environment": None, "cps": (1000, 1), "instances": None}
    tcp = make_service(name="echo", id="echo_tcp", port=tcp_port, **internal)
    udp = make_service(name="echo", id="echo_udp", port=udp_port, socket_type="dgram",
                       **internal)
    daemon = start_limited(daemons, [tcp, udp], 40)
    pid = daemon.pid

    def waiting_clients() -> list[socket.socket]:
        # Connected, never accepted while the shortage lasts: they wait in the backlog.
        return [socket.create_connection(("127.0.0.1", tcp_port), timeout=TIMEOUT)
                for _ in range(3)]

    with socket.create_connection(("127.0.0.1", tcp_port), timeout=TIMEOUT) as first:
        first.sendall(b"in")
        assert first.recv(100) == b"in"     # its session holds a descriptor from now
        limits = short_of_descriptors(pid)
        clients = waiting_clients()
        try:
            daemon.wait_for_log(ACCEPT_FAILED, TIMEOUT)
            # Other services are served while the TCP listener is paused...
            assert udp_echo(udp_port, b"still here") == b"still here"
            # ...and the listener is retried every second, not polled (a spin shows as
            # CPU time), and the shortage is logged once, not once per retry.
            before = cpu_ticks(pid)
            time.sleep(2.0)
            ticks = cpu_ticks(pid) - before
            assert ticks < 80, f"{ticks} clock ticks in 2 idle seconds: the listener spins"
            assert udp_echo(udp_port, b"again") == b"again"
            assert len(re.findall(ACCEPT_FAILED, daemon.log())) == 1, daemon.log()
            # The session accepted before the shortage still works.
            first.sendall(b"first")
            assert first.recv(100) == b"first"
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        # Descriptors are back: the paused listener serves the waiting clients after
        # its retry.
        for index, conn in enumerate(clients):
            with conn:
                assert echoed(conn, b"%d" % index) == b"%d" % index

        def served() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", tcp_port),
                                              timeout=TIMEOUT) as conn:
                    return echoed(conn, b"back") == b"back"
            except OSError:
                return False

        # An accept that drained the backlog ended the shortage: a later one is a
        # new one, logged again.
        assert served()
        limits = short_of_descriptors(pid)
        try:
            clients = waiting_clients()
            daemon.wait_for_log(ACCEPT_FAILED, TIMEOUT, count=2)
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
            for conn in clients:
                conn.close()
        wait_until(served, TIMEOUT, what="the TCP echo served again")
    assert daemon.proc.poll() is None


def echoed(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(payload)
    return conn.recv(100)


def test_accept_of_the_last_descriptor_is_no_shortage(daemons: DaemonFactory) -> None:
    # Linux reserves a descriptor before it looks at the queue: with the last one just
    # given to a client, the accept() that ends the batch fails on an empty queue.
    # No client was turned away: no line, and the next client is not held back.
    port = free_ports(1)[0]
    echo = make_service(name="echo", id="echo_tcp", port=port, types={"INTERNAL"},
                        server=None, server_argv=(), environment=None, cps=(1000, 1),
                        instances=None)
    daemon = daemons.start_services([echo])
    pid = daemon.pid
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(set(range(len(used) + 1)) - used) + 1,
                                                    hard))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as first:
            first.sendall(b"last")
            assert first.recv(100) == b"last"
            assert "accept failed" not in daemon.log(), daemon.log()
            # A client that comes while the last descriptor is taken is a shortage.
            second = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            daemon.wait_for_log(ACCEPT_FAILED, TIMEOUT)
        with second:
            second.sendall(b"next")
            assert second.recv(100) == b"next"  # once the first one's descriptor is back
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert len(re.findall(ACCEPT_FAILED, daemon.log())) == 1, daemon.log()


def test_cps_reactivation_without_descriptors_waits_for_them(
        daemons: DaemonFactory) -> None:
    tripped_port, udp_port = free_ports(2)
    internal = {"types": {"INTERNAL"}, "server": None, "server_argv": (),
                "environment": None, "instances": None}
    tripped = make_service(name="echo", id="echo_cps", port=tripped_port, cps=(2, 2),
                           **internal)
    udp = make_service(name="echo", id="echo_udp", port=udp_port, socket_type="dgram",
                       cps=(1000, 1), **internal)
    daemon = start_limited(daemons, [tripped, udp], 40)
    clients: list[socket.socket] = []
    limits = None
    try:
        # The third connection within a second trips cps: the listener is closed
        # and a timer will bind it again in 2 seconds...
        clients += [socket.create_connection(("127.0.0.1", tripped_port), timeout=TIMEOUT)
                    for _ in range(3)]
        daemon.wait_for_log(r"Deactivating service echo due to excessive incoming "
                            r"connections\.  Restarting in 2 seconds\.", TIMEOUT)
        # ...by when the daemon has no descriptor left for its socket.
        limits = short_of_descriptors(daemon.pid)
        assert "Activating service echo" not in daemon.log(), "too late"
        daemon.wait_for_log(r"ERROR: Error activating service echo\n", TIMEOUT)
        assert daemon.proc.poll() is None, daemon.log()
        assert udp_echo(udp_port, b"alive") == b"alive"
        # The socket is tried again each second while descriptors are short, and the
        # failure is logged once.
        time.sleep(1.5)
        assert daemon.log().count("Error activating service echo") == 1, daemon.log()
    finally:
        if limits is not None:
            resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, limits)
        for conn in clients:
            conn.close()
    # Descriptors are back: the service is bound again without a reload.
    daemon.wait_for_log(r"ERROR: Activating service echo\n", TIMEOUT)
    with socket.create_connection(("127.0.0.1", tripped_port), timeout=TIMEOUT) as conn:
        conn.sendall(b"back")
        assert conn.recv(100) == b"back"
    assert daemon.proc.poll() is None, daemon.log()


def test_dgram_nowait_relays_out_of_descriptors_drop_the_datagram(
        daemons: DaemonFactory) -> None:
    # Each running dgram/wait = no server keeps one end of its socket pair in the
    # daemon: hung servers, one per client, would use up a small RLIMIT_NOFILE.
    relay_port, udp_port = free_ports(2)
    relay = make_service(name="hang", port=relay_port, socket_type="dgram", wait=False,
                         server="/bin/sleep", server_argv=("sleep", "30"), instances=None,
                         cps=(1000, 1))
    udp = make_service(name="echo", id="echo_udp", port=udp_port, socket_type="dgram",
                       types={"INTERNAL"}, server=None, server_argv=(), environment=None)
    nofile = 32
    daemon = start_limited(daemons, [relay, udp], nofile)
    clients = []
    try:
        for _ in range(nofile):
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            clients.append(client)
            client.sendto(b"x", ("127.0.0.1", relay_port))   # a new peer each time
        # The line names the client whose datagram is dropped. The servers' channels
        # stop at half the limit, the rest kept for the other services.
        daemon.wait_for_log(r"ERROR: hang: cannot start a server: in-loop sessions, "
                            r"servers' channels and identity lookups hold 16 descriptors, "
                            r"half the limit; the rest are kept for the services whose "
                            r"servers run on their own \(client 127\.0\.0\.1\)\n",
                            TIMEOUT)
        assert daemon.proc.poll() is None, daemon.log()
        assert udp_echo(udp_port, b"alive") == b"alive"
        # More datagrams of the same sender: dropped too, and the shortage is not
        # logged again for each of them.
        for _ in range(5):
            clients[-1].sendto(b"x", ("127.0.0.1", relay_port))
        # Every datagram read (and dropped) before the servers go: one still queued
        # would start a server once they have freed their descriptors.
        wait_until(lambda: receive_queue(relay_port) == 0, TIMEOUT, what="the datagrams read")
    finally:
        for client in clients:
            client.close()
    for pid in daemon.children():
        os.kill(pid, 9)
    wait_until(lambda: not daemon.children(), TIMEOUT, what="the servers reaped")
    # Descriptors are back: a new client gets a server again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"x", ("127.0.0.1", relay_port))
        wait_until(lambda: len(daemon.children()) == 1, TIMEOUT, what="a new server")
    assert daemon.proc.poll() is None, daemon.log()
    # Read from the socket before the new client's datagram, none of those was
    # logged: one line for the shortage, and no service ran out of descriptors.
    assert len(re.findall(r"cannot start a server", daemon.log())) == 1, daemon.log()
    assert "Too many open files" not in daemon.log()


def test_hung_external_servers_hold_no_descriptor_of_the_daemon(
        daemons: DaemonFactory) -> None:
    # The master closes its copy of each connection it hands to an external server,
    # so hung servers never bring it near EMFILE, however many there are.
    (port,) = free_ports(1)
    svc = make_service(name="hang", port=port, server="/bin/sleep",
                       server_argv=("sleep", "30"), instances=None, cps=(1000, 1))
    nofile = 32
    daemon = start_limited(daemons, [svc], nofile)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
               for _ in range(nofile + 8)]
    try:
        wait_until(lambda: len(daemon.children()) == len(clients), TIMEOUT,
                   what="one server per connection")
        assert "accept failed" not in daemon.log()
        assert len(os.listdir(f"/proc/{daemon.pid}/fd")) < nofile
    finally:
        for conn in clients:
            conn.close()


# -- 6: raw and seqpacket ---------------------------------------------------------------


def raw_block(name: str, port: int, marker: Path, **attrs: str) -> str:
    lines = {"type": "UNLISTED", "port": str(port), "socket_type": "raw",
             "protocol": RAW_PROTOCOL[0], "wait": "yes", "user": "root",
             "server": sys.executable, "server_args": f"{FAST} {PROBE} packet {marker}", **attrs}
    body = "".join(f"    {k} = {v}\n" for k, v in lines.items())
    return f"service {name}\n{{\n{body}}}\n"


def send_raw(family: int, host: str, payload: bytes) -> None:
    with socket.socket(family, socket.SOCK_RAW, RAW_PROTOCOL[1]) as sock:
        sock.sendto(payload, (host, 0))


def read_marker(path: Path) -> dict[str, object]:
    wait_until(path.exists, TIMEOUT, what=f"marker {path.name}")
    record: dict[str, object] = json.loads(path.read_text())
    return record


@needs_root
def test_raw_service_starts_its_server_on_a_packet(daemons: DaemonFactory,
                                                   tmp_path: Path) -> None:
    four, six = tmp_path / "raw4.json", tmp_path / "raw6.json"
    conf = raw_block("raw4", 4000, four, flags="IPv4")
    if HAVE_IPV6:
        conf += raw_block("raw6", 4001, six)
    daemon = daemons.start_config(conf)
    assert "deactivated" not in daemon.log()

    send_raw(socket.AF_INET, "127.0.0.1", b"pyxinetd raw probe 1")
    record = read_marker(four)
    # An IPv4 raw socket receives the IP header too.
    assert bytes.fromhex(str(record["data"])).endswith(b"pyxinetd raw probe 1")
    assert record["remote_host"] == "127.0.0.1"

    # The server exited; the service listens again (wait = yes resumes on reap).
    wait_until(lambda: not daemon.children(), TIMEOUT, what="the raw server reaped")
    four.unlink()
    send_raw(socket.AF_INET, "127.0.0.1", b"pyxinetd raw probe 2")
    assert bytes.fromhex(str(read_marker(four)["data"])).endswith(b"pyxinetd raw probe 2")

    if HAVE_IPV6:
        send_raw(socket.AF_INET6, "::1", b"pyxinetd raw probe 6")
        record = read_marker(six)
        assert bytes.fromhex(str(record["data"])) == b"pyxinetd raw probe 6"
        assert record["remote_host"] == "::1"


@needs_root
def test_raw_packet_left_unread_is_discarded_when_its_server_exits(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd 2.3.15.3 neither peeks a raw packet's sender nor drains what its server
    # left: the packet starts (and, with no address, refuses) a server again and
    # again until cps trips. Here each packet gets one server, which sees its sender.
    log = tmp_path / "raw.log"
    daemon = daemons.start_config(raw_block(
        "rawunread", 4000, tmp_path / "unused.json", flags="IPv4", server="/bin/true",
        server_args="unread", log_type=f"FILE {log}", log_on_success="PID HOST EXIT",
        log_on_failure="HOST"))
    for count in (1, 2):
        send_raw(socket.AF_INET, "127.0.0.1", b"pyxinetd raw probe %d" % count)
        wait_until(lambda: log.exists() and log.read_text().count("EXIT: rawunread")
                   == count, TIMEOUT, what=f"server {count} reaped")
    text = log.read_text()
    assert text.count("START: rawunread") == 2
    assert text.count("from=127.0.0.1") == 2
    assert "FAIL" not in text and "Deactivating" not in daemon.log()


def _sctp_available() -> str | None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP).close()
    except OSError as err:
        return f"socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP) fails here: {err}"
    return None


SCTP_MISSING = _sctp_available()


@pytest.mark.skipif(SCTP_MISSING is not None, reason=str(SCTP_MISSING))
def test_seqpacket_service_over_sctp(daemons: DaemonFactory) -> None:
    (port,) = free_ports(1)
    conf = block("seq", port, socket_type="seqpacket", protocol="sctp", flags="IPv4")
    daemons.start_config(conf)
    with socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(("127.0.0.1", port))
        report = json.loads(conn.recv(4096))
    assert report["remote_host"] == "127.0.0.1"
    assert report["type"] == socket.SOCK_SEQPACKET


@pytest.mark.skipif(SCTP_MISSING is None, reason="SCTP is available here")
def test_seqpacket_without_kernel_support_is_rejected_at_load(daemons: DaemonFactory) -> None:
    seq, other = free_ports(2)
    conf = (block("seq", seq, socket_type="seqpacket", protocol="sctp")
            + block("other", other, flags="IPv4"))
    daemon = daemons.start_config(conf)
    log = daemon.log()
    # Asked at load, the kernel's refusal is reported with the file and line, where
    # xinetd finds it when it creates the socket (docs/compatibility.md).
    assert re.search(r"ERROR: service seq: protocol sctp does not carry socket_type "
                     r"seqpacket \(the kernel refuses the pair: .*\) - service disabled "
                     r"\[file=\S+\] \[line=1\]\n", log), log
    assert "socket creation failed" not in log
    assert re.search(r"Started working: 1 available service\b", log)
    report = fetch("127.0.0.1", other)
    assert report is not None and report["remote_host"] == "127.0.0.1"


# -- 7: a bind address missing from the machine ---------------------------------------


# A documentation address (TEST-NET-3): not configured on any sane machine. Some test
# machines live in TEST-NET-1 (192.0.2.0/24), so that one is avoided. Nothing is sent.
ABSENT_ADDRESS = "203.0.113.1"


def _absent_address_is_local() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ABSENT_ADDRESS, 0))
        except OSError:
            return False
    return True


def test_servers_started_while_binds_retry_run_in_the_root_directory(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # xinetd binds with blocking retries and chdir's to / before serving anything;
    # here the services bound already serve during the retries, and their servers
    # must not inherit the directory the daemon was started from.
    good = free_ports(1)[0]
    monkeypatch.setenv("XINETD_BIND_DELAY", "200000")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        conf = (block("taken", taken, bind="127.0.0.1", flags="IPv4")
                + block("good", good, bind="127.0.0.1", flags="IPv4", server="/bin/sh",
                         server_args="-c pwd"))
        daemon = daemons.start_config(conf, ready=False)
        daemon.wait_for_log(r"NOTICE: bind retry attempt 1\b", TIMEOUT)
        with socket.create_connection(("127.0.0.1", good), timeout=TIMEOUT) as conn:
            answer = conn.recv(100)
        assert "Started working" not in daemon.log()
    # The factory starts every daemon in the test's own directory.
    assert answer == b"/\n"


def test_a_sigint_in_debug_mode_cancels_the_bind_retries_pending(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a pause between attempts each turn of the loop retries every service
    # that waits for its port: the turn that takes the SIGINT has retries due. The
    # daemon is stopped (SIGSTOP) while they go on, so the SIGINT is there when it
    # resumes. Nothing may follow `Exiting...`.
    monkeypatch.delenv("XINETD_BIND_DELAY", raising=False)
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(SERVICES_RETRYING):
            busy = stack.enter_context(socket.socket())
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            held.append(busy.getsockname()[1])
        conf = "".join(block(f"taken{n}", port, bind="127.0.0.1", flags="IPv4")
                       for n, port in enumerate(held))
        daemon = daemons.start_config(conf, "-d", ready=False)
        wait_until(lambda: "bind retry attempt 1\n" in daemon.log(), TIMEOUT,
                   interval=0.001, what="the first bind retry")
        daemon.signal(signal.SIGSTOP)
        try:
            before = daemon.log()
            daemon.signal(signal.SIGINT)
        finally:
            daemon.signal(signal.SIGCONT)
        assert daemon.wait_exit(TIMEOUT) == 1
    # Retries were pending when the signal came.
    assert before.count("bind retry attempt 10\n") < SERVICES_RETRYING, before
    log = daemon.log()
    # The last line: no retry, no `bind failed`, no `Started working` after it.
    assert re.search(r"WARNING: \d+ \{quit_program\} Exiting\.\.\.\n\Z", log), log


@pytest.mark.skipif(_absent_address_is_local(), reason=f"{ABSENT_ADDRESS} is local here")
def test_unbindable_service_is_deactivated_while_others_serve(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bad, good, udp = free_ports(3)
    # 0.2 s between attempts: ten retries span 2 s, during which the loop must serve.
    monkeypatch.setenv("XINETD_BIND_DELAY", "200000")
    conf = (block("bad", bad, bind=ABSENT_ADDRESS)
            + block("good", good, flags="IPv4", server="/bin/echo", server_args="good")
            + "service echo\n{\n    type = INTERNAL UNLISTED\n    id = echo_udp\n"
              f"    port = {udp}\n    socket_type = dgram\n    wait = yes\n"
              "    flags = IPv4\n}\n")
    daemon = daemons.start_config(conf, ready=False)
    daemon.wait_for_log(r"NOTICE: bind retry attempt 1\b", TIMEOUT)
    with socket.create_connection(("127.0.0.1", good), timeout=TIMEOUT) as conn:
        answer = conn.recv(100)
    echoed = udp_echo(udp, b"during retries")
    pending = daemon.log()
    assert answer == b"good\n"
    assert echoed == b"during retries"
    # Both answers arrived while the retries were still pending.
    assert "failed to start" not in pending, pending

    log = daemon.wait_for_log(r"Started working: 2 available services", TIMEOUT)
    # xinetd's lines and levels: 11 failures (ERROR), 10 retries (NOTICE), the end.
    assert log.count("ERROR: bind failed (Cannot assign requested address (errno = 99)). "
                     "service = bad\n") == 11
    assert re.findall(r"NOTICE: bind retry attempt (\d+)\n", log) == \
        [str(n) for n in range(1, 11)]
    assert "ERROR: Service bad failed to start and is deactivated.\n" in log
    # pyxinetd's addition: the address may still appear (tests/integration/
    # test_address_wait.py follows it to the end).
    assert f"NOTICE: Service bad will be activated when address {ABSENT_ADDRESS} appears\n" \
        in log
    with socket.create_connection(("127.0.0.1", good), timeout=TIMEOUT) as conn:
        assert conn.recv(100) == b"good\n"
    assert udp_echo(udp, b"after") == b"after"
