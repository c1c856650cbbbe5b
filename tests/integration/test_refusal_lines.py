"""What a refusal writes, and in which order: the program-log line of a max_load or cps
refusal comes before the FAIL line (xinetd writes it from its checks, before it logs the
failure), and a datagram sender refused for its address is logged once a minute.

The program log and the service log are one file here (`-filelog F` and
`log_type = FILE F`): both append, so the file shows the order the lines were written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_dispatch import connect, read_all

TIMEOUT = 10.0


def service(name: str, port: int, log: Path, extra: str = "",
            socket_type: str = "stream") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = {socket_type}\n"
            f"\twait = no\n\tuser = root\n\tserver = /bin/echo\n\tserver_args = hello\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tlog_type = FILE {log}\n"
            f"\tlog_on_success = HOST PID\n\tlog_on_failure = HOST\n{extra}}}\n")


def shared_log(tmp_path: Path) -> Path:
    # DaemonFactory's first daemon writes its program log (-filelog) here.
    return tmp_path / "daemon1.log"


def lines(daemon: Daemon, *needles: str) -> list[str]:
    """The log's lines that hold one of `needles`, in file order, without the stamp
    (and the `xinetd[PID]` of program-log lines): `LEVEL: text` or `FAIL: ...`."""
    return [line.split(": ", 1)[1] for line in daemon.log().splitlines()
            if any(n in line for n in needles)]


def load_wrapper(tmp_path: Path) -> tuple[str, ...]:
    """A mount namespace whose /proc/loadavg reads 9.50: max_load = 1 then refuses."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /proc/loadavg")
    fake = tmp_path / "loadavg"
    fake.write_text("9.50 9.00 8.00 1/100 1234\n")
    return ("unshare", "-m", "--", "sh", "-c", 'mount --bind "$0" /proc/loadavg && exec "$@"',
            str(fake))


def test_max_load_refusal_logs_the_load_error_then_fail(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    port = free_port()
    log = shared_log(tmp_path)
    daemon = daemons.start_config(service("busy", port, log, "\tmax_load = 1\n"),
                                  wrapper=load_wrapper(tmp_path))
    with connect(port) as conn:
        assert read_all(conn) == b""
    daemon.wait_for_log(r"FAIL: busy load")
    assert lines(daemon, "excessive load", "FAIL") == [
        "ERROR: refused connect from 127.0.0.1 due to excessive load",
        "FAIL: busy load from=127.0.0.1",
    ]


def test_cps_trip_logs_the_deactivation_then_fail(daemons: DaemonFactory,
                                                  tmp_path: Path) -> None:
    port = free_port()
    log = shared_log(tmp_path)
    daemon = daemons.start_config(service("rate", port, log, "\tcps = 1 3\n"))
    for _ in range(10):
        try:
            with connect(port) as conn:
                read_all(conn)
        except (ConnectionRefusedError, ConnectionResetError):
            break
    daemon.wait_for_log(r"FAIL: rate connections per second")
    assert lines(daemon, "Deactivating", "FAIL") == [
        "ERROR: Deactivating service rate due to excessive incoming connections.  "
        "Restarting in 3 seconds.",
        "FAIL: rate connections per second from=127.0.0.1",
    ]


def test_datagram_address_refusal_is_logged_once_per_sender(daemons: DaemonFactory,
                                                            tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "services.log"
    conf = (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = echo-dgram\n"
            f"\tsocket_type = dgram\n\twait = yes\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"\tonly_from = 10.1.2.3\n\tlog_type = FILE {log}\n\tlog_on_failure = HOST\n}}\n")
    daemons.start_config(conf)
    first, second = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    with first, second:
        for sock in (first, second):
            sock.bind(("127.0.0.1", 0))
        # first, first again (not logged), second, first (no longer the last sender).
        for sock in (first, first, second, first):
            sock.sendto(b"x", ("127.0.0.1", port))
            time.sleep(0.2)
        # A refused echo never answers; the last datagram's line shows all were handled.
        wait_until(lambda: log.exists() and log.read_text().count("FAIL") >= 3, TIMEOUT,
                   what="three FAIL lines")
        time.sleep(0.5)
    assert [line.split(": ", 1)[1] for line in log.read_text().splitlines()] == [
        "FAIL: echo-dgram address from=127.0.0.1"] * 3


def test_stream_address_refusals_are_all_logged(daemons: DaemonFactory,
                                                tmp_path: Path) -> None:
    # The once-a-minute rule is for datagrams only: a connection is refused each time.
    port = free_port()
    log = tmp_path / "services.log"
    daemons.start_config(service("acl", port, log, "\tonly_from = 10.1.2.3\n"))
    for _ in range(3):
        with connect(port) as conn:
            assert read_all(conn) == b""
    wait_until(lambda: log.exists() and log.read_text().count("FAIL: acl address") == 3,
               TIMEOUT, what="three FAIL lines")


def test_debug_lines_name_xinetds_functions(daemons: DaemonFactory, tmp_path: Path) -> None:
    # -d prefixes every line with `PID {function}`; the functions are xinetd's.
    port = free_port()
    daemon = daemons.start_config(service("rate", port, tmp_path / "services.log",
                                          "\tcps = 1 1\n"), "-d")
    for _ in range(10):
        try:
            with connect(port) as conn:
                read_all(conn)
        except (ConnectionRefusedError, ConnectionResetError):
            break
    pid = daemon.pid
    daemon.wait_for_log(rf"ERROR: {pid} {{service_stop}} Deactivating service rate ")
    daemon.wait_for_log(rf"ERROR: {pid} {{cps_service_restart}} Activating service rate")
    daemon.signal(signal.SIGTERM)
    daemon.wait_exit()
    daemon.wait_for_log(rf"WARNING: {pid} {{quit_program}} Exiting\.\.\.")
