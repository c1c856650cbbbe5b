"""What a reload does to the running servers of kept and removed services, as xinetd.

Real daemon, real servers that hold their connection (tests/helpers/reload_server.py).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, read_log, wait_until
from tests.integration.test_reload import defaults, read_line, reload, service, \
    service_log, wait_service_log


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "0.5")


def hold(port: int) -> tuple[socket.socket, int]:
    """A client whose server holds the connection; returns it with the server's pid."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    return conn, int(read_line(conn).split("pid=")[1])


def test_running_services_are_readjusted_or_deactivated_in_their_order(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    a, b, c, d = (free_port() for _ in range(4))
    daemon = daemons.start_config(defaults(tmp_path) + service("a", a, "A")
                                  + service("b", b, "B") + service("c", c, "C")
                                  + service("d", d, "D"))
    # c changes, a does not: xinetd's order is still the running one, a b c d.
    log = reload(daemon, defaults(tmp_path) + service("c", c, "C2") + service("a", a, "A"), 1)
    lines = [line.split(": ", 2)[-1] for line in log.splitlines()
             if "readjusting" in line or "deactivated" in line]
    assert lines == ["readjusting service a", "service b deactivated",
                     "readjusting service c", "service d deactivated"]
    assert "Reconfigured: new=0 old=2 dropped=2 (services)" in log


def test_servers_of_a_kept_service_belong_to_its_new_configuration(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path)
                                  + service("Foo", port, "A", "hold", instances="1"))
    first, pid = hold(port)
    with first:
        # Only the case of the id changes (the same service), and its log file.
        log = reload(daemon, defaults(tmp_path) + service(
            "foo", port, "B", "hold", instances="1",
            log_type=f"FILE {tmp_path / 'new.log'}"), 1)
        assert "readjusting service Foo" in log
        # The running server still counts toward instances = 1.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert second.recv(100) == b""
        wait_until(lambda: "FAIL: foo service_limit from=127.0.0.1"
                   in read_log(tmp_path / "new.log"), what="FAIL in the new log")
    # Its EXIT is logged with the configuration it runs under now, as xinetd does.
    wait_until(lambda: re.search(rf"EXIT: foo status=0 pid={pid}\b",
                                 read_log(tmp_path / "new.log")), what="EXIT in the new log")
    assert f"EXIT: Foo status=0 pid={pid}" not in read_log(tmp_path / "services.log")
    second, _ = hold(port)
    second.close()


def test_a_removed_service_sharing_its_id_ends_servers_started_before_a_readjust(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    pair = (service("dup", one, "A", "hold"), service("dup", two, "B", "hold"))
    daemon = daemons.start_config(defaults(tmp_path) + pair[0] + pair[1])
    conn, pid = hold(one)
    with conn:
        reload(daemon, defaults(tmp_path) + service("dup", one, "A2", "hold") + pair[1], 1)
        log = reload(daemon, defaults(tmp_path) + pair[1], 2)
        assert "Reconfigured: new=0 old=1 dropped=1 (services)" in log.split(
            "Starting reconfiguration")[-1]
        wait_service_log(tmp_path, rf"EXIT: dup signal=15 pid={pid}\b")
        assert conn.recv(100) == b""


def test_added_services_come_after_the_kept_ones(daemons: DaemonFactory,
                                                  tmp_path: Path) -> None:
    a, b, c = free_port(), free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("a", a, "A")
                                  + service("c", c, "C"))
    text = (defaults(tmp_path) + service("a", a, "A") + service("b", b, "B")
            + service("c", c, "C"))
    assert "Reconfigured: new=1 old=2 dropped=0 (services)" in reload(daemon, text, 1)
    # xinetd appends an added service to its table: b now runs after c.
    log = reload(daemon, None, 2).split("Starting reconfiguration")[-1]
    assert re.findall(r"readjusting service (\w+)", log) == ["a", "c", "b"]


def test_servers_of_a_removed_service_leave_its_id_free_while_they_end(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The old server ignores SIGTERM, and its SIGKILL is far away.
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "60")
    old, new = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service(
        "s", old, "A", "hold", "ignore-term", instances="1", per_source="1"))
    conn, pid = hold(old)
    with conn:
        # Another port: a different service with the same id (removed, then added).
        log = reload(daemon, defaults(tmp_path) + service(
            "s", new, "B", "hold", instances="1", per_source="1"), 1)
        assert "Reconfigured: new=1 old=0 dropped=1 (services)" in log
        assert f"Sending signal 15 to s server {pid}" in daemon.log()
        # The dying server is no instance of the new service: its one slot is free.
        second, _ = hold(new)
        second.close()
        assert "FAIL" not in read_log(tmp_path / "services.log")


def tcpmux_conf(tmp_path: Path, port: int, *muxed: str) -> str:
    text = defaults(tmp_path) + (
        f"service tcpmux\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n}}\n")
    for name in muxed:
        text += (f"service {name}\n{{\n\ttype = TCPMUX UNLISTED\n\tsocket_type = stream\n"
                 f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = /bin/echo\n"
                 f"\tserver_args = {name}\n}}\n")
    return text


def test_a_tcpmux_session_still_reading_its_name_looks_it_up_in_the_new_configuration(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(tcpmux_conf(tmp_path, port, "foo", "same"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as gone, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as added, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as changed:
        wait_service_log(tmp_path, r"(?s)START: tcpmux .*START: tcpmux .*START: tcpmux ")
        reload(daemon, tcpmux_conf(tmp_path, port, "bar", "same").replace(
            "server_args = same", "server_args = same changed"), 1)
        gone.sendall(b"foo\r\n")
        added.sendall(b"bar\r\n")
        changed.sendall(b"same\r\n")
        assert read_line(gone) == "-Service name not found\r\n"
        assert read_line(added) == "bar\n"
        # A service the reload changed runs with its new attributes.
        assert read_line(changed) == "same changed\n"


def setenv_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hosts.allow admits the clients of `libwrap = in.kept` with an option
    (`setenv`): their servers run a copy of the service made for them."""
    (tmp_path / "hosts.allow").write_text("in.kept: ALL: setenv KEPT_OPTION yes\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))


def test_servers_started_with_a_hosts_allow_option_belong_to_the_new_configuration(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setenv_rule(tmp_path, monkeypatch)
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service(
        "kept", port, "A", "hold", libwrap="in.kept"))
    first, pid = hold(port)
    with first:
        reload(daemon, defaults(tmp_path) + service(
            "kept", port, "B", "hold", libwrap="in.kept",
            log_type=f"FILE {tmp_path / 'new.log'}"), 1)
    # Its EXIT is logged with the configuration it runs under now, as for a server
    # started without an option.
    wait_until(lambda: re.search(rf"EXIT: kept status=0 pid={pid}\b",
                                 read_log(tmp_path / "new.log")), what="EXIT in the new log")
    assert f"EXIT: kept status=0 pid={pid}" not in read_log(tmp_path / "services.log")


def test_a_removed_service_sharing_its_id_ends_servers_started_with_an_option(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setenv_rule(tmp_path, monkeypatch)
    one, two = free_port(), free_port()
    pair = (service("dup", one, "A", "hold", libwrap="in.kept"),
            service("dup", two, "B", "hold", libwrap="in.kept"))
    daemon = daemons.start_config(defaults(tmp_path) + pair[0] + pair[1])
    conn, pid = hold(one)
    with conn:
        reload(daemon, defaults(tmp_path) + service("dup", one, "A2", "hold",
                                                    libwrap="in.kept") + pair[1], 1)
        reload(daemon, defaults(tmp_path) + pair[1], 2)
        wait_service_log(tmp_path, rf"EXIT: dup signal=15 pid={pid}\b")
        assert conn.recv(100) == b""


def echo_service(port: int, **attrs: str) -> str:
    lines = {"type": "INTERNAL UNLISTED", "id": "echo-kept", "socket_type": "stream",
             "wait": "no", "user": "root", "bind": "127.0.0.1", "port": str(port), **attrs}
    return "service echo\n{\n" + "".join(f"\t{k} = {v}\n" for k, v in lines.items()) + "}\n"


def test_in_loop_sessions_of_a_kept_service_log_their_exit_with_its_new_configuration(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd's master logs the EXIT of a forked builtin when it reaps it, with the
    # service as the reload left it: its new log file.
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + echo_service(port))
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    with conn:
        conn.sendall(b"hi\n")
        assert read_line(conn) == "hi\n"
        wait_service_log(tmp_path, r"START: echo-kept pid=0 from=127.0.0.1")
        reload(daemon, defaults(tmp_path) + echo_service(
            port, log_type=f"FILE {tmp_path / 'new.log'}"), 1)
    wait_until(lambda: "EXIT: echo-kept status=0 pid=0" in read_log(tmp_path / "new.log"),
               what="EXIT in the new log")
    assert "EXIT" not in service_log(tmp_path)


def redirect_service(port: int, target: int, **attrs: str) -> str:
    lines = {"type": "UNLISTED", "socket_type": "stream", "wait": "no", "user": "root",
             "bind": "127.0.0.1", "port": str(port), "redirect": f"127.0.0.1 {target}",
             "log_on_success": "PID HOST EXIT TRAFFIC", **attrs}
    return "service redir\n{\n" + "".join(f"\t{k} = {v}\n" for k, v in lines.items()) + "}\n"


def test_a_redirect_session_logs_traffic_as_started_and_exit_as_the_reload_left_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd's redirect child writes TRAFFIC with the service it was forked with (its
    # log file, its log_on_success); the master logs the child's EXIT when it reaps
    # it, with the service as the reload left it.
    echo, port = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + echo_service(echo)
                                  + redirect_service(port, echo))
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    with conn:
        conn.sendall(b"hi\n")
        assert read_line(conn) == "hi\n"
        wait_service_log(tmp_path, r"START: redir pid=0 from=127.0.0.1")
        reload(daemon, defaults(tmp_path) + echo_service(echo) + redirect_service(
            port, echo, log_type=f"FILE {tmp_path / 'new.log'}",
            log_on_success="PID EXIT"), 1)
    wait_service_log(tmp_path, r"TRAFFIC: redir in=3\(bytes\) out=3\(bytes\)")
    wait_until(lambda: "EXIT: redir status=0 pid=0" in read_log(tmp_path / "new.log"),
               what="EXIT in the new log")
    assert "EXIT: redir" not in service_log(tmp_path)
    assert "TRAFFIC" not in read_log(tmp_path / "new.log")


def test_connections_of_unchanged_services_go_on_across_reloads(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # moby/moby issue 40209: a reload is not a restart. The connections of a service the
    # reload keeps unchanged stay up and keep being served, whoever serves them: an
    # external server, an in-loop builtin, a redirect session; only another service
    # is added, changed and removed around them.
    cat, echo, redir, other, added = (free_port() for _ in range(5))
    kept = (service("cat", cat, server="/bin/cat", server_args="-u")
            + echo_service(echo) + redirect_service(redir, echo))
    daemon = daemons.start_config(defaults(tmp_path) + kept + service("other", other, "O"))
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10)
               for port in (cat, echo, redir)]
    try:
        for conn in clients:
            conn.sendall(b"before\n")
            assert read_line(conn) == "before\n"
        reload(daemon, defaults(tmp_path) + kept + service("other", other, "O2"), 1)
        log = reload(daemon, defaults(tmp_path) + kept + service("added", added, "N"), 2)
        assert "Reconfigured: new=1 old=3 dropped=1 (services)" in log.split(
            "Starting reconfiguration")[-1]
        for conn in clients:
            conn.sendall(b"after\n")
            assert read_line(conn) == "after\n"
    finally:
        for conn in clients:
            conn.close()
    wait_service_log(tmp_path, r"EXIT: cat status=0 pid=[1-9]")
    # Two echo sessions: the client's own and the redirect's.
    wait_until(lambda: service_log(tmp_path).count("EXIT: echo-kept status=0 pid=0") == 2,
               what="both echo sessions' EXIT")
    wait_service_log(tmp_path, r"EXIT: redir status=0 pid=0")
    assert "signal=" not in service_log(tmp_path)
