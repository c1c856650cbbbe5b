"""SIGUSR1: the server table of the state dump names each running server's connection
as xinetd does (descriptor, flags, the client's address and port, log_remote_user,
writes_to_log); tests/compat/test_dump_compat.py compares it with the real xinetd."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_log_lines, wait_until
from tests.integration.test_intercept import config as intercepted_config
from tests.integration.test_intercept import tcp_from, twist_rules


def configuration(log: Path, ports: list[int]) -> str:
    def service(name: str, socket_type: str, protocol: str, wait: str, port: int,
                flags: str = "") -> str:
        return (f"service {name}\n{{\n    type = UNLISTED\n    socket_type = {socket_type}\n"
                f"    protocol = {protocol}\n    port = {port}\n    bind = 127.0.0.1\n"
                f"    wait = {wait}\n    user = nobody\n    server = /bin/sleep\n"
                f"    server_args = 20\n{flags}}}\n")
    return (f"defaults\n{{\n    log_type = FILE {log}\n    log_on_success = PID HOST USERID\n}}\n"
            + service("nowait", "stream", "tcp", "no", ports[0])
            + service("waits", "stream", "tcp", "yes", ports[1])
            + service("datagrams", "dgram", "udp", "yes", ports[2])
            + (service("intercepted", "dgram", "udp", "yes", ports[3],
                       "    flags = INTERCEPT\n") if len(ports) > 3 else ""))


def server_entry(dump: str, sid: str) -> str:
    match = re.search(rf"(?ms)^{sid} server\n.*?\n\n", dump)
    assert match, dump
    return match.group()


def test_server_table_shows_each_connection(daemons: DaemonFactory, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    ports = [free_port() for _ in range(3)]
    daemon = daemons.start_config(configuration(tmp_path / "services.log", ports))
    with socket.create_connection(("127.0.0.1", ports[0])) as stream, \
            socket.create_connection(("127.0.0.1", ports[1])), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        datagram.bind(("127.0.0.1", 0))
        datagram.sendto(b"x", ("127.0.0.1", ports[2]))
        log = tmp_path / "services.log"
        wait_until(lambda: log.exists() and log.read_text().count("START:") >= 3, 10,
                   what="three servers")
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log("generated state dump")
        dump = dump_file.read_text()
        nowait = server_entry(dump, "nowait")
        assert (f"\tdescriptor = -1\n\tflags = 3\n\tremote_address = 127.0.0.1,"
                f"{stream.getsockname()[1]}\nlog_remote_user = YES\nwrites_to_log = YES\n"
                ) in nowait
        waits = server_entry(dump, "waits")
        assert re.search(r"\tdescriptor = [0-9]+\n\tflags = 1\n\tremote_address = "
                         r"<no address>,0\nlog_remote_user = NO\nwrites_to_log = NO\n", waits)
        datagrams = server_entry(dump, "datagrams")
        assert re.search(rf"\tdescriptor = [0-9]+\n\tflags = 1\n\tremote_address = 127\.0\.0\.1,"
                         rf"{datagram.getsockname()[1]}\nlog_remote_user = NO\n", datagrams)


def test_an_intercepted_datagram_server_shows_its_first_senders_port(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """INTERCEPT relays through a private socket that has no peer; the dump still names
    the sender whose datagram started the server, as without INTERCEPT."""
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    ports = [free_port() for _ in range(3)] + [free_port()]
    daemon = daemons.start_config(configuration(tmp_path / "services.log", ports))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        datagram.bind(("127.0.0.1", 0))
        datagram.sendto(b"x", ("127.0.0.1", ports[3]))
        log = tmp_path / "services.log"
        wait_until(lambda: log.exists() and "START: intercepted" in log.read_text(), 10,
                   what="the intercepted server")
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log("generated state dump")
        entry = server_entry(dump_file.read_text(), "intercepted")
        assert re.search(rf"\tremote_address = 127\.0\.0\.1,{datagram.getsockname()[1]}\n",
                         entry), entry


def test_a_twist_command_for_an_intercepted_stream_client_shows_that_client(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hosts.allow `twist` run for a client of a running intercepted stream server
    gets that client's connection, as a wait = no server does: its entry shows the
    connection the daemon closed (descriptor -1, flags 3), the client's address and
    port, and no log written for it by the interceptor. Before, it was shown as the
    wait = yes service's server: the service socket's descriptor, `<no address>,0` and
    `writes_to_log = YES`."""
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    twist_rules(tmp_path, monkeypatch, "/bin/sh -c 'echo twisted; head -c 1 >/dev/null'")
    port = free_port()
    daemon = daemons.start_config(intercepted_config(tmp_path, port, "libwrap = in.icept",
                                                     count=1))
    with tcp_from("127.0.0.2", port) as first:
        assert first.recv(4096).startswith(b"pid=")
        with tcp_from("127.0.0.4", port) as twisted:
            assert twisted.recv(4096) == b"twisted\n"
            text = wait_log_lines(tmp_path / "services.log",
                                  r"START: icept pid=\d+ from=127\.0\.0\.4")
            pid = re.findall(r"START: icept pid=(\d+) from=127\.0\.0\.4", text)[0]
            daemon.signal(signal.SIGUSR1)
            daemon.wait_for_log("generated state dump")
            dump = dump_file.read_text()
            entry = re.search(rf"(?ms)^icept server\npid = {pid}\n.*?\n\n", dump)
            assert entry, dump
            assert (f"\tdescriptor = -1\n\tflags = 3\n\tremote_address = 127.0.0.4,"
                    f"{twisted.getsockname()[1]}\nlog_remote_user = NO\n"
                    f"writes_to_log = NO\n") in entry.group()
            twisted.sendall(b"x")
        first.sendall(b"ping\n")
        assert first.recv(4096) == b"ping\n"
