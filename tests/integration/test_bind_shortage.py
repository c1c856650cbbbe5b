"""A service whose socket cannot be made for want of descriptors, at start-up or when a
reload adds it, waits for them: it is tried again each second, silently, and serves once
the daemon has descriptors again, without another reload (xinetd leaves it off until
the next reload; docs/compatibility.md)."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.daemon import Daemon, DaemonFactory, free_port, nofile_limited

TIMEOUT = 10.0
SHORT = r"NOTICE: Service (\S+) will be activated when the daemon has descriptors again"
BACK = r"NOTICE: Service (\S+): descriptors available again, service activated"


def echo_services(ports: dict[str, int], kind: str = "stream") -> str:
    return "".join(f"""service echo
{{
\ttype = INTERNAL UNLISTED
\tid = {name}
\tsocket_type = {kind}
\twait = {"yes" if kind == "dgram" else "no"}
\tport = {port}
\tbind = 127.0.0.1
}}
""" for name, port in ports.items())


def echoes(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(b"ping")
        return conn.recv(100) == b"ping"


def short_services(daemon: Daemon) -> list[str]:
    return re.findall(SHORT, daemon.log())


def test_services_short_of_descriptors_at_start_up_wait_and_others_serve(
        daemons: DaemonFactory) -> None:
    udp_port = free_port()
    ports = {f"s{i}": free_port() for i in range(30)}
    # The daemon itself holds about 7 descriptors: some of the 31 sockets fit, not all.
    # The datagram service comes first, and serves without a descriptor per client.
    daemon = daemons.start_config(echo_services({"udp": udp_port}, "dgram")
                                  + echo_services(ports), wrapper=nofile_limited(24))
    short = short_services(daemon)
    available = int(re.findall(r"Started working: (\d+) available", daemon.log())[0])
    assert short and available == len(ports) + 1 - len(short), daemon.log()
    for name in short:
        # Why, xinetd's line, then the wait; each once. The start-up binds too leave
        # the reserve free: its socket is not even tried.
        assert len(re.findall(rf"WARNING: Service {name}: \d+ descriptors left, kept for "
                              r"the clients", daemon.log())) == 1, daemon.log()
        assert daemon.log().count(f"Service {name} failed to start and is deactivated") == 1
    assert "socket creation failed" not in daemon.log()
    # The services that got a socket serve their clients: the descriptors they need
    # were kept (binding until socket() failed left none, and none could accept).
    served = [name for name in ports if name not in short]
    assert served and all(echoes(ports[name]) for name in served[-3:])
    # Tried again each second, silently, while the shortage lasts.
    time.sleep(2.5)
    assert short_services(daemon) == short
    assert "socket creation failed" not in daemon.log().split("Started working")[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(TIMEOUT)
        udp.sendto(b"ping", ("127.0.0.1", udp_port))
        assert udp.recv(100) == b"ping"
    assert daemon.proc.poll() is None


@contextlib.contextmanager
def reloaded_short_of_descriptors(daemon: Daemon, conf_text: str) -> Iterator[list[str]]:
    """Reload `conf_text` with room for reading it and two new descriptors, not more
    (none for a client meanwhile); yields the services left waiting for descriptors.
    The daemon's limit is back on leaving."""
    daemon.log_path.with_suffix(".conf").write_text(conf_text)
    pid = daemon.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    held = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 2, hard))
    try:
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"Reconfigured: new=\d+ old=\d+ dropped=\d+", TIMEOUT)
        yield short_services(daemon)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def test_services_a_reload_adds_wait_for_descriptors_and_then_serve(
        daemons: DaemonFactory) -> None:
    first = {"first": free_port()}
    daemon = daemons.start_config(echo_services(first))
    added = {f"added{i}": free_port() for i in range(6)}
    with reloaded_short_of_descriptors(daemon, echo_services(first | added)) as short:
        assert short, daemon.log()
        time.sleep(1.5)
        assert short_services(daemon) == short      # waiting, silently
    # Descriptors are back: each waiting service is bound within a second or so.
    daemon.wait_for_log(BACK, TIMEOUT, count=len(short))
    assert sorted(re.findall(BACK, daemon.log())) == sorted(short)
    assert all(echoes(port) for port in (first | added).values())
    assert daemon.proc.poll() is None


def test_services_whose_log_file_finds_no_descriptor_wait_like_their_socket(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    first = {"first": free_port()}
    daemon = daemons.start_config(echo_services(first))
    added = {f"logged{i}": free_port() for i in range(6)}
    logged = "".join(echo_services({name: port}).replace(
        "\tbind = 127.0.0.1\n", f"\tbind = 127.0.0.1\n\tlog_type = FILE {tmp_path}/{name}.log\n")
        for name, port in added.items())
    # Each added service needs a descriptor for its log file and one for its socket.
    with reloaded_short_of_descriptors(daemon, echo_services(first) + logged) as short:
        assert short, daemon.log()
    daemon.wait_for_log(BACK, TIMEOUT, count=len(short))
    assert sorted(re.findall(BACK, daemon.log())) == sorted(short)
    assert all(echoes(port) for port in (first | added).values())
    assert all((tmp_path / f"{name}.log").exists() for name in added)


def test_binds_after_the_start_up_leave_the_serving_services_their_descriptors(
        daemons: DaemonFactory) -> None:
    # A reload's new services, and waiting ones retried each second, used to take every
    # descriptor as it came free (clients leaving): the service that served before the
    # reload could accept no client, and no reload could start its loader again; only
    # a restart got the daemon back. They now leave 16 free (a quarter of a limit
    # under 64).
    first = {"first": free_port()}
    daemon = daemons.start_config(echo_services(first), wrapper=nofile_limited(64))
    pid = daemon.proc.pid

    def free() -> int:
        return 64 - len(os.listdir(f"/proc/{pid}/fd"))

    added = {f"added{i}": free_port() for i in range(60)}
    daemon.log_path.with_suffix(".conf").write_text(echo_services(first | added))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: ", TIMEOUT)
    short = short_services(daemon)
    assert short and len(short) < len(added), daemon.log()
    assert "descriptors left, kept for the clients of the services that serve" in daemon.log()
    assert free() >= 16
    # Clients take descriptors and give them back.
    clients = [socket.create_connection(("127.0.0.1", first["first"]), timeout=TIMEOUT)
               for _ in range(10)]
    for conn in clients:
        conn.sendall(b"ping")
        assert conn.recv(100) == b"ping"
    for conn in clients:
        conn.close()
    time.sleep(2.5)     # two retry rounds
    assert not re.findall(BACK, daemon.log())
    assert free() >= 16
    assert echoes(first["first"])
    daemon.log_path.with_suffix(".conf").write_text(echo_services(first))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: ", TIMEOUT, count=2)
    assert "cannot start the configuration loader" not in daemon.log()
    assert echoes(first["first"])
    assert daemon.proc.poll() is None


SOCKET_WITHOUT_DESCRIPTORS = """
import resource, socket
from pyxinetd.listener import BindError, SHORTAGE_ERRNOS, create_socket
from tests.factories import make_service
svc = make_service(name="waiting", port=1, family=socket.AF_INET6, bind=None)
held = []
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    while True:
        held.append(socket.socket())
except OSError:
    pass
for quiet in (frozenset(), SHORTAGE_ERRNOS):
    notices = []
    try:
        create_socket(svc, notices.append, quiet)
    except BindError:
        pass
    print(len(notices))
"""


def test_a_retry_short_of_descriptors_gives_no_ipv6_fallback_notice() -> None:
    # Each waiting service is tried again every second: the fallback notice of its
    # IPv6 socket (which failed for want of a descriptor, not of IPv6) made a line per
    # service per second. The first attempt keeps xinetd's line.
    done = subprocess.run([sys.executable, "-c", SOCKET_WITHOUT_DESCRIPTORS],
                          capture_output=True, text=True, timeout=60, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == ["1", "0"], done.stderr
