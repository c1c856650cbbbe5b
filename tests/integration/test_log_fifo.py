"""A service log that is a FIFO whose reader stops reading: the daemon keeps serving.

xinetd writes its logs blocking, so once the pipe is full it waits for the reader and
serves nobody (every service) until it reads again; pyxinetd writes to a log that is not
a regular file without waiting: an entry that does not fit is lost and reported."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, wait_until
from tests.integration.test_dispatch import connect, read_all

F_SETPIPE_SZ = 1031     # <fcntl.h>; Python 3.11's fcntl module names it on Linux only
LONG_ID = "x" * 1000    # about 1 KiB an entry: a few fill the smallest pipe


def service(name: str, port: int, log: str, extra: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n\tcps = 0 0\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n{log}{extra}"
            f"\tlog_on_success = HOST PID EXIT\n}}\n")


def ask(port: int) -> bytes:
    with connect(port) as conn:
        return read_all(conn)


def test_a_fifo_log_whose_reader_stops_reading_never_stops_the_daemon(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)
        logged, other = free_port(), free_port()
        daemon = daemons.start_config(
            service("piped", logged, f"\tlog_type = FILE {fifo}\n", f"\tid = {LONG_ID}\n")
            + service("other", other, ""))
        for _ in range(6):      # 12 entries of about 1 KiB: 3 fit
            assert ask(logged) == b"hi\n"
        assert ask(other) == b"hi\n"
        daemon.wait_for_log(rf"ERROR: Error writing {fifo}: Resource temporarily unavailable")
        # The reader reads again: the next entries are written.
        got = b""
        while True:
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                break
            got += chunk
        assert 3 <= got.count(b"\n") < 12
        assert ask(logged) == b"hi\n"

        def written() -> bool:
            try:
                return os.read(reader, 65536).count(f"EXIT: {LONG_ID}".encode()) > 0
            except BlockingIOError:
                return False
        wait_until(written, 10.0, what="an entry after the reader read again")
    finally:
        os.close(reader)
