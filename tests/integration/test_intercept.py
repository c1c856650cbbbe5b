"""flags = INTERCEPT: every client of a wait = yes server is checked (reference §4.13).

A real daemon, real servers (tests/helpers/intercept_server.py serves COUNT requests on
the socket it gets, reporting the peer it sees), clients on distinct loopback addresses.
"""

from __future__ import annotations

import os
import re
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pyxinetd.intercept import MAX_CLIENTS, MAX_TWISTS
from pyxinetd.service import MAX_PARKED_BYTES
from tests.daemon import (HELPERS, Daemon, DaemonFactory, free_port, namespace_problem,
                          nofile_limited, open_fds, read_log, run_scenario, wait_log_lines,
                          wait_until)
from tests.integration.test_reload import reload

TIMEOUT = 10.0
SERVER = HELPERS / "intercept_server.py"


def config(tmp_path: Path, port: int, *lines: str, socket_type: str = "stream",
           count: int = 3, bind: str = "127.0.0.1") -> str:
    body = "\n".join(f"\t{line}" for line in lines)
    return f"""defaults
{{
\tlog_type = FILE {tmp_path / "services.log"}
\tlog_on_success = PID HOST EXIT
\tlog_on_failure = HOST
\tcps = 0 0
}}
service icept
{{
\ttype = UNLISTED
\tsocket_type = {socket_type}
\twait = yes
\tuser = root
\tport = {port}
\tbind = {bind}
\tserver = {sys.executable}
\tserver_args = -I -S {SERVER} {count}
\tflags = INTERCEPT
{body}
}}
"""


def tcp_from(source: str, port: int, host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    conn = socket.socket(family, socket.SOCK_STREAM)
    try:
        conn.settimeout(TIMEOUT)
        conn.bind((source, 0))
        conn.connect((host, port))
    except BaseException:
        conn.close()
        raise
    return conn


def exchange(conn: socket.socket) -> dict[str, str]:
    """The server's greeting as a dict, after checking that it echoes a line back."""
    with conn:
        greeting = b""
        while not greeting.endswith(b"\n"):
            data = conn.recv(4096)
            assert data, f"closed after {greeting!r}"
            greeting += data
        conn.sendall(b"ping\n")
        assert conn.recv(4096) == b"ping\n"
        return dict(item.split("=", 1) for item in greeting.decode().split())


def closed(conn: socket.socket) -> bool:
    """Whether the daemon closed the connection (reset it, or ended it unanswered)."""
    try:
        return conn.recv(4096) == b""
    except ConnectionResetError:
        return True


def refused(conn: socket.socket) -> bool:
    with conn:
        return closed(conn)


def test_stream_checks_every_connection_and_relays_the_admitted(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemons.start_config(config(tmp_path, port, "no_access = 127.0.0.3"))
    first = exchange(tcp_from("127.0.0.2", port))
    # The server sees the relay, not the client; its socket is a private loopback one.
    assert first["peer"] == "127.0.0.1" and first["local"] == "127.0.0.1"
    assert refused(tcp_from("127.0.0.3", port))
    second = exchange(tcp_from("127.0.0.2", port))
    third = exchange(tcp_from("127.0.0.4", port))
    # One server for all three admitted clients: the refused one never reached it.
    assert first["pid"] == second["pid"] == third["pid"]
    pid = first["pid"]
    text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={pid}")
    assert re.findall(r"(?:START|FAIL): icept .*", text) == [
        f"START: icept pid={pid} from=127.0.0.2",
        "FAIL: icept address from=127.0.0.3",
        f"START: icept pid={pid} from=127.0.0.2",
        f"START: icept pid={pid} from=127.0.0.4",
    ]
    # The service resumed: the next client starts a new server, checked the same way.
    fourth = exchange(tcp_from("127.0.0.2", port))
    assert fourth["pid"] != pid
    assert refused(tcp_from("127.0.0.3", port))
    wait_log_lines(tmp_path / "services.log", r"FAIL: icept address from=127\.0\.0\.3", 2)


def test_only_from_admits_the_listed_clients(daemons: DaemonFactory,
                                            tmp_path: Path) -> None:
    # xinetd's parent check of a stream wait = yes request has no address, so with
    # only_from it refuses every start; here the interceptor checks each client.
    port = free_port()
    daemons.start_config(config(tmp_path, port, "only_from = 127.0.0.2 127.0.0.4"))
    assert refused(tcp_from("127.0.0.5", port))
    assert exchange(tcp_from("127.0.0.2", port))["peer"] == "127.0.0.1"
    assert exchange(tcp_from("127.0.0.4", port))["peer"] == "127.0.0.1"
    text = wait_log_lines(tmp_path / "services.log", r"START: icept", 2)
    assert "FAIL: icept address from=127.0.0.5" in text
    assert "<no address>" not in text


def test_datagrams_of_a_refused_sender_never_reach_the_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemons.start_config(config(tmp_path, port, "no_access = 127.0.0.3",
                                socket_type="dgram"))
    a, r, b = udp_from("127.0.0.2"), udp_from("127.0.0.3"), udp_from("127.0.0.4")
    with a, r, b:
        a.sendto(b"a1", ("127.0.0.1", port))
        first = a.recv(1000).decode()
        assert first.startswith("pid=") and first.endswith("peer=127.0.0.1 got=a1")
        pid = first.split()[0]
        r.sendto(b"r1", ("127.0.0.1", port))
        r.sendto(b"r2", ("127.0.0.1", port))
        a.sendto(b"a2", ("127.0.0.1", port))
        assert a.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=a2"
        b.sendto(b"b1", ("127.0.0.1", port))
        assert b.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=b1"
        # The server answered exactly its three datagrams, a1 a2 b1: r1 and r2 were
        # dropped by the master, which logged the sender once.
        text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {pid}")
        r.setblocking(False)
        with pytest.raises(BlockingIOError):
            r.recv(1000)
    assert text.count("FAIL: icept address from=127.0.0.3") == 1
    starts = re.findall(r"START: icept pid=\d+ from=(\S+)", text)
    assert starts == ["127.0.0.2", "127.0.0.4"]


def test_a_sender_refused_under_the_old_rules_is_checked_again_after_a_reload(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The running server's refused sender is remembered (one FAIL line) until a
    # reload: the new rules admit its next datagram to the same server.
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(config(tmp_path, port, "no_access = 127.0.0.3",
                                         socket_type="dgram"))
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.3") as r:
        a.sendto(b"a1", ("127.0.0.1", port))
        pid = a.recv(1000).decode().split()[0]
        r.sendto(b"r1", ("127.0.0.1", port))
        wait_log_lines(log, r"FAIL: icept address from=127\.0\.0\.3")
        reload(daemon, config(tmp_path, port, "no_access = 127.0.0.9", socket_type="dgram"),
               1)
        r.sendto(b"r2", ("127.0.0.1", port))
        assert r.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=r2"
    text = read_log(log)
    assert text.count("FAIL: icept address from=127.0.0.3") == 1
    assert re.findall(r"START: icept pid=\d+ from=(\S+)", text) == ["127.0.0.2", "127.0.0.3"]


def test_ipv6_service_gets_a_private_ipv6_socket(daemons: DaemonFactory,
                                                 tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")
    port = free_port()
    daemons.start_config(config(tmp_path, port, "flags = IPv6", "no_access = ::1",
                                bind="::", count=1))
    assert refused(tcp_from("::1", port, "::1"))
    reply = exchange(tcp_from("127.0.0.2", port))
    assert reply["peer"] == "::1" and reply["local"] == "::1"
    wait_log_lines(tmp_path / "services.log", r"START: icept pid=\d+ from=::ffff:127\.0\.0\.2")


def test_stream_wait_server_that_cannot_exec_is_tried_once_per_connection(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Before: the connection stayed queued, so the loop tried again at once, forever
    # with cps off. Now each connection that cannot be served is closed after one try.
    script = tmp_path / "broken.sh"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    port = free_port()
    text = config(tmp_path, port).replace(f"server = {sys.executable}",
                                          f"server = {script}")
    text = re.sub(r"\tserver_args = .*\n", "", text).replace("\tflags = INTERCEPT\n", "")
    daemon = daemons.start_config(text)
    for attempt in range(1, 4):
        assert refused(tcp_from("127.0.0.2", port))
        daemon.wait_for_log(r"icept: cannot start .*broken\.sh: exec", count=attempt)
    assert len(re.findall(r"icept: cannot start", daemon.log())) == 3


def test_reload_applies_the_new_rules_to_the_running_servers_next_clients(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, "no_access = 127.0.0.3"))
    pid = exchange(tcp_from("127.0.0.2", port))["pid"]
    reload(daemon, config(tmp_path, port, "no_access = 127.0.0.2"), 1)
    assert refused(tcp_from("127.0.0.2", port))
    assert exchange(tcp_from("127.0.0.3", port))["pid"] == pid
    text = wait_log_lines(tmp_path / "services.log", r"START: icept pid=\d+ from=127\.0\.0\.3")
    assert "FAIL: icept address from=127.0.0.2" in text


def test_clients_a_server_never_accepted_go_to_the_next_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # A server that serves one client per start (count = 1): clients admitted while it
    # runs are held when it exits, with what they already sent, for the next server.
    port = free_port()
    daemons.start_config(config(tmp_path, port, count=1))
    clients = [tcp_from(f"127.0.0.{n}", port) for n in (2, 4, 5)]
    for n, conn in enumerate(clients):
        conn.sendall(f"early-{n}\n".encode())
    pids = set()
    for n, conn in enumerate(clients):
        with conn:
            data = b""
            while data.count(b"\n") < 2:
                chunk = conn.recv(4096)
                assert chunk, f"client {n} closed after {data!r}"
                data += chunk
        greeting, echoed = data.decode().splitlines()[:2]
        assert echoed == f"early-{n}"
        pids.add(greeting.split()[0])
    assert len(pids) == 3
    text = wait_log_lines(tmp_path / "services.log", r"EXIT: icept status=0", 3)
    # One START per client, when it was admitted, with the pid of the server running
    # then: a held client relayed to the next server gets no second line.
    starts = re.findall(r"START: icept (pid=\d+) from=(\S+)", text)
    assert sorted(source for _, source in starts) == ["127.0.0.2", "127.0.0.4",
                                                      "127.0.0.5"]
    assert {pid for pid, _ in starts} <= pids


def test_tcp_wrappers_decide_for_each_client(daemons: DaemonFactory, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # hosts.deny refuses one client; a `twist` answers another with its own command
    # instead of the running server; an `aclexec` check (decided off the loop) admits a
    # third to the same server as the first.
    (tmp_path / "hosts.allow").write_text(
        "in.icept: 127.0.0.4: twist /bin/echo twisted %a\n"
        "in.icept: 127.0.0.5: aclexec /bin/true\n")
    (tmp_path / "hosts.deny").write_text("in.icept: 127.0.0.3 127.0.0.5\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    daemons.start_config(config(tmp_path, port, "libwrap = in.icept", count=2))
    first = exchange(tcp_from("127.0.0.2", port))
    assert refused(tcp_from("127.0.0.3", port))
    with tcp_from("127.0.0.4", port) as twisted:
        assert twisted.recv(4096) == b"twisted 127.0.0.4\n"
    assert exchange(tcp_from("127.0.0.5", port))["pid"] == first["pid"]
    text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={first['pid']}")
    assert "FAIL: icept libwrap from=127.0.0.3" in text
    assert re.findall(rf"START: icept pid={first['pid']} from=(\S+)", text) == [
        "127.0.0.2", "127.0.0.5"]


def test_a_twist_sender_never_reaches_the_running_datagram_server(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a sender a `twist` rule admitted while the server ran got a channel to
    # that server, and the twist command never ran (as a stream client's does).
    out = tmp_path / "twisted.out"
    (tmp_path / "hosts.allow").write_text(
        f"in.icept: 127.0.0.4: twist /bin/sh -c 'head -c 2 > {out}'\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, "libwrap = in.icept",
                                         socket_type="dgram", count=2))
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.4") as twisted:
        a.sendto(b"a1", ("127.0.0.1", port))
        pid = a.recv(1000).decode().split()[0]
        twisted.sendto(b"t1", ("127.0.0.1", port))
        wait_until(lambda: out.exists() and out.read_bytes() == b"t1", TIMEOUT)
        # The server's second and last datagram is a2, not t1.
        a.sendto(b"a2", ("127.0.0.1", port))
        assert a.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=a2"
        twisted.setblocking(False)
        with pytest.raises(BlockingIOError):
            twisted.recv(1000)
    text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {pid}")
    assert re.findall(r"START: icept (pid=\d+) from=127.0.0.2", text) == [pid]
    assert len(re.findall(r"START: icept pid=\d+ from=127.0.0.4", text)) == 1
    assert "twist 127.0.0.4 to /bin/sh" in daemon.log_path.read_text()


def twist_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """hosts.allow sends 127.0.0.4 and 127.0.0.5 to the twist `command`."""
    (tmp_path / "hosts.allow").write_text(f"in.icept: 127.0.0.4 127.0.0.5: twist {command}\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))


def test_a_twisted_stream_client_counts_as_an_instance(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # instances = 3: the running server and two twist commands; the third twisted
    # client is refused for the limit, as a wait = no service's would be (before: every
    # twisted client forked its command, whatever the limit).
    twist_rules(tmp_path, monkeypatch, "/bin/sh -c 'echo twisted; head -c 1 >/dev/null'")
    port = free_port()
    daemons.start_config(config(tmp_path, port, "libwrap = in.icept", "instances = 3",
                                count=1))
    with tcp_from("127.0.0.2", port) as a:
        assert a.recv(4096).startswith(b"pid=")     # the server runs, busy with it
        twisted = [tcp_from(source, port) for source in ("127.0.0.4", "127.0.0.5")]
        try:
            for conn in twisted:
                assert conn.recv(4096) == b"twisted\n"
            with tcp_from("127.0.0.4", port) as third:
                assert third.recv(4096) == b""
            wait_log_lines(tmp_path / "services.log",
                           r"FAIL: icept service_limit from=127\.0\.0\.4")
        finally:
            for conn in twisted:
                conn.close()
        a.sendall(b"ping\n")
        assert a.recv(4096) == b"ping\n"
    text = wait_log_lines(tmp_path / "services.log", r"START: icept pid=\d+ from=127", 3)
    assert len(re.findall(r"FAIL: icept", text)) == 1


def test_twist_commands_of_a_stream_server_are_bounded(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No limit set: at most MAX_TWISTS twist commands run at once for the clients of one
    # server; the next twisted client is disconnected, with one ERROR line, until one
    # of them exits (before: one process per twisted client, without end).
    twist_rules(tmp_path, monkeypatch, "/bin/sh -c 'echo twisted; head -c 1 >/dev/null'")
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, "libwrap = in.icept", count=1))
    with tcp_from("127.0.0.2", port) as a:
        assert a.recv(4096).startswith(b"pid=")
        twisted: list[socket.socket] = []
        try:
            for _ in range(MAX_TWISTS):
                twisted.append(tcp_from("127.0.0.4", port))
                assert twisted[-1].recv(4096) == b"twisted\n"
            for _ in range(2):
                with tcp_from("127.0.0.5", port) as over:
                    assert over.recv(4096) == b""
            twisted.pop().close()

            def twisted_again() -> bool:
                with tcp_from("127.0.0.5", port) as conn:
                    return conn.recv(4096) == b"twisted\n"
            wait_until(twisted_again, TIMEOUT, what="a twist command once one exited")
        finally:
            for conn in twisted:
                conn.close()
        a.sendall(b"ping\n")
        assert a.recv(4096) == b"ping\n"
    lines = re.findall(rf"icept: {MAX_TWISTS} twist commands already run .*",
                       daemon.log_path.read_text())
    assert lines == [f"icept: {MAX_TWISTS} twist commands already run for clients of this "
                     f"server; 127.0.0.5 disconnected"]


def test_a_twisted_datagram_sender_counts_as_an_instance(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # instances = 2: the running server and one twist command; the second twisted
    # sender is refused for the limit until that command exits, then gets its own.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    twist_rules(tmp_path, monkeypatch,
                f"/bin/sh -c 'head -c 2 > {tmp_path}/out.%a; head -c 1 {gate} >/dev/null'")
    port = free_port()
    daemons.start_config(config(tmp_path, port, "libwrap = in.icept", "instances = 2",
                                socket_type="dgram", count=2))
    out4, out5 = tmp_path / "out.127.0.0.4", tmp_path / "out.127.0.0.5"
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.4") as first, \
            udp_from("127.0.0.5") as second:
        a.sendto(b"a1", ("127.0.0.1", port))
        pid = a.recv(1000).decode().split()[0]
        first.sendto(b"t1", ("127.0.0.1", port))
        wait_until(lambda: out4.exists() and out4.read_bytes() == b"t1", TIMEOUT)
        second.sendto(b"u1", ("127.0.0.1", port))
        wait_log_lines(tmp_path / "services.log",
                       r"FAIL: icept service_limit from=127\.0\.0\.5")
        assert not out5.exists()
        release(gate)
        wait_log_lines(tmp_path / "services.log", r"EXIT: icept status=0 pid=(?!%s)" %
                       pid.removeprefix("pid="))

        def twisted() -> bool:
            second.sendto(b"u2", ("127.0.0.1", port))
            return out5.exists() and out5.read_bytes() == b"u2"
        wait_until(twisted, TIMEOUT, what="the second sender's twist command")
        release(gate)
        a.sendto(b"a2", ("127.0.0.1", port))
        assert a.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=a2"


def test_a_flood_against_a_server_that_never_accepts_is_bounded(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Every admitted client costs the master two descriptors; past MAX_CLIENTS the
    # service socket is left alone and clients wait in its listen queue, so the other
    # services keep their descriptors and keep serving.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CLIENTS + 40   # the rest fits the listen queue (64): connect() returns
    if max(soft, hard) < wanted + 100:
        pytest.skip(f"needs {wanted + 100} descriptors in the test process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted + 100), hard))
    port, echo_port = free_port(), free_port()
    text = config(tmp_path, port).replace(f"server = {sys.executable}",
                                          "server = /bin/sleep")
    text = re.sub(r"\tserver_args = .*\n", "\tserver_args = 30\n", text)
    text += f"""service echo
{{
\ttype = INTERNAL UNLISTED
\tsocket_type = stream
\twait = no
\tport = {echo_port}
\tbind = 127.0.0.1
}}
"""
    daemon = daemons.start_config(text)
    base = len(open_fds(daemon.pid))
    clients = []
    try:
        for _ in range(wanted):
            clients.append(tcp_from("127.0.0.2", port))
        wait_log_lines(tmp_path / "services.log", r"START: icept", MAX_CLIENTS)
        with socket.create_connection(("127.0.0.1", echo_port), timeout=TIMEOUT) as echo:
            echo.sendall(b"still here")
            echo.shutdown(socket.SHUT_WR)
            assert echo.recv(100) == b"still here"
        assert len(open_fds(daemon.pid)) <= base + 2 * MAX_CLIENTS + 4
        text = (tmp_path / "services.log").read_text()
        assert len(re.findall(r"START: icept", text)) == MAX_CLIENTS
    finally:
        for conn in clients:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


ECHO = """service echo
{{
\ttype = INTERNAL UNLISTED
\tsocket_type = stream
\twait = no
\tport = {port}
\tbind = 127.0.0.1
}}
"""
# A descriptor limit as low as some hosts set: a quarter of it, not MAX_CLIENTS or
# MAX_CHANNELS, bounds what one intercepted server's clients may hold.
LOW_NOFILE = 128


def echoes(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as echo:
        echo.sendall(b"still here")
        echo.shutdown(socket.SHUT_WR)
        return echo.recv(100) == b"still here"


def test_stream_clients_in_hand_are_bounded_by_the_descriptor_limit(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, echo_port = free_port(), free_port()
    text = config(tmp_path, port).replace(f"server = {sys.executable}", "server = /bin/sleep")
    text = re.sub(r"\tserver_args = .*\n", "\tserver_args = 30\n", text)
    daemons.start_config(text + ECHO.format(port=echo_port), wrapper=nofile_limited(LOW_NOFILE))
    bound = LOW_NOFILE // 4 // 2     # two descriptors per client in hand
    clients = []
    try:
        for _ in range(bound + 20):     # the rest waits in the listen queue
            clients.append(tcp_from("127.0.0.2", port))
        wait_log_lines(tmp_path / "services.log", r"START: icept", bound)
        assert echoes(echo_port)
        text = (tmp_path / "services.log").read_text()
        assert len(re.findall(r"START: icept", text)) == bound
    finally:
        for conn in clients:
            conn.close()


def test_datagram_senders_are_bounded_by_the_descriptor_limit(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, echo_port = free_port(), free_port()
    daemon = daemons.start_config(config(tmp_path, port, socket_type="dgram", count=10_000)
                                  + ECHO.format(port=echo_port), wrapper=nofile_limited(LOW_NOFILE))
    bound = LOW_NOFILE // 4         # one descriptor per sender's channel
    senders = []
    try:
        for _ in range(bound + 40):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders.append(sender)
            sender.bind(("127.0.0.2", 0))
            sender.sendto(b"x", ("127.0.0.1", port))
        daemon.wait_for_log(rf"ERROR: icept: {bound} senders already talk to this server; "
                            r"datagrams from new ones are dropped until it exits")
        assert echoes(echo_port)
        text = (tmp_path / "services.log").read_text()
        assert len(re.findall(r"START: icept", text)) == bound
        assert "Too many open files" not in daemon.log()
    finally:
        for sender in senders:
            sender.close()


@pytest.mark.skipif(namespace_problem("ip") is not None, reason=str(namespace_problem("ip")))
def test_datagrams_waiting_for_their_senders_names_are_bounded(tmp_path: Path) -> None:
    # Senders from many ports, each waiting for a name the DNS never gives: at most
    # MAX_PARKED_BYTES of their datagrams are kept (70 of 60,000 bytes, not all 400),
    # the rest is dropped with one ERROR line, and the admitted sender is still served.
    result = run_scenario(HELPERS / "intercept_flood_scenario.py", tmp_path,
                          sys.executable, "-m", "pyxinetd")
    kept = -(-MAX_PARKED_BYTES // 60_000)
    assert result["before"] == "peer=127.0.0.1 got=before"
    assert result["read"] == 400
    # 4 MiB kept, and some slack for the allocator; all of them would be 24 MB.
    assert result["grown_kib"] < 12_000, result["grown_kib"]
    assert result["errors"] == [
        f"ERROR: icept: {kept} datagrams already wait for their senders' names; datagrams "
        "from senders not yet checked (the first: 127.0.0.5) are dropped until verdicts "
        "come"]
    assert result["after"] == "peer=127.0.0.1 got=after"


def test_a_reload_that_removes_the_service_ends_its_clients_and_serving_goes_on(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    kept = f"""service echo
{{
\ttype = INTERNAL UNLISTED
\tsocket_type = stream
\twait = no
\tport = {other}
\tbind = 127.0.0.1
}}
"""
    daemon = daemons.start_config(config(tmp_path, port, count=2) + kept)
    client = tcp_from("127.0.0.2", port)
    with client:
        greeting = client.recv(4096)
        assert greeting.startswith(b"pid=")
        conf = next(tmp_path.glob("daemon*.conf"))
        conf.write_text(config(tmp_path, port).split("service icept")[0] + kept)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Reconfigured")
        # Its server is stopped; the relay ends and the client sees the end.
        try:
            assert client.recv(4096) == b""
        except ConnectionResetError:
            pass
    # The service socket is closed: the port refuses connections.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with socket.create_connection(("127.0.0.1", other), timeout=TIMEOUT) as echo:
        echo.sendall(b"on")
        echo.shutdown(socket.SHUT_WR)
        assert echo.recv(10) == b"on"
    assert "internal error" not in daemon.log()



def test_no_descriptor_for_a_new_senders_channel_is_logged_once_and_the_server_served(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, socket_type="dgram", count=4))
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.4") as b:
        a.sendto(b"a1", ("127.0.0.1", port))
        pid = a.recv(1000).decode().split()[0]
        # No descriptor left for b's channel to the running server.
        master = daemon.proc.pid
        used = {int(fd) for fd in os.listdir(f"/proc/{master}/fd")}
        lowest_free = min(set(range(len(used) + 1)) - used)
        soft, hard = resource.prlimit(master, resource.RLIMIT_NOFILE)
        resource.prlimit(master, resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            for n in range(20):
                b.sendto(f"b{n}".encode(), ("127.0.0.1", port))
            # a's channel exists: its answer comes after the master read b's 20.
            a.sendto(b"probe", ("127.0.0.1", port))
            assert a.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=probe"
            # Each of b's datagrams tried for a channel; the shortage is logged once.
            assert daemon.log().count("ERROR: icept: cannot relay for 127.0.0.4: Too many "
                                      "open files") == 1
        finally:
            resource.prlimit(master, resource.RLIMIT_NOFILE, (soft, hard))
        # The master still reads the service socket for the server: both senders are
        # served by it now.
        b.sendto(b"b2", ("127.0.0.1", port))
        assert b.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=b2"
        a.sendto(b"a2", ("127.0.0.1", port))
        assert a.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=a2"
    assert "internal error" not in daemon.log()


def test_no_descriptor_for_a_stream_clients_relay_names_the_client(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port))
    master = daemon.proc.pid
    before = len(open_fds(master))
    assert exchange(tcp_from("127.0.0.2", port))["peer"] == "127.0.0.1"
    # The server runs on; the master keeps one descriptor for it (its copy of the
    # server's socket) once the first client's relay has ended.
    wait_until(lambda: len(open_fds(master)) == before + 1, TIMEOUT,
               what="the first relay to end")
    # One descriptor left: the master accepts the next client, then has none for its
    # relay to the running server.
    used = set(open_fds(master))
    lowest_free = min(set(range(len(used) + 1)) - used)
    soft, hard = resource.prlimit(master, resource.RLIMIT_NOFILE)
    resource.prlimit(master, resource.RLIMIT_NOFILE, (lowest_free + 1, hard))
    try:
        assert refused(tcp_from("127.0.0.4", port))
        daemon.wait_for_log(r"ERROR: icept: can't connect to remote host 127\.0\.0\.1: "
                            r"Too many open files \(errno = 24\) \(client 127\.0\.0\.4\)")
    finally:
        resource.prlimit(master, resource.RLIMIT_NOFILE, (soft, hard))
    # The same server takes the next client once descriptors are back.
    assert exchange(tcp_from("127.0.0.2", port))["peer"] == "127.0.0.1"
    assert "internal error" not in daemon.log()


@pytest.mark.parametrize("socket_type", ["stream", "dgram"])
def test_peerenv_tells_the_service_not_the_private_socket(
        daemons: DaemonFactory, tmp_path: Path, socket_type: str) -> None:
    # The server's PEERENV variables are those the same server gets without INTERCEPT:
    # the service's address (stream: the listener's, no client yet), the sender of the
    # datagram that started it (dgram); never the private loopback socket's.
    port, plain_port = free_port(), free_port()
    intercepted = config(tmp_path, port, socket_type=socket_type).replace(
        "\tflags = INTERCEPT", "\tflags = INTERCEPT PEERENV").replace(
        f"{SERVER} 3\n", f"{SERVER} 1 10 env\n")
    plain = intercepted.split("service icept")[1].replace(
        "\tflags = INTERCEPT PEERENV", "\tflags = PEERENV").replace(
        f"port = {port}", f"port = {plain_port}")
    daemons.start_config(f"{intercepted}service plain{plain}")
    for service_port in (port, plain_port):
        if socket_type == "stream":
            reply = exchange(tcp_from("127.0.0.2", service_port))
            client_port = 0
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.bind(("127.0.0.2", 0))
                client.settimeout(TIMEOUT)
                client_port = client.getsockname()[1]
                client.sendto(b"x", ("127.0.0.1", service_port))
                reply = dict(item.split("=", 1) for item in client.recv(1000).decode().split())
        told = {name: value for name, value in reply.items() if name.isupper()}
        expected = ({"PROTO": "TCP", "TCPLOCALIP": "127.0.0.1",
                     "TCPLOCALPORT": str(service_port)} if socket_type == "stream" else
                    {"PROTO": "UDP", "REMOTE_ADDR": "127.0.0.2",
                     "REMOTE_PORT": str(client_port)})
        assert told == expected


@pytest.mark.parametrize("socket_type", ["stream", "dgram"])
def test_private_socket_shortage_is_logged_once_and_the_service_serves_again(
        daemons: DaemonFactory, tmp_path: Path, socket_type: str) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, socket_type=socket_type, count=1))
    log = tmp_path / "services.log"

    def served(reply: bytes) -> None:
        assert reply.startswith(b"pid="), reply

    pid = daemon.proc.pid
    sockets_before = open_sockets(pid)
    # One request served first: the service log is open before descriptors run out.
    if socket_type == "stream":
        exchange(tcp_from("127.0.0.1", port))
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.settimeout(TIMEOUT)
            sender.sendto(b"first", ("127.0.0.1", port))
            served(sender.recv(4096))
    wait_log_lines(log, r"EXIT: icept", 1)
    # The first request's sockets may outlive its EXIT line a moment: one closed after
    # the limit is set would leave room for the server's socket.
    wait_until(lambda: open_sockets(pid) == sockets_before, TIMEOUT,
               what="the first request's sockets closed")
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(set(range(len(used) + 1)) - used), hard))
    shortage = r"ERROR: icept: cannot make the server's socket: Too many open files"
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn: socket.socket | None = None
    try:
        sender.settimeout(TIMEOUT)
        if socket_type == "stream":
            conn = tcp_from("127.0.0.1", port)      # stays queued, tried every second
        else:
            sender.sendto(b"lost", ("127.0.0.1", port))
        daemon.wait_for_log(shortage)
        for _ in range(3):
            time.sleep(0.7)
            if socket_type == "dgram":
                sender.sendto(b"lost", ("127.0.0.1", port))   # each one a new try
        # One ERROR and one FAIL line for the shortage, not one per try.
        assert len(re.findall(shortage, daemon.log())) == 1, daemon.log()
        assert len(re.findall(r"FAIL: icept fork", log.read_text())) == 1, log.read_text()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        if conn is not None:
            assert exchange(conn)["pid"]    # the queued client gets the next server
        else:
            def answered() -> bool:
                sender.sendto(b"back", ("127.0.0.1", port))
                try:
                    sender.settimeout(0.5)
                    return sender.recv(4096).startswith(b"pid=")
                except TimeoutError:
                    return False
            wait_until(answered, TIMEOUT, what="a datagram answered again")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        sender.close()
        if conn is not None:
            conn.close()
    assert daemon.proc.poll() is None


def open_sockets(pid: int) -> set[str]:
    """The sockets a process has open, by descriptor and inode."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:"):
            found.add(f"{fd} {target}")
    return found


def gated_aclexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> Path:
    """hosts.allow admits `source` by an aclexec command that waits for a byte on the
    returned FIFO (see release): its verdict comes when the test says."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (tmp_path / "hosts.allow").write_text(f"in.icept: {source}: aclexec /bin/sh -c "
                                          f"'head -c 1 {gate} >/dev/null'\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    return gate


@contextmanager
def verdict_awaited(gate: Path) -> Iterator[None]:
    """Once the aclexec command reads `gate` (the verdict is awaited), run the block;
    then let the command admit its client."""
    def opened() -> int | None:
        try:
            return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:     # ENXIO: the command has not opened it yet
            return None
    fd = wait_until(opened, TIMEOUT)
    try:
        yield
        os.write(fd, b"x")
    finally:
        os.close(fd)


def release(gate: Path) -> None:
    """Let the aclexec command waiting on `gate` admit its client."""
    with verdict_awaited(gate):
        pass


def test_a_client_admitted_after_its_server_exited_goes_to_the_next_server(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    daemons.start_config(config(tmp_path, port, "libwrap = in.icept", count=1))
    with tcp_from("127.0.0.5", port) as late:
        # Its verdict waits; meanwhile the server serves another client and exits.
        first = exchange(tcp_from("127.0.0.2", port))["pid"]
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={first}")
        release(gate)
        second = exchange(late)["pid"]
    assert second != first
    text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={second}")
    assert re.findall(r"START: icept .*", text) == [f"START: icept pid={first} from=127.0.0.2",
                                                    f"START: icept pid={second} from=127.0.0.5"]


def test_a_client_admitted_after_its_server_exited_goes_to_the_running_one(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    daemons.start_config(config(tmp_path, port, "libwrap = in.icept", count=2))
    with tcp_from("127.0.0.5", port) as late:
        first = exchange(tcp_from("127.0.0.2", port))["pid"]
        assert exchange(tcp_from("127.0.0.2", port))["pid"] == first
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={first}")
        # The next server runs (busy with its first client) when the verdict comes.
        with tcp_from("127.0.0.3", port) as busy:
            greeting = busy.recv(4096)
            second = greeting.split()[0].decode().removeprefix("pid=")
            assert second != first
            release(gate)
            busy.sendall(b"ping\n")
            assert busy.recv(4096) == b"ping\n"
        assert exchange(late)["pid"] == second
    text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={second}")
    assert f"START: icept pid={second} from=127.0.0.5" in text


def udp_from(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        sock.settimeout(TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return sock


def server_exits_while_held(a: socket.socket, late: socket.socket, port: int, log: Path,
                            held: tuple[bytes, ...] = (b"l1",)) -> str:
    """`a` starts a server of the service (count = 2) and ends it with its second
    datagram while `late` sends `held`, its verdict waiting for the gate; that
    server's `pid=N`, once the log says it exited."""
    a.sendto(b"a1", ("127.0.0.1", port))
    first = a.recv(1000).decode().split()[0]
    for data in held:
        late.sendto(data, ("127.0.0.1", port))
    a.sendto(b"a2", ("127.0.0.1", port))
    assert a.recv(1000).decode() == f"{first} peer=127.0.0.1 got=a2"
    wait_log_lines(log, rf"EXIT: icept status=0 {first}")
    return first


def test_a_sender_admitted_after_its_server_exited_gets_the_next_server(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the datagrams of a sender whose verdict was awaited when the server
    # exited were dropped. Now they start the next server, as any datagram does.
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    port = free_port()
    daemons.start_config(config(tmp_path, port, "libwrap = in.icept",
                                socket_type="dgram", count=2))
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.5") as late:
        first = server_exits_while_held(a, late, port, tmp_path / "services.log")
        release(gate)
        reply = late.recv(1000).decode()
    second = reply.split()[0]
    assert reply == f"{second} peer=127.0.0.1 got=l1" and second != first
    text = wait_log_lines(tmp_path / "services.log", rf"START: icept {second} ")
    assert re.findall(r"START: icept .*", text) == [f"START: icept {first} from=127.0.0.2",
                                                    f"START: icept {second} from=127.0.0.5"]


def test_a_refused_senders_lines_follow_the_services_one_refusal_rule(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The same sender refused with no server running, during a server's life, and
    # after it: one FAIL line within the minute, as for any datagram service (before,
    # each running server logged it once more).
    port = free_port()
    daemons.start_config(config(tmp_path, port, "no_access = 127.0.0.3",
                                socket_type="dgram", count=2))
    with udp_from("127.0.0.2") as a, udp_from("127.0.0.3") as r:
        r.sendto(b"r1", ("127.0.0.1", port))        # no server: the dispatcher refuses
        a.sendto(b"a1", ("127.0.0.1", port))
        first = a.recv(1000).decode().split()[0]
        r.sendto(b"r2", ("127.0.0.1", port))        # the interceptor refuses
        a.sendto(b"a2", ("127.0.0.1", port))
        assert a.recv(1000).decode() == f"{first} peer=127.0.0.1 got=a2"
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {first}")
        r.sendto(b"r3", ("127.0.0.1", port))        # no server again
        a.sendto(b"a3", ("127.0.0.1", port))
        second = a.recv(1000).decode().split()[0]
        r.sendto(b"r4", ("127.0.0.1", port))        # the next server's interceptor
        a.sendto(b"a4", ("127.0.0.1", port))
        assert a.recv(1000).decode() == f"{second} peer=127.0.0.1 got=a4"
        text = wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {second}")
    assert text.count("FAIL: icept address from=127.0.0.3") == 1


def _held_round(daemon: Daemon, log: Path, port: int, sources: list[str]) -> list[str]:
    """One busy client and three held behind it, then each held client served as the
    exits start its server, until a cps trip: the held clients it closed (none when
    every start of the round fell in a later second than the one before)."""
    with tcp_from("127.0.0.2", port) as busy, tcp_from(sources[0], port) as a, \
            tcp_from(sources[1], port) as b, tcp_from(sources[2], port) as c:
        pid = busy.recv(4096).split()[0].decode()
        wait_log_lines(log, rf"START: icept {pid} from=127\.0\.0\.[345]", 3)
        busy.sendall(b"ping\n")
        assert busy.recv(4096) == b"ping\n"
        held = {conn: source for source, conn in zip(sources, (a, b, c))}
        closed_by_trip = []
        # Answered at once, so that the next start follows within the second; a
        # deadline bounds the wait for a load-delayed start.
        deadline = time.monotonic() + TIMEOUT
        while held and "Deactivating service icept" not in daemon.log():
            assert time.monotonic() < deadline, f"no server started for {held.values()}"
            ready, _, _ = select.select(list(held), [], [], 0.2)
            for conn in ready:
                source = held.pop(conn)
                greeting = conn.recv(4096)
                if greeting == b"":
                    closed_by_trip.append(source)
                else:
                    conn.sendall(b"ping\n")
                    assert conn.recv(4096) == b"ping\n"
        # The trip closes the held clients before its line: either shows it came.
        if not closed_by_trip and "Deactivating service icept" not in daemon.log():
            return []
        daemon.wait_for_log(r"Deactivating service icept")
        return closed_by_trip + [source for conn, source in held.items() if closed(conn)]


def test_clients_held_when_a_cps_trip_closes_the_socket_get_one_line(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Clients wait, relayed, for a server that serves one client per start; each exit
    # starts the next server for one of them, and the first start in the same whole
    # second (the cps window) as the one before trips `cps = 1 30`: the trip closes the
    # clients still held with the socket, with one WARNING naming them all (before:
    # closed without a word), after their START lines. Where the second boundaries fall
    # decides which start trips, or that none of a round does (each in a later second
    # than the one before): then a new round begins in a second after the last start,
    # so that its first start cannot trip.
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(config(tmp_path, port, count=1).replace(
        "\tcps = 0 0\n", "\tcps = 1 30\n"))
    sources = ["127.0.0.3", "127.0.0.4", "127.0.0.5"]
    deadline = time.monotonic() + 6 * TIMEOUT
    while not (closed_by_trip := _held_round(daemon, log, port, sources)):
        assert "Deactivating service icept" not in daemon.log(), "the trip closed no client"
        assert time.monotonic() < deadline, "no two starts in the same second"
        last_start = time.monotonic()      # the last start came before its greeting
        wait_until(lambda: int(time.monotonic()) > int(last_start), 2 * TIMEOUT,
                   what="the next second")
    closed_by_trip.sort()
    many = "client" if len(closed_by_trip) == 1 else "clients"
    daemon.wait_for_log(rf"WARNING: .*service icept: {len(closed_by_trip)} {many} from "
                        + re.escape(", ".join(closed_by_trip))
                        + r" held for the next server disconnected: a cps trip closed the "
                        r"service's socket")
    assert daemon.log().count("held for the next server") == 1
