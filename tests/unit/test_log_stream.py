"""LogStream: lines a pipe or socket has no room for wait, in order, and go out as the
loop finds room; beyond the limit the newest are counted and said once; the shared
description is never made non-blocking (real pipes and sockets, a real Loop)."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable

from pyxinetd.logstream import Kind, LogStream
from pyxinetd.loop import Loop

F_SETPIPE_SZ = 1031
TIMEOUT = 10.0


def dropped(count: int) -> bytes:
    return f"dropped {count}\n".encode()


def lines(n: int, start: int = 0) -> list[bytes]:
    return [f"line {i:04d} {'x' * 100}\n".encode() for i in range(start, start + n)]


def read_all(read: Callable[[], bytes]) -> bytes:
    got = b""
    while True:
        try:
            chunk = read()
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got += chunk


def run_until(loop: Loop, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        assert time.monotonic() < deadline
        loop.run_once()


def test_a_stalled_pipe_keeps_lines_in_order_and_counts_what_it_drops() -> None:
    rfd, wfd = os.pipe()
    loop = Loop()
    os.set_blocking(rfd, False)
    fcntl.fcntl(wfd, F_SETPIPE_SZ, 4096)
    stream = LogStream(wfd, owned=False, dropped_message=dropped, limit=50)
    try:
        assert stream.kind is Kind.PIPE
        stream.attach(loop)
        sent = lines(200)
        for line in sent:
            stream.write_line(line)         # never waits
        assert stream.pending == 50
        got = b""

        def received() -> bool:
            nonlocal got
            got += read_all(lambda: os.read(rfd, 65536))
            return not stream.pending
        # The reader reads again: the loop writes what waits, then the count.
        run_until(loop, received)
        got += read_all(lambda: os.read(rfd, 65536))
        stream.write_line(b"after\n")
        got += read_all(lambda: os.read(rfd, 65536))
    finally:
        stream.close()
        assert os.get_blocking(wfd)     # the description stderr would share
        os.close(rfd)
        os.close(wfd)
        loop.close()
    written = got.splitlines(keepends=True)
    kept = len(written) - 2
    assert written[:kept] == sent[:kept]
    assert written[kept:] == [f"dropped {200 - kept}\n".encode(), b"after\n"]


def test_a_stalled_socket_peer_gets_every_line_whole_once_it_reads() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = Loop()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = LogStream(theirs.fileno(), owned=False, dropped_message=dropped)
    got = b""
    try:
        assert stream.kind is Kind.SOCKET
        stream.attach(loop)
        sent = lines(300)
        for line in sent:
            stream.write_line(line)
        assert stream.pending > 0
        ours.setblocking(False)

        def received() -> bool:
            nonlocal got
            got += read_all(lambda: ours.recv(65536))
            return not stream.pending
        run_until(loop, received)
        got += read_all(lambda: ours.recv(65536))
    finally:
        stream.close()
        assert not fcntl.fcntl(theirs.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        ours.close()
        theirs.close()
        loop.close()
    assert got == b"".join(sent)


def test_close_gives_what_waits_a_bounded_time_and_leaves_stderr_open() -> None:
    rfd, wfd = os.pipe()
    fcntl.fcntl(wfd, F_SETPIPE_SZ, 4096)
    stream = LogStream(wfd, owned=False, dropped_message=dropped)
    for line in lines(100):
        stream.write_line(line)
    assert stream.pending
    opened = stream.fds()
    assert wfd not in opened
    # Nobody reads: close() gives up after its deadline, and closes only its own.
    stream.close()
    assert os.fstat(wfd)
    for fd in opened:
        try:
            os.fstat(fd)
        except OSError:
            continue
        raise AssertionError(f"descriptor {fd} left open")
    os.close(rfd)
    os.close(wfd)


def test_a_regular_file_is_written_as_it_is(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stream = LogStream(fd, owned=True, dropped_message=dropped)
    assert stream.kind is Kind.FILE
    stream.write_line(b"one\n")
    stream.write_line(b"two\n")
    stream.close()
    with open(path, "rb") as f:
        assert f.read() == b"one\ntwo\n"


def test_lines_a_fifo_without_reader_refuses_wait_unwatched_for_the_next_reader(
        tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log.fifo")
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)
    loop = Loop()
    stream = LogStream(fd, owned=True, dropped_message=dropped, wait_for_reader=True)
    try:
        assert stream.kind is Kind.PIPE
        stream.attach(loop)
        sent = lines(60)
        for line in sent:
            stream.write_line(line)
        assert stream.pending and loop.is_registered(fd)     # the pipe is full
        os.close(reader)
        reader = None
        loop.run_once()     # the write end now polls ready: it fails, and is let go
        assert not loop.is_registered(fd)
        waiting = stream.pending
        assert waiting
        later = lines(2, start=60)
        stream.write_line(later[0])
        assert stream.pending == waiting + 1 and not loop.is_registered(fd)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        stream.write_line(later[1])
        got = b""

        def all_read() -> bool:
            nonlocal got
            assert reader is not None
            got += read_all(lambda: os.read(reader, 65536))
            return not stream.pending and got.endswith(later[1])
        run_until(loop, all_read)
        # What the pipe held when the first reader left is still in it: every line
        # reaches the next reader, in order.
        assert got == b"".join(sent + later)
    finally:
        stream.close(0)
        if reader is not None:
            os.close(reader)
        loop.close()
