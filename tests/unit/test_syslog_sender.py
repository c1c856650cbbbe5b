"""SyslogSender never raises: a line it cannot send is dropped, the next one retries."""

from __future__ import annotations

import os
import resource
import socket
from pathlib import Path

from pyxinetd.log import SyslogSender


def test_no_descriptor_for_the_socket_drops_the_line_and_the_next_one_goes(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender = SyslogSender(path)
        lowest_free = os.dup(0)     # the number the next descriptor would get
        os.close(lowest_free)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Not a descriptor left (as when accept() has just failed with EMFILE).
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            sender.send(27, "accept failed: Too many open files")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        sender.send(27, "and then")
        syslogd.settimeout(10)
        assert syslogd.recv(1000).endswith(b"and then")
        sender.close()
