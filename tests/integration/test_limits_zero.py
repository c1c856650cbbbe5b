"""A limit of 0 (`instances = 0`, `per_source = 0`) refuses every request, whatever the
service's type; a stream `wait = yes` request refused by one is turned away at once,
since no slot will ever free for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.daemon import HELPERS, DaemonFactory, free_port
from tests.integration.test_dispatch import connect, read_all, service_log, wait_service_log


def wait_service(port: int, log: Path, limit: str) -> str:
    return (f"service waiter\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = yes\n"
            f"\tuser = root\n\tserver = {sys.executable}\n"
            f"\tserver_args = -I -S {HELPERS / 'wait_stream_server.py'}\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\t{limit}\n\tcps = 0 0\n"
            f"\tlog_type = FILE {log}\n\tlog_on_success = PID\n\tlog_on_failure = HOST\n}}\n")


@pytest.mark.parametrize(("limit", "reason"), [("per_source = 0", "per_source_limit"),
                                               ("instances = 0", "service_limit")])
def test_a_zero_limit_turns_a_stream_wait_request_away(
        daemons: DaemonFactory, tmp_path: Path, limit: str, reason: str) -> None:
    # xinetd refuses per_source = 0 on a stream wait = yes service too (the request has
    # no address, and none of the running servers can be its: 0 >= 0).
    port = free_port()
    daemons.start_config(wait_service(port, tmp_path / "services.log", limit))
    for attempt in (1, 2):
        with connect(port) as conn:
            conn.sendall(b"hello\n")
            try:
                assert read_all(conn) == b""    # turned away, not served
            except ConnectionResetError:
                pass    # closed with the request unread: as good an answer
        wait_service_log(tmp_path, rf"FAIL: waiter {reason} from=<no address>", attempt)
    log = service_log(tmp_path)
    assert "START" not in log
    assert log.count("FAIL: waiter") == 2   # one per client, not one a second
