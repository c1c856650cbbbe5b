"""SIGUSR1: the state dump of a running daemon, read with the parser of xinetd's dump."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat.corpus import compare
from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port
from tests.oracle import parse_dump


@pytest.fixture
def dump_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(path))
    return path


def configuration(tmp_path: Path, ports: list[int]) -> str:
    server = HELPERS / "reload_server.py"
    return f"""
defaults
{{
    log_type = FILE {tmp_path / "common.log"}
    log_on_success = HOST PID EXIT
    log_on_failure = HOST
    instances = 20
    cps = 30 5
}}

service holder
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {ports[0]}
    bind = 127.0.0.1
    wait = no
    user = root
    group = nogroup
    server = {sys.executable}
    server_args = {server} H hold
    only_from = 127.0.0.1 10.0.0.0/8
    no_access = 10.1.0.0/16
    access_times = 00:00-23:59
    env = GREETING=hello OTHER=x
    passenv = PATH
    nice = 5
    umask = 027
    per_source = 4
    instances = UNLIMITED
}}

service echo
{{
    type = INTERNAL UNLISTED
    id = echo-stream
    socket_type = stream
    protocol = tcp
    port = {ports[1]}
    bind = 127.0.0.1
    wait = no
    log_type = SYSLOG daemon warning
}}

service daytime
{{
    type = INTERNAL UNLISTED
    id = daytime-dgram
    socket_type = dgram
    protocol = udp
    port = {ports[2]}
    bind = 127.0.0.1
    wait = yes
    log_type = FILE {tmp_path / "own.log"} 100k
    cps = 5 2
}}

service relay
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {ports[3]}
    wait = no
    user = nobody
    redirect = 127.0.0.1 {ports[1]}
    flags = IPv6
}}
"""


def check_json(conf: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "--json", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def take_dump(daemon: Daemon, dump_file: Path, count: int) -> str:
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log(rf"INFO: generated state dump in file {re.escape(str(dump_file))}",
                        count=count)
    return dump_file.read_text()


def test_dump_lists_what_check_reports(daemons: DaemonFactory, tmp_path: Path,
                                       dump_file: Path) -> None:
    ports = [free_port() for _ in range(4)]
    daemon = daemons.start_config(configuration(tmp_path, ports))
    conf = daemon.log_path.with_suffix(".conf")
    text = take_dump(daemon, dump_file, 1)
    assert text.startswith("INTERNAL STATE DUMP: pyxinetd ")
    assert text.endswith("END OF DUMP\n\n")
    state = parse_dump(text)
    report = check_json(conf)
    assert compare(state, report) == []
    assert [s.id for s in state.services] == ["holder", "echo-stream", "daytime-dgram", "relay"]
    assert all(s.state == "Active" for s in state.services)
    holder = state.by_id()["holder"]
    assert holder.only_from == "127.0.0.1(NUMERIC) 10.0.0.0/255.0.0.0(NET)"
    assert holder.no_access == "10.1.0.0/255.255.0.0(NET)"
    assert holder.access_times == "00:00-23:59"
    assert holder.env_additions == ("GREETING=hello", "OTHER=x")
    assert state.by_id()["relay"].redirect == f"127.0.0.1:{ports[1]}"
    assert "Logging to file: " in (state.by_id()["daytime-dgram"].log or "")
    assert f"config_file = {conf}" in text


def test_dump_shows_running_servers_and_appends(daemons: DaemonFactory, tmp_path: Path,
                                               dump_file: Path) -> None:
    ports = [free_port() for _ in range(4)]
    daemon = daemons.start_config(configuration(tmp_path, ports))
    first = take_dump(daemon, dump_file, 1)
    assert re.search(r"^Service = holder\n(\t.*\n)*\trunning servers = 0\n", first, re.M)
    with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as conn:
        pid = int(conn.recv(100).decode().split("pid=")[1])
        both = take_dump(daemon, dump_file, 2)
    assert both.startswith(first) and both.count("INTERNAL STATE DUMP") == 2
    second = both[len(first):]
    assert re.search(r"^Service = holder\n(\t.*\n)*\trunning servers = 1\n", second, re.M)
    table = second.split("Server table dump:\n", 1)[1].split("Retry table dump:", 1)[0]
    assert f"holder server\npid = {pid}\n" in table
    assert "remote_address = 127.0.0.1" in table
    assert "running_servers = 1" in second
    assert stat.S_IMODE(os.stat(dump_file).st_mode) == 0o644


def test_dump_file_that_cannot_be_written_is_logged(daemons: DaemonFactory, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "missing" / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(target))
    daemon = daemons.start_config(configuration(tmp_path, [free_port() for _ in range(4)]))
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log(rf"ERROR: open\( {re.escape(str(target))} \) failed: No such file")
    assert daemon.proc.poll() is None


def test_dump_file_that_is_a_fifo_never_makes_the_daemon_wait(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = [free_port() for _ in range(4)]
    target = tmp_path / "xinetd.dump"
    os.mkfifo(target)
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(target))
    daemon = daemons.start_config(configuration(tmp_path, ports))
    # Nobody reads the FIFO: the open fails at once instead of waiting for a reader.
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log(rf"ERROR: open\( {re.escape(str(target))} \) failed: No such device "
                        r"or address")
    with socket.create_connection(("127.0.0.1", ports[1]), timeout=10) as conn:
        conn.sendall(b"still serving")
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == b"still serving"
    # A reader that takes nothing more, its pipe full: the dump fails at once with
    # what it could not write reported, instead of waiting for room.
    reader = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            while True:
                os.write(writer, b"x" * 65536)
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log(rf"ERROR: write to {re.escape(str(target))} failed, dump "
                            r"incomplete: Resource temporarily unavailable")
    finally:
        os.close(writer)
        os.close(reader)
    with socket.create_connection(("127.0.0.1", ports[1]), timeout=10) as conn:
        conn.sendall(b"and still")
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == b"and still"
