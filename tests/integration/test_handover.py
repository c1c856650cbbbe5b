"""Sockets handed over by the service manager (systemd's socket activation, LISTEN_FDS).

The test plays systemd: it binds the sockets, and starts the daemon through a shell that
moves them to descriptors 3 and up and sets LISTEN_PID to its own pid before exec'ing
the daemon (so the pid is the daemon's), LISTEN_FDS and LISTEN_FDNAMES
(tests/helpers/listen_fds.py).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import sys
import time
from pathlib import Path

from tests.daemon import (HELPERS, DaemonFactory, Daemon, free_port, wait_log_lines,
                          without_ids_ignored)

TIMEOUT = 10.0


def listening(family: int = socket.AF_INET, host: str = "127.0.0.1",
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(family, kind)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(16)
    return sock


def start(daemons: DaemonFactory, conf: str, sockets: list[socket.socket]) -> Daemon:
    fds = [sock.fileno() for sock in sockets]
    wrapper = [sys.executable, str(HELPERS / "listen_fds.py"), *map(str, fds), "--"]
    return daemons.start_config(conf, wrapper=wrapper, pass_fds=fds)


def service(name: str, port: int, *lines: str) -> str:
    body = "".join(f"\t{line}\n" for line in lines)
    return f"""service {name}
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tuser = root
\tport = {port}
{body}}}
"""


def listeners_on(port: int) -> list[str]:
    """Inodes of the TCP sockets listening on `port` (any address, /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                found.append(fields[9])
    return found


def ask(port: int, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_a_service_serves_on_the_socket_it_was_handed(daemons: DaemonFactory,
                                                     tmp_path: Path) -> None:
    sock = listening()
    port = sock.getsockname()[1]
    with sock:
        daemon = start(daemons, service("report", port, "bind = 127.0.0.1",
                                        f"server = {sys.executable}",
                                        f"server_args = {HELPERS / 'report_server.py'}"),
                       [sock])
        report = json.loads(ask(port))
        # The daemon bound nothing of its own: the one listener is the handed socket.
        assert listeners_on(port) == [str(os.fstat(sock.fileno()).st_ino)]
        # Servers inherit neither the variables nor the descriptors.
        assert not [name for name in report["environ"] if name.startswith("LISTEN_")]
        assert report["fds"] == [0, 1, 2]
        assert "WARNING" not in without_ids_ignored(daemon.log())


def test_a_wildcard_ipv6_socket_serves_an_ipv4_service(daemons: DaemonFactory,
                                                       tmp_path: Path) -> None:
    # systemd's `ListenStream=PORT` is `[::]:PORT` taking IPv4 clients too.
    sock = listening(socket.AF_INET6, "::")
    port = sock.getsockname()[1]
    with sock:
        start(daemons, service("hello", port, "server = /bin/echo", "server_args = hello",
                               f"log_type = FILE {tmp_path / 'services.log'}",
                               "log_on_success = HOST"), [sock])
        assert ask(port) == b"hello\n"
        wait_log_lines(tmp_path / "services.log", r"START: hello from=::ffff:127\.0\.0\.1")
        assert listeners_on(port) == [str(os.fstat(sock.fileno()).st_ino)]


def test_a_cps_deactivation_keeps_the_handed_socket(daemons: DaemonFactory,
                                                    tmp_path: Path) -> None:
    # Closing it would lose it for good: systemd keeps its own copy bound, so a new bind
    # of the port fails. It goes back to the pool and the reactivation takes it again.
    sock = listening()
    port = sock.getsockname()[1]
    with sock:
        daemon = start(daemons, service("hello", port, "bind = 127.0.0.1", "cps = 1 1",
                                        "server = /bin/echo", "server_args = hello"), [sock])
        for _ in range(10):
            if ask(port) == b"":    # the connection that tripped cps, closed unserved
                break
        daemon.wait_for_log("Deactivating service hello")
        daemon.wait_for_log("Activating service hello")
        assert ask(port) == b"hello\n"
        assert "Error activating" not in daemon.log()
        assert listeners_on(port) == [str(os.fstat(sock.fileno()).st_ino)]


def test_a_socket_no_service_claims_is_reported_and_the_others_serve(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    used, spare = listening(), listening(kind=socket.SOCK_DGRAM)
    port, spare_port = used.getsockname()[1], spare.getsockname()[1]
    other = free_port()
    with used, spare:
        daemon = start(daemons, service("hello", port, "bind = 127.0.0.1",
                                        "server = /bin/echo", "server_args = hello")
                       + service("own", other, "bind = 127.0.0.1", "server = /bin/echo",
                                 "server_args = own"), [used, spare])
        assert ask(port) == b"hello\n"
        assert ask(other) == b"own\n"   # no handed socket for it: bound as usual
        line = daemon.wait_for_log("no service listens on the socket")
        assert re.search(rf"passed as descriptor 4 \(127\.0\.0\.1 port {spare_port}, dgram\); "
                         r"it is kept for a reload", line), line


def test_a_reload_gives_the_socket_back_and_takes_it_again(daemons: DaemonFactory,
                                                           tmp_path: Path) -> None:
    sock = listening()
    port = sock.getsockname()[1]
    hello = service("hello", port, "bind = 127.0.0.1", "server = /bin/echo",
                    "server_args = hello")
    placeholder = service("other", free_port(), "bind = 127.0.0.1", "server = /bin/echo")
    with sock:
        daemon = start(daemons, hello + placeholder, [sock])
        conf = next(tmp_path.glob("daemon*.conf"))
        assert ask(port) == b"hello\n"
        conf.write_text(placeholder)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Reconfigured")
        # Back in the pool: its clients are turned away, not left waiting in its queue.
        assert ask(port) == b""
        conf.write_text(service("hello", port, "bind = 127.0.0.1", "server = /bin/echo",
                                "server_args = again") + placeholder)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Reconfigured", count=2)
        assert ask(port) == b"again\n"
        assert listeners_on(port) == [str(os.fstat(sock.fileno()).st_ino)]


def test_a_datagram_service_serves_on_its_handed_socket(daemons: DaemonFactory) -> None:
    sock = listening(kind=socket.SOCK_DGRAM)
    port = sock.getsockname()[1]
    with sock:
        daemon = start(daemons, f"""service echo
{{
\ttype = INTERNAL UNLISTED
\tsocket_type = dgram
\twait = yes
\tport = {port}
\tbind = 127.0.0.1
}}
""", [sock])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(b"ping", ("127.0.0.1", port))
            assert client.recv(100) == b"ping"
        assert "bind failed" not in daemon.log()   # it never bound a socket of its own


def test_a_spare_socket_without_a_descriptor_to_turn_clients_away_waits(
        daemons: DaemonFactory) -> None:
    used, spare = listening(), listening()
    port, spare_port = used.getsockname()[1], spare.getsockname()[1]
    with used, spare:
        daemon = start(daemons, service("hello", port, "bind = 127.0.0.1",
                                        "server = /bin/echo", "server_args = hello"),
                       [used, spare])
        daemon.wait_for_log("no service listens on the socket")
        pid = daemon.proc.pid
        in_use = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        lowest_free = min(set(range(len(in_use) + 1)) - in_use)
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            with socket.create_connection(("127.0.0.1", spare_port), timeout=TIMEOUT) as c:
                # Accepting it to close it needs a descriptor: the socket is left alone
                # for a while instead of being tried again on every loop turn.
                daemon.wait_for_log(rf"ERROR: cannot turn away the clients of descriptor "
                                    rf"4 \(127\.0\.0\.1 port {spare_port}, stream\): Too "
                                    r"many open files \(errno = 24\); retrying in 1 seconds")
                # Retried each second meanwhile, and reported once.
                time.sleep(1.5)
                assert daemon.log().count("cannot turn away the clients") == 1, daemon.log()
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
                assert c.recv(100) == b""     # turned away once it could be accepted
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert ask(port) == b"hello\n"


def v6only_and_v4_wildcards() -> tuple[socket.socket, socket.socket]:
    """A v6-only `[::]:P` and a `0.0.0.0:P` on one port P. The port the kernel picks for
    the IPv6 socket may be held on IPv4 by another test's connection at that moment: a
    bounded number of ports is tried."""
    for _ in range(50):
        six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        six.bind(("::", 0))
        four = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            four.bind(("0.0.0.0", six.getsockname()[1]))
        except OSError:
            four.close()
            six.close()
            continue
        return six, four
    raise RuntimeError("no port free on both families")


def test_each_family_takes_the_socket_of_its_family(daemons: DaemonFactory) -> None:
    # systemd with `BindIPv6Only=ipv6-only` and two ListenStream lines passes a v6-only
    # `[::]:P` and a `0.0.0.0:P`; an IPv4 service and a v6-only one share port P. Each
    # takes the socket it would have bound itself, whatever order they come in.
    six, four = v6only_and_v4_wildcards()
    port = six.getsockname()[1]
    for sock in (six, four):
        sock.listen(16)
    with six, four:
        daemon = start(daemons, service("four", port, "flags = IPv4", "server = /bin/echo",
                                        "server_args = four")
                       + service("six", port, "v6only = yes", "server = /bin/echo",
                                 "server_args = six"), [six, four])
        assert ask(port, "127.0.0.1") == b"four\n"
        assert ask(port, "::1") == b"six\n"
        assert "WARNING" not in without_ids_ignored(daemon.log())


def test_a_v6only_socket_is_not_taken_for_ipv4(daemons: DaemonFactory) -> None:
    # It would never see an IPv4 client: the service binds its own socket instead.
    six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    # A port free on IPv4 too (a port the kernel picks for IPv6 alone may be held on
    # 127.0.0.1 by another connection, and the service's own bind would then fail).
    six.bind(("::", free_port()))
    six.listen(16)
    port = six.getsockname()[1]
    with six:
        daemon = start(daemons, service("four", port, "flags = IPv4", "server = /bin/echo",
                                        "server_args = four"), [six])
        assert ask(port, "127.0.0.1") == b"four\n"
        assert without_ids_ignored(daemon.log()).count("WARNING") == 1  # the unclaimed socket
