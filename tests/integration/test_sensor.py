"""SENSOR services and the global deny list (reference §4.6), as xinetd's sensor.c
keeps it: a listed client that reaches a sensor again has its time extended (no new
CRITICAL line), and the list is scrubbed once a minute, with its log lines.

$PYXINETD_SENSOR_MINUTE makes a deny_time minute (and the scrub interval) 2 seconds.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, read_log, wait_log_lines

TIMEOUT = 10.0


def service(name: str, port: int, log: Path, extra: str) -> str:
    return f"""
service {name}
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    user = root
    server = /bin/echo
    server_args = hi
    bind = 127.0.0.1
    log_type = FILE {log}
    log_on_success = HOST
    log_on_failure = HOST
    {extra}
}}
"""


def fetch(port: int, source: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                  source_address=(source, 0)) as conn:
        chunks = []
        while data := conn.recv(100):
            chunks.append(data)
        return b"".join(chunks)


def test_a_second_hit_extends_the_listing_and_the_list_is_scrubbed(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_SENSOR_MINUTE", "2")
    log = tmp_path / "services.log"
    short, long, other = free_port(), free_port(), free_port()
    daemon = daemons.start_config(
        service("short", short, log, "flags = SENSOR\n    deny_time = 1")
        + service("long", long, log, "flags = SENSOR\n    deny_time = 3")
        + service("other", other, log, ""))
    assert fetch(short, "127.0.0.2") == b""
    assert fetch(short, "127.0.0.1") == b""
    # Listed already: the sensor takes it again, for its longer time, without a line.
    assert fetch(long, "127.0.0.1") == b""
    wait_log_lines(log, r"FAIL: (short|long) address", 3, TIMEOUT)
    assert re.findall(r"Adding (\S+) to the global_no_access list for (\d+) minutes",
                      daemon.log()) == [("127.0.0.2", "1"), ("127.0.0.1", "1")]
    for source in ("127.0.0.1", "127.0.0.2"):
        assert fetch(other, source) == b""
    wait_log_lines(log, r"FAIL: other address", 2, TIMEOUT)
    # 127.0.0.2's minute has passed: a scrub drops it; 127.0.0.1 stays listed.
    daemon.wait_for_log(r"INFO: .*At least 1 DENY_TIME has expired, global_no_access "
                        r"list updated")
    assert fetch(other, "127.0.0.2") == b"hi\n"
    assert fetch(other, "127.0.0.1") == b""
    daemon.wait_for_log(r"INFO: .*global_no_access list is empty\.")
    assert fetch(other, "127.0.0.1") == b"hi\n"
    text = read_log(log)
    assert len(re.findall(r"START: other", text)) == 2
    assert len(re.findall(r"FAIL: other address", text)) == 3
