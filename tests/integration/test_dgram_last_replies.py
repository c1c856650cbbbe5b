"""Every reply a datagram server wrote before it exited reaches its client, however
many: the daemon forwards them from the server's channel (dgram wait = no) or private
socket (wait = yes with INTERCEPT) and then closes it. It forwarded one batch of 64 at
the server's reaping and dropped the rest, silently, when the server's exit was seen
in the same turn as its last replies.

Real daemon, real server (tests/helpers/dgram_last_words_server.py stops the daemon
while it writes, so that the replies and the exit are all pending at once), real
sockets.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.daemon import HELPERS, DaemonFactory, free_port
from tests.integration.test_reload import defaults, wait_service_log

COUNT = 150


@pytest.mark.parametrize("model", ["wait = no", "wait = yes\n\tflags = INTERCEPT"])
def test_replies_written_before_the_exit_all_reach_the_client(
        daemons: DaemonFactory, tmp_path: Path, model: str) -> None:
    port = free_port()
    daemons.start_config(
        defaults(tmp_path)
        + f"service last\n{{\n\ttype = UNLISTED\n\tsocket_type = dgram\n\tprotocol = udp\n"
          f"\tport = {port}\n\tbind = 127.0.0.1\n\t{model}\n\tuser = root\n"
          f"\tserver = {sys.executable}\n"
          f"\tserver_args = {HELPERS / 'dgram_last_words_server.py'} {COUNT}\n}}\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.settimeout(10)
        client.sendto(b"ask", ("127.0.0.1", port))
        wait_service_log(tmp_path, "EXIT: last")
        replies = []
        client.settimeout(1)
        while len(replies) < COUNT:
            try:
                replies.append(client.recv(100))
            except socket.timeout:
                break
    assert replies == [b"reply %d" % n for n in range(COUNT)]
