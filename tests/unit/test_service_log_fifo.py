"""A service log that is a FIFO: entries with no room wait, in order, up to a bound.

Real FIFOs and a real loop; the reader stops reading, then reads again."""

from __future__ import annotations

import fcntl
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from pyxinetd.backlog import BACKLOG_LIMIT
from pyxinetd.config.model import FileTarget, ServiceConfig
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


def read_while_serving(loop: Loop, reader: int, count: int) -> list[bytes]:
    """Read as the loop writes, until `count` lines came."""
    got: list[bytes] = []

    def enough() -> bool:
        got.extend(read_lines(reader))
        return len(got) >= count
    run_until(loop, enough)
    return got


def entry(svc: ServiceConfig, n: int) -> str:
    return userid_entry(svc, f"{n} " + "u" * 1000)


class Logs:
    """A FIFO service log with a small pipe, its loop and the program log's text."""

    def __init__(self, tmp_path: Path, limit: int = BACKLOG_LIMIT) -> None:
        self.path, self.reader = fifo_with_small_pipe(tmp_path)
        self.text = io.StringIO()
        self.sender = SyslogSender(str(tmp_path / "no-syslog"))
        self.loop = Loop()
        self.logs = ServiceLogs(ProgramLog(stream=self.text), self.sender,
                                backlog_limit=limit)
        self.logs.attach(self.loop)
        self.svc = make_service(name="svc", log_type=FileTarget(self.path))

    def close(self) -> None:
        self.logs.close()
        self.sender.close()
        self.loop.close()
        os.close(self.reader)


def test_a_reload_loses_nothing_and_writes_the_new_entries_after_the_old(
        tmp_path: Path) -> None:
    t = Logs(tmp_path)
    try:
        for n in range(6):      # 3 fit, 3 wait
            t.logs.write(t.svc, entry(t.svc, n))
        t.logs.close_for_reload()   # never waits for the reader
        assert numbers(read_lines(t.reader)) == [0, 1, 2]
        assert t.logs.open(t.svc)
        for n in range(6, 9):
            t.logs.write(t.svc, entry(t.svc, n))
        got = read_while_serving(t.loop, t.reader, 6)
        assert numbers(got) == [3, 4, 5, 6, 7, 8]
        assert all(len(line) == len(got[0]) for line in got)    # each whole
        assert "dropped" not in t.text.getvalue()
        assert "Error" not in t.text.getvalue()
    finally:
        t.close()


def test_entries_waiting_at_a_reload_stay_bounded(tmp_path: Path) -> None:
    t = Logs(tmp_path, limit=3)
    try:
        for n in range(6):      # 3 fit, 3 wait
            t.logs.write(t.svc, entry(t.svc, n))
        t.logs.close_for_reload()
        assert t.logs.open(t.svc)
        t.logs.write(t.svc, entry(t.svc, 6))    # beyond the bound: dropped
        got = read_while_serving(t.loop, t.reader, 6)
        run_until(t.loop, lambda: "entries dropped" in t.text.getvalue())
        assert numbers(got + read_lines(t.reader)) == [0, 1, 2, 3, 4, 5]
        assert f"WARNING: 1 entries dropped: {t.path} was full" in t.text.getvalue()
    finally:
        t.close()


def test_entries_waiting_for_a_log_no_longer_written_still_come_then_it_closes(
        tmp_path: Path) -> None:
    t = Logs(tmp_path)
    try:
        for n in range(5):      # 3 fit, 2 wait
            t.logs.write(t.svc, entry(t.svc, n))
        t.logs.close_for_reload()   # and no service writes to it any more
        assert len(t.logs.fds()) == 1
        assert numbers(read_while_serving(t.loop, t.reader, 5)) == [0, 1, 2, 3, 4]
        run_until(t.loop, lambda: t.logs.fds() == [])
        assert os.read(t.reader, 1) == b""      # no writer left: end of file
        assert "dropped" not in t.text.getvalue()
    finally:
        t.close()


def test_a_fifo_made_anew_at_the_path_is_not_given_the_old_entries(
        tmp_path: Path) -> None:
    t = Logs(tmp_path)
    second = None
    try:
        for n in range(5):      # 3 fit, 2 wait
            t.logs.write(t.svc, entry(t.svc, n))
        t.logs.close_for_reload()
        os.unlink(t.path)
        os.mkfifo(t.path)
        second = os.open(t.path, os.O_RDONLY | os.O_NONBLOCK)
        assert t.logs.open(t.svc)
        t.logs.write(t.svc, entry(t.svc, 5))
        assert numbers(read_lines(second)) == [5]
        assert numbers(read_while_serving(t.loop, t.reader, 5)) == [0, 1, 2, 3, 4]
    finally:
        t.close()
        if second is not None:
            os.close(second)


def test_entries_still_waiting_from_a_reload_are_counted_at_exit(tmp_path: Path) -> None:
    t = Logs(tmp_path)
    try:
        for n in range(5):      # 3 fit, 2 wait
            t.logs.write(t.svc, entry(t.svc, n))
        t.logs.close_for_reload()
        t.logs.close()          # the exit, with no time left for the reader
        assert f"WARNING: 2 entries dropped: {t.path} was full" in t.text.getvalue()
        assert t.logs.fds() == []
    finally:
        t.close()


def test_a_reader_that_left_is_said_once_and_its_entries_wait_for_the_next(
        tmp_path: Path) -> None:
    path, reader = fifo_with_small_pipe(tmp_path)
    text = io.StringIO()
    program = ProgramLog(stream=text)
    sender = SyslogSender(str(tmp_path / "no-syslog"))
    logs = ServiceLogs(program, sender)
    svc = make_service(name="svc", log_type=FileTarget(path))
    try:
        logs.write(svc, userid_entry(svc, "0"))
        assert numbers(read_lines(reader)) == [0]
        os.close(reader)
        for n in (1, 2, 3):
            logs.write(svc, userid_entry(svc, str(n)))
        error = f"ERROR: Error writing {path}: Broken pipe (errno = 32)"
        assert text.getvalue().count(error) == 1
        # A new reader gets what waited first, in order, then the next entry.
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        logs.write(svc, userid_entry(svc, "4"))
        assert numbers(read_lines(reader)) == [1, 2, 3, 4]
        # Written since: the next time the reader leaves is said again.
        os.close(reader)
        logs.write(svc, userid_entry(svc, "5"))
        assert text.getvalue().count(error) == 2
    finally:
        logs.close()
        sender.close()
