"""A service log that is a FIFO: entries with no room wait, in order, up to a bound.

Real FIFOs and a real loop; the reader stops reading, then reads again."""

from __future__ import annotations

import fcntl
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from pyxinetd.config.model import FileTarget
from pyxinetd.log import ProgramLog, SyslogSender
from pyxinetd.loop import Loop
from pyxinetd.servicelog import ServiceLogs, userid_entry
from tests.factories import make_service

F_SETPIPE_SZ = 1031     # <fcntl.h>
TIMEOUT = 10.0


def read_lines(reader: int) -> list[bytes]:
    got = b""
    while True:
        try:
            chunk = os.read(reader, 65536)
        except BlockingIOError:
            chunk = b""
        if not chunk:       # nothing more for now, or no writer left
            return got.splitlines()
        got += chunk


def run_until(loop: Loop, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        assert time.monotonic() < deadline
        loop.run_once()


def numbers(lines: list[bytes]) -> list[int]:
    """The number each entry carries (`... USERID: svc N uuu...`)."""
    return [int(line.split(b"USERID: svc ", 1)[1].split()[0]) for line in lines]


def fifo_with_small_pipe(tmp_path: Path) -> tuple[str, int]:
    path = str(tmp_path / "log.fifo")
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)     # room for 3 entries of about 1 KiB
    return path, reader


def test_entries_wait_for_the_reader_and_those_beyond_the_bound_are_counted(
        tmp_path: Path) -> None:
    path, reader = fifo_with_small_pipe(tmp_path)
    text = io.StringIO()
    program = ProgramLog(stream=text)
    sender = SyslogSender(str(tmp_path / "no-syslog"))
    loop = Loop()
    logs = ServiceLogs(program, sender, backlog_limit=3)
    logs.attach(loop)
    svc = make_service(name="svc", log_type=FileTarget(path))
    try:
        for n in range(10):     # 3 fit, 3 wait, 4 are dropped
            logs.write(svc, userid_entry(svc, f"{n} " + "u" * 1000))
        assert numbers(read_lines(reader)) == [0, 1, 2]
        run_until(loop, lambda: "entries dropped" in text.getvalue())
        assert numbers(read_lines(reader)) == [3, 4, 5]
        assert f"WARNING: 4 entries dropped: {path} was full" in text.getvalue()
        # Room again: an entry is written at once.
        logs.write(svc, userid_entry(svc, "10 after"))
        assert numbers(read_lines(reader)) == [10]
        assert "Error writing" not in text.getvalue()
    finally:
        logs.close()
        sender.close()
        loop.close()
        os.close(reader)


def test_a_reload_never_waits_for_the_reader_and_counts_what_it_drops(
        tmp_path: Path) -> None:
    path, reader = fifo_with_small_pipe(tmp_path)
    text = io.StringIO()
    program = ProgramLog(stream=text)
    sender = SyslogSender(str(tmp_path / "no-syslog"))
    loop = Loop()
    logs = ServiceLogs(program, sender)
    logs.attach(loop)
    svc = make_service(name="svc", log_type=FileTarget(path))
    try:
        for n in range(5):      # 3 fit, 2 wait
            logs.write(svc, userid_entry(svc, f"{n} " + "u" * 1000))
        logs.close()            # a reload: what waits gets what fits at once
        assert f"WARNING: 2 entries dropped: {path} was full" in text.getvalue()
        assert logs.fds() == []
        assert numbers(read_lines(reader)) == [0, 1, 2]
        # Opened again (as after a reload): written as before.
        assert logs.open(svc)
        logs.write(svc, userid_entry(svc, "5 after"))
        assert numbers(read_lines(reader)) == [5]
    finally:
        logs.close()
        sender.close()
        loop.close()
        os.close(reader)


def test_a_reader_that_left_is_reported_for_each_entry(tmp_path: Path) -> None:
    path, reader = fifo_with_small_pipe(tmp_path)
    text = io.StringIO()
    program = ProgramLog(stream=text)
    sender = SyslogSender(str(tmp_path / "no-syslog"))
    logs = ServiceLogs(program, sender)
    svc = make_service(name="svc", log_type=FileTarget(path))
    try:
        logs.write(svc, userid_entry(svc, "0"))
        os.close(reader)
        logs.write(svc, userid_entry(svc, "1"))
        assert f"ERROR: Error writing {path}: Broken pipe (errno = 32)" in text.getvalue()
    finally:
        logs.close()
        sender.close()
