"""`instances` still holds after a cps deactivation: the servers that ran through the
pause are counted when the service is activated again (xinetd 2.3.15.3's
svc_activate() sets its running-server count to 0 and lets more through; see
docs/compatibility.md and tests/compat/test_cps_instances_oracle.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.daemon import (DaemonFactory, free_port, read_log, start_of_a_second,
                          wait_log_lines, wait_until)

TIMEOUT = 10.0


def conf(port: int, log: Path) -> str:
    return f"""
service capped
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    user = root
    server = /bin/cat
    bind = 127.0.0.1
    instances = 1
    cps = 2 3
    log_type = FILE {log}
    log_on_success = HOST PID EXIT
    log_on_failure = HOST
}}
"""


def closed_unserved(port: int) -> bool:
    """Whether a client is accepted and closed without a server (or refused)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(b"x\n")
            return conn.recv(100) == b""
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def test_a_server_running_through_the_cps_pause_still_counts_toward_instances(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(conf(port, log))
    # The three requests trip `cps = 2` only if they fall in the window's first two
    # seconds (after those, 3 // 2 is not more than 2): begun as a second begins, they
    # have about 1.98 s for one cat server and two refusals.
    start_of_a_second()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as held:
        held.settimeout(TIMEOUT)
        held.sendall(b"hi\n")
        assert held.recv(100) == b"hi\n"
        # The second request is over `instances`, the third over `cps = 2`.
        assert closed_unserved(port)
        assert closed_unserved(port)
        wait_log_lines(log, r"FAIL: capped connections per second", 1, TIMEOUT)
        daemon.wait_for_log(r"ERROR: Activating service capped", timeout=TIMEOUT)
        # Three seconds on, past the cps window: only `instances` can refuse this one.
        assert closed_unserved(port)
        text = wait_log_lines(log, r"FAIL: capped service_limit", 2, TIMEOUT)
        assert text.count("START: capped") == 1
        assert len(daemon.children()) == 1
        held.sendall(b"still\n")
        assert held.recv(100) == b"still\n"
    wait_log_lines(log, r"EXIT: capped", 1, TIMEOUT)
    wait_until(lambda: not daemon.children(), TIMEOUT, what="the held server reaped")
    assert "running servers" not in read_log(log) + daemon.log()
