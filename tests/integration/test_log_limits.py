"""log_type = FILE with size limits (reference §5.4): the soft-limit message the manual
promises (once), the hard limit closing the log, and a log truncated by a rotation
(copytruncate) counted from its real size."""

from __future__ import annotations

import re
from pathlib import Path

from tests.daemon import Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_dispatch import connect, read_all

TIMEOUT = 10.0


def start(daemons: DaemonFactory, tmp_path: Path, limits: str) -> tuple[Daemon, int, Path]:
    port, log = free_port(), tmp_path / "chatty.log"
    daemon = daemons.start_config(
        f"service chatty\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n\tbind = 127.0.0.1\n"
        f"\tport = {port}\n\tcps = 0 0\n\tlog_type = FILE {log} {limits}\n"
        f"\tlog_on_success = HOST PID\n}}\n")
    return daemon, port, log


def serve(port: int, log: Path, times: int) -> None:
    """`times` clients; returns once their START lines are in the log (or it closed)."""
    before = log.read_text().count("START") if log.exists() else 0
    for _ in range(times):
        with connect(port) as conn:
            assert read_all(conn) == b"hi\n"
    wait_until(lambda: log.exists() and log.read_text().count("START") >= before + times,
               TIMEOUT, what=f"{times} START lines")


def limit_lines(daemon: Daemon) -> list[str]:
    return re.findall(r"(?:ALERT|ERROR): (?:Size|Error) .*", daemon.log())


def test_soft_limit_message_once_then_hard_limit_closes_the_log(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    daemon, port, log = start(daemons, tmp_path, "300 500")
    serve(port, log, 4)     # about 60 bytes a line: under 300
    assert limit_lines(daemon) == []
    serve(port, log, 2)     # past 300
    daemon.wait_for_log(r"ALERT: Size of chatty log exceeded soft limit")
    for _ in range(6):      # past 500: the line is finished, then the log is closed
        with connect(port) as conn:
            read_all(conn)
    daemon.wait_for_log(r"Error in chatty log", count=2)
    found = limit_lines(daemon)
    assert found[:2] == ["ALERT: Size of chatty log exceeded soft limit",
                         "ERROR: Size of chatty log exceeded hard limit"]
    assert set(found[2:]) == {"ERROR: Error in chatty log: size limit reached"}
    size = log.stat().st_size
    assert 500 < size < 600
    with connect(port) as conn:
        read_all(conn)
    daemon.wait_for_log(r"Error in chatty log", count=len(found) - 1)
    assert log.stat().st_size == size


def test_a_truncated_log_is_measured_again(daemons: DaemonFactory, tmp_path: Path) -> None:
    daemon, port, log = start(daemons, tmp_path, "1000 1500")
    serve(port, log, 12)    # about 700 bytes
    log.write_bytes(b"")    # logrotate's copytruncate
    serve(port, log, 12)    # 1400 bytes written in all, about 700 in the file
    assert limit_lines(daemon) == []
    serve(port, log, 6)     # now the file itself is past 1000
    daemon.wait_for_log(r"ALERT: Size of chatty log exceeded soft limit")
    assert limit_lines(daemon) == ["ALERT: Size of chatty log exceeded soft limit"]


def test_a_log_already_past_its_hard_limit_gets_nothing(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    full = b"x" * 599 + b"\n"
    (tmp_path / "chatty.log").write_bytes(full)
    daemon, port, log = start(daemons, tmp_path, "300 500")
    for _ in range(2):
        with connect(port) as conn:
            assert read_all(conn) == b"hi\n"
    daemon.wait_for_log(r"Error in chatty log", count=2)
    assert limit_lines(daemon) == ["ALERT: Size of chatty log exceeded soft limit",
                                   "ERROR: Size of chatty log exceeded hard limit",
                                   "ERROR: Error in chatty log: size limit reached",
                                   "ERROR: Error in chatty log: size limit reached"]
    assert log.read_bytes() == full
