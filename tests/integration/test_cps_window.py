"""The cps window (reference §4.5) across a deactivation and across a reload, as in
xinetd 2.3.15.3: the count carries on when the service is activated again, and a
reload starts it afresh.

The window is counted in whole seconds of the monotonic clock, which the daemon and
this test share: each scenario starts just after a second begins so that its requests
fall within the window's first two seconds, where the elapsed time counts as 1.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

from tests.daemon import (DaemonFactory, free_port, read_log, start_of_a_second,
                          wait_log_lines)

TIMEOUT = 10.0


def service(port: int, log: Path) -> str:
    return f"""
service rate
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    user = root
    server = /bin/echo
    server_args = r
    bind = 127.0.0.1
    cps = 3 1
    log_type = FILE {log}
    log_on_success = HOST
    log_on_failure = HOST
}}
"""


def fetch(port: int) -> bytes | None:
    """The reply, b"" when the connection was closed unserved, None when refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            chunks = []
            while data := conn.recv(100):
                chunks.append(data)
            return b"".join(chunks)
    except ConnectionRefusedError:
        return None
    except ConnectionResetError:
        return b""


def test_the_count_carries_on_after_the_service_is_activated_again(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(service(port, log))
    start_of_a_second()
    assert [fetch(port) for _ in range(3)] == [b"r\n"] * 3
    assert fetch(port) in (b"", None)       # the 4th in a second: deactivated
    daemon.wait_for_log(r"ERROR: Activating service rate")
    # The window's count is 4 and one second has passed: the next request makes
    # 5 in 1 s, more than 3, and deactivates the service again. (It comes in the
    # window's second second as long as the four requests above, three /bin/echo
    # servers and a refusal, took less than the 0.98 s left of their first.)
    reply = None
    for _ in range(100):
        reply = fetch(port)
        if reply is not None:
            break
        time.sleep(0.005)
    assert reply == b""
    daemon.wait_for_log(r"Deactivating service rate due to excessive incoming", count=2)
    wait_log_lines(log, r"FAIL: rate connections per second", 2, TIMEOUT)
    assert len(re.findall(r"START: rate", read_log(log))) == 3


def test_a_reload_starts_the_window_again(daemons: DaemonFactory, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(service(port, log))
    start_of_a_second()
    assert [fetch(port) for _ in range(3)] == [b"r\n"] * 3
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: new=0 old=1 dropped=0")
    # Counted on, these would make 4 and 5 within a second.
    assert [fetch(port) for _ in range(2)] == [b"r\n"] * 2
    assert "Deactivating" not in daemon.log()


def listening_sockets(pid: int) -> int:
    """How many TCP sockets in the LISTEN state process `pid` holds."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening.add(f"socket:[{fields[9]}]")
    fds = Path(f"/proc/{pid}/fd")
    held = set()
    for fd in fds.iterdir():
        try:
            held.add(os.readlink(fd))
        except OSError:
            pass
    return len(listening & held)


def test_a_tcpmux_service_activated_again_binds_no_socket(daemons: DaemonFactory,
                                                          tmp_path: Path) -> None:
    # A TCPMUX service is reached through tcpmux's socket only: its cps deactivation
    # and reactivation must not give it a listening socket of its own (on a port the
    # kernel would pick).
    port, log = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(f"""
service tcpmux
{{
    type = INTERNAL UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    bind = 127.0.0.1
}}
service tm
{{
    type = UNLISTED TCPMUX
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    server = /bin/echo
    server_args = r
    cps = 1 1
    log_type = FILE {log}
    log_on_failure = HOST
}}
""")

    def mux() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.sendall(b"tm\r\n")
            chunks = []
            while data := conn.recv(100):
                chunks.append(data)
            return b"".join(chunks)

    assert listening_sockets(daemon.pid) == 1
    start_of_a_second()
    assert [mux() for _ in range(2)] == [b"r\n", b""]
    wait_log_lines(log, r"FAIL: tm connections per second", 1, TIMEOUT)
    daemon.wait_for_log(r"ERROR: Activating service tm")
    assert listening_sockets(daemon.pid) == 1
    assert mux() == b"r\n"
