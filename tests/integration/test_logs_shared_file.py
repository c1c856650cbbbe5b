"""Two services whose `log_type = FILE` names the same file, with size limits: as in
xinetd, each service has its own log (xinetd opens the file once per service), so each
reports the limits under its own id and keeps writing until its own entry finds the
file past its hard limit."""

from __future__ import annotations

import re
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, wait_log_lines
from tests.integration.test_dispatch import connect, read_all


def service(name: str, port: int, log: Path) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n\tcps = 0 0\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tlog_type = FILE {log} 300 500\n"
            f"\tlog_on_success = HOST PID\n}}\n")


def test_each_service_reports_the_limits_of_a_shared_file_under_its_own_id(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    log = tmp_path / "shared.log"
    ports = {"aa": free_port(), "bb": free_port()}
    daemon = daemons.start_config("".join(service(name, port, log)
                                          for name, port in ports.items()))
    for _ in range(10):     # about 45 bytes a line, 20 lines: past 500
        for port in ports.values():
            with connect(port) as conn:
                assert read_all(conn) == b"hi\n"
    daemon.wait_for_log(r"Error in bb log")
    daemon.wait_for_log(r"Error in aa log")
    lines = re.findall(r"(?:ALERT|ERROR): (?:Size|Error) .*", daemon.log())
    for name in ports:
        mine = [line for line in lines if f" {name} log" in line]
        assert mine[:2] == [f"ALERT: Size of {name} log exceeded soft limit",
                            f"ERROR: Size of {name} log exceeded hard limit"]
        assert set(mine[2:]) == {f"ERROR: Error in {name} log: size limit reached"}
    text = log.read_text()
    # Every START line is written or reported, under its own service.
    for name in ports:
        written = len(re.findall(rf"START: {name} ", text))
        refused = sum(f"Error in {name} log" in line for line in lines)
        assert written + refused == 10
    # The file's own size is what the limit is about: the line that crossed it is the
    # last one written.
    last = len(text.splitlines()[-1]) + 1
    assert len(text) > 500 >= len(text) - last


def test_a_service_past_its_hard_limit_does_not_stop_the_others_on_the_same_file(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The services share one descriptor for the file: the one closed by its own hard
    # limit lets go of its log only, the other goes on writing through it.
    log = tmp_path / "shared.log"
    ports = {"aa": free_port(), "bb": free_port()}
    limited = service("aa", ports["aa"], log)
    unlimited = service("bb", ports["bb"], log).replace(f"{log} 300 500", f"{log}")
    daemon = daemons.start_config(limited + unlimited)
    for _ in range(12):     # aa alone goes past 500 bytes
        with connect(ports["aa"]) as conn:
            assert read_all(conn) == b"hi\n"
    daemon.wait_for_log(r"Error in aa log")
    for _ in range(3):
        with connect(ports["bb"]) as conn:
            assert read_all(conn) == b"hi\n"
    text = wait_log_lines(log, r"START: bb ", 3)
    assert "Size of bb log" not in daemon.log() and "Error in bb log" not in daemon.log()
    assert text.splitlines()[-3:] == [line for line in text.splitlines()
                                      if "START: bb " in line]
