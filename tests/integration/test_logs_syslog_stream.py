"""Syslog on a stream socket (syslog-ng's `unix-stream("/dev/log")`): glibc's syslog(),
and so xinetd, falls back to a stream connection when /dev/log is not a datagram socket,
and ends each message with a NUL byte; xinetd 2.3.15.3 sends
`<142>Nov 27 06:42:42 xinetd[26317]: START: a pid=26318\\0` there. pyxinetd sends the
same, and a message the socket takes only in part is finished before the next one."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pyxinetd.syslogsender import SyslogSender
from tests.daemon import free_port

TIMEOUT = 10.0


class Messages:
    """The NUL-terminated messages of one connection, in order."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.data = b""

    def first_with(self, text: bytes) -> bytes:
        """The next message that contains `text`, those before it passed over (run
        unprivileged, the daemon warns that `user` is ignored first); bounded by
        TIMEOUT."""
        self.conn.settimeout(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while b"\0" in self.data:
                message, self.data = self.data.split(b"\0", 1)
                if text in message:
                    return message
            chunk = self.conn.recv(65536)
            if not chunk:
                break
            self.data += chunk
        raise AssertionError(f"no message with {text!r}; left: {self.data!r}")


def test_the_daemon_logs_to_a_stream_syslog_socket(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(5)
    listener.settimeout(TIMEOUT)
    port = free_port()
    conf = tmp_path / "xinetd.conf"
    conf.write_text(f"service a\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                    f"\twait = no\n\tuser = root\n\tserver = /bin/echo\n"
                    f"\tbind = 127.0.0.1\n\tport = {port}\n\tlog_type = SYSLOG local1\n"
                    f"\tlog_on_success = PID\n}}\n")
    env = {**os.environ, "PYXINETD_SYSLOG_SOCKET": str(path)}
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                             "-syslog", "daemon"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        conn, _ = listener.accept()
        with conn:
            messages = Messages(conn)
            started = messages.first_with(b"Started working")
            assert re.fullmatch(rb"<29>\w{3} [ \d]\d \d\d:\d\d:\d\d xinetd\[\d+\]: "
                                rb"Started working: 1 available service", started)
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
                client.recv(10)
            line = messages.first_with(b"START")
            assert re.fullmatch(rb"<142>\w{3} [ \d]\d \d\d:\d\d:\d\d xinetd\[%d\]: "
                                rb"START: a pid=\d+" % proc.pid, line)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
        listener.close()


def test_a_message_sent_in_part_is_finished_first(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(TIMEOUT)
    sender = SyslogSender(str(path))
    texts = [f"message {n} " + "x" * 3000 for n in range(200)]
    try:
        sender.send(30, texts[0])
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for text in texts[1:]:      # far more than the socket holds: a backlog
                sender.send(30, text)
            assert sender.pending > 0
            got: list[bytes] = []
            data = b""
            conn.settimeout(TIMEOUT)
            deadline = time.monotonic() + TIMEOUT
            while len(got) < len(texts) and time.monotonic() < deadline:
                data += conn.recv(65536)
                *done, data = data.split(b"\0")
                got.extend(done)
                sender.flush()
            assert [m.split(b": ", 1)[1].decode() for m in got] == texts
    finally:
        sender.close()
        listener.close()
