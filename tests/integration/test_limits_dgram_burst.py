"""A burst of datagrams to a datagram builtin: every datagram is a request of its own,
answered or refused, logged, and counted toward cps (xinetd 2.3.15.3 discards what is
queued after each request: docs/compatibility.md)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, wait_log_lines

BURST = 5


def echo_dgram(port: int, log: Path, limit: str) -> str:
    return (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = echo-dgram\n"
            f"\tsocket_type = dgram\n\twait = yes\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"\t{limit}\n\tlog_type = FILE {log}\n\tlog_on_success = HOST\n"
            f"\tlog_on_failure = HOST\n}}\n")


def burst(port: int) -> list[bytes]:
    """Send BURST datagrams at once; the answers that come back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(BURST):
            sock.sendto(b"%d" % n, ("127.0.0.1", port))
        sock.settimeout(2.0)
        answers = []
        try:
            while len(answers) < BURST:
                answers.append(sock.recv(100))
        except TimeoutError:
            pass
        return answers


def test_every_datagram_of_a_burst_is_answered(daemons: DaemonFactory,
                                               tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemons.start_config(echo_dgram(port, log, "cps = 0 0"))
    assert sorted(burst(port)) == [b"%d" % n for n in range(BURST)]
    wait_log_lines(log, r"START: echo-dgram from=127\.0\.0\.1", BURST)


def test_every_refused_datagram_of_a_burst_is_logged(daemons: DaemonFactory,
                                                     tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "services.log"
    daemons.start_config(echo_dgram(port, log, "instances = 0"))
    assert burst(port) == []
    wait_log_lines(log, r"FAIL: echo-dgram service_limit from=127\.0\.0\.1", BURST)
