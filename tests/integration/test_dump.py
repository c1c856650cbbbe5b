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


def test_a_relative_dump_file_is_in_the_folder_the_daemon_started_in(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon runs in `/` once started; the path means the folder it was started in
    # (tests.daemon starts it in tmp_path), and the log line names it in full.
    monkeypatch.setenv("PYXINETD_DUMP_FILE", "relative.dump")
    daemon = daemons.start_config(configuration(tmp_path, [free_port() for _ in range(4)]))
    text = take_dump(daemon, tmp_path / "relative.dump", 1)
    assert "INTERNAL STATE DUMP" in text


def test_dump_file_that_cannot_be_written_is_logged(daemons: DaemonFactory, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "missing" / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(target))
    daemon = daemons.start_config(configuration(tmp_path, [free_port() for _ in range(4)]))
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log(rf"ERROR: failed to open {re.escape(str(target))}: No such file")
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
    daemon.wait_for_log(rf"ERROR: failed to open {re.escape(str(target))}: No such device "
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


def test_dump_states_and_counts_of_suspended_and_disabled_services(
        daemons: DaemonFactory, tmp_path: Path, dump_file: Path) -> None:
    # As xinetd 2.3.15.3: a wait = yes service whose server runs is `Suspended`, one a
    # cps trip closed is `Disabled`; neither prints the counters of an active service,
    # both are left out of active_services, and the disabled one out of the available.
    ports = [free_port() for _ in range(3)]
    daemon = daemons.start_config(f"""
service waits
{{
    type = UNLISTED
    socket_type = dgram
    protocol = udp
    port = {ports[0]}
    bind = 127.0.0.1
    wait = yes
    user = root
    server = {sys.executable}
    server_args = {HELPERS / "udp_wait_server.py"} 30
}}

service echo
{{
    type = INTERNAL UNLISTED
    id = echo-tripped
    socket_type = stream
    protocol = tcp
    port = {ports[1]}
    bind = 127.0.0.1
    wait = no
    cps = 1 30
}}

service discard
{{
    type = INTERNAL UNLISTED
    id = discard-quiet
    socket_type = stream
    protocol = tcp
    port = {ports[2]}
    bind = 127.0.0.1
    wait = no
}}
""")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"x", ("127.0.0.1", ports[0]))
        assert client.recv(100).startswith(b"pid=")
    # cps = 1 trips on two requests in one second: connect until the socket is closed
    # (three in a row, taking over a second, could each fall in a later second than the
    # one before).
    for _ in range(10):
        try:
            with socket.create_connection(("127.0.0.1", ports[1]), timeout=5):
                pass
        except OSError:
            break
    daemon.wait_for_log("Deactivating service echo due")
    text = take_dump(daemon, dump_file, 1)
    services = text.split("\nServer table dump:")[0].split("\nService = ")[1:]
    blocks = {"Service = " + b.split("\n", 1)[0]: b for b in services}
    assert "\tState = Suspended\n" in blocks["Service = waits"]
    assert "\tState = Disabled\n" in blocks["Service = echo"]
    assert "\tState = Active\n" in blocks["Service = discard"]
    assert "running servers" not in blocks["Service = waits"]
    assert "running servers" not in blocks["Service = echo"]
    assert "\trunning servers = 0\n" in blocks["Service = discard"]
    assert "\nactive_services = 1\navailable_services = 2\n" in text
    assert "\nrunning_servers = 1\n" in text


def test_dump_service_lines_in_xinetds_order(daemons: DaemonFactory, tmp_path: Path,
                                             dump_file: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(f"""
defaults
{{
    log_type = FILE {tmp_path / "common.log"}
    log_on_success = PID HOST USERID EXIT DURATION
    log_on_failure = USERID ATTEMPT HOST
    groups = yes
    max_load = 3
    passenv = PATH
}}

service plain
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    bind = 127.0.0.1
    wait = no
    user = nobody
    server = {sys.executable}
    only_from = 2001:db8::/32 .example.com
    libwrap = plainsvc
}}
""")
    text = take_dump(daemon, dump_file, 1)
    defaults, service = text.split("Service defaults\n")[1].split("Service = plain\n")
    assert defaults.startswith("\tGroups = yes\n\tBind = All addresses.\n")
    assert "\tLog_on_success flags = HOST DURATION EXIT PID USERID\n" in defaults
    assert "\tLog_on_failure flags = HOST ATTEMPT USERID\n" in defaults
    assert f"\tPassenv = PATH\n\tEnvironment strings:\n\t\tPATH={os.environ['PATH']}\n" \
        in defaults
    assert "Max_load" not in text
    assert "\t\tuser = 65534\n\t\tGroups = yes\n" in service  # no group: not written
    assert f"\t\tServer argv = {Path(sys.executable).name}\n\t\tLibwrap = plainsvc\n" in service
    assert "\t\tOnly from:  2001:db8::/ffff:ffff::(NET) .example.com(HOST)\n" in service
    assert "\t\tPassenv = PATH\n\trunning servers = 0\n" in service  # inherited: no strings
    assert "\tservice fd = " in service and service.split("\tservice fd = ")[1].split("\n")[1:3] \
        == ["", "Server table dump:"]


def test_a_sensor_shows_no_server(
        daemons: DaemonFactory, tmp_path: Path, dump_file: Path) -> None:
    # A SENSOR starts no server: xinetd's dump shows no `Server` lines for it.
    port = free_port()
    daemon = daemons.start_config(f"""
service trap
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    bind = 127.0.0.1
    wait = no
    user = nobody
    server = /bin/true
    flags = SENSOR
    deny_time = -1
}}
""")
    service = take_dump(daemon, dump_file, 1).split("Service = trap\n")[1]
    assert "Server" not in service.split("Deny Time")[0]
    assert "\t\tDeny Time: -1\n" in service
