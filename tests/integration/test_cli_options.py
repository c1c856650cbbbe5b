"""xinetd's numeric options on a running daemon: what 0 means, what -cc logs."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.daemon import DaemonFactory, free_port
from tests.integration.test_dispatch import connect, read_all


def echo_service(port: int, text: str = "hello") -> str:
    return (f"service greeter\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n"
            f"\tuser = nobody\n"
            f"\tserver = /bin/echo\n\tserver_args = {text}\n"
            f"\tlog_on_failure = HOST\n}}\n")


def test_limit_0_sets_no_process_limit(daemons: DaemonFactory) -> None:
    # xinetd: `-limit 0` leaves process_limit unset (every check is `if (process_limit)`);
    # it must not refuse every connection with `process_limit`.
    port = free_port()
    daemon = daemons.start_config(echo_service(port), "-limit", "0")
    for _ in range(2):
        with connect(port) as conn:
            assert read_all(conn) == b"hello\n"
    assert "process_limit" not in daemon.log()


def test_limit_1_still_limits(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    conf = (f"service holder\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n"
            f"\tuser = nobody\n"
            f"\tserver = /bin/sleep\n\tserver_args = 300\n\tlog_on_success = PID\n"
            f"\tlog_on_failure = HOST\n"
            f"\tlog_type = FILE {tmp_path / 'svc.log'}\n}}\n")
    daemons.start_config(conf, "-limit", "1")
    first = connect(port)
    try:
        deadline = time.monotonic() + 10
        while "START: holder" not in _read(tmp_path / "svc.log"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with connect(port) as second:
            assert read_all(second) == b""
        deadline = time.monotonic() + 10
        while "FAIL: holder process_limit" not in _read(tmp_path / "svc.log"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        first.close()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_periodic_consistency_check_logs_a_pass_only_in_debug_mode(
        daemons: DaemonFactory) -> None:
    # xinetd logs `Consistency check passed` for SIGABRT, and for the -cc timer only
    # with -d; otherwise `-cc N` would add a line to the log every N seconds.
    quiet = daemons.start_config(echo_service(free_port()), "-cc", "1")
    debug = daemons.start_config(echo_service(free_port()), "-cc", "1", "-d")
    debug.wait_for_log("Consistency check passed", count=2, timeout=10)
    assert "Consistency check" not in quiet.log()
    quiet.signal(signal.SIGABRT)
    quiet.wait_for_log("Consistency check passed")
    time.sleep(1.5)
    assert quiet.log().count("Consistency check passed") == 1
