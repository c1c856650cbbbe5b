"""The program log whose reader stops reading never stops the daemon.

`-filelog` naming a FIFO whose reader pauses, or `-dontfork` with stderr a pipe
(`pyxinetd -dontfork | slow-reader`) or a socket (journald's stdout stream) whose
reader stalls: the daemon keeps serving, the lines wait in it, and they are written, in
order and whole, once the reader reads again (pyxinetd.logstream). Each reload writes
a burst of lines (one warning per unknown attribute), more than the shrunken pipe or
socket holds. The description stderr shares with the test is never made non-blocking.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import free_port

F_SETPIPE_SZ = 1031     # <fcntl.h>; Python 3.11's fcntl module names it on Linux only
TIMEOUT = 10.0
ATTRIBUTES = 40         # unknown attributes: 40 warning lines (about 5 KiB) per reload
RELOADS = 3
LINE = re.compile(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d xinetd\[\d+\]: [A-Z]+: .*$")


def config(tmp_path: Path, port: int, answer: str = "hi") -> Path:
    bogus = "".join(f"\tbogus_attribute_number_{n:03d} = 1\n" for n in range(ATTRIBUTES))
    path = tmp_path / "xinetd.conf"
    path.write_text(f"service echo\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                    f"\twait = no\n\tuser = root\n\tserver = /bin/echo\n\tserver_args = {answer}\n"
                    f"\tbind = 127.0.0.1\n\tport = {port}\n\tcps = 0 0\n{bogus}}}\n")
    return path


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)


def start(procs: list[subprocess.Popen[bytes]], conf: Path, *args: str,
          stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                             *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, start_new_session=True)
    procs.append(proc)
    return proc


class Reader:
    """The reading end, read only when the test says so (bounded by TIMEOUT)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""

    def read_until(self, pattern: str, count: int = 1) -> str:
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + TIMEOUT
        while len(regex.findall(self.text)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; got:\n{self.text}")
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"EOF before {pattern!r}; got:\n{self.text}")
                self.text += chunk.decode(errors="replace")
        return self.text


def exit_status(proc: subprocess.Popen[bytes]) -> int:
    """The daemon's status once it exits; if it does not within TIMEOUT, what it is
    blocked in (its state, kernel wait channel, system call and descriptors)."""
    try:
        return proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        where = [f"/proc/{proc.pid}/{name}" for name in ("wchan", "syscall", "status")]
        seen = []
        for path in where:
            try:
                seen.append(f"{path}: {Path(path).read_text().strip()[:600]}")
            except OSError as err:
                seen.append(f"{path}: {err}")
        try:
            fds = {fd: os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                   for fd in os.listdir(f"/proc/{proc.pid}/fd")}
        except OSError as err:
            fds = {"?": str(err)}
        raise AssertionError(f"the daemon did not exit within {TIMEOUT} s of SIGTERM:\n"
                             + "\n".join(seen) + f"\ndescriptors: {fds}") from None


def echo(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        data = b""
        while chunk := conn.recv(64):
            data += chunk
        return data


def serve_while_stalled(proc: subprocess.Popen[bytes], reader: Reader, conf: Path,
                        port: int) -> None:
    """Ready, then reloads the reader does not read: the daemon serves meanwhile, and
    each reload is seen applied (the server answers its new word); then every line
    arrives, whole and in order."""
    reader.read_until(r"Started working")
    for n in range(RELOADS):
        config(conf.parent, port, f"reload{n}")
        proc.send_signal(signal.SIGHUP)
        # A daemon waiting on its log would accept, but never start the server.
        deadline = time.monotonic() + TIMEOUT
        while echo(port) != f"reload{n}\n".encode():
            assert time.monotonic() < deadline, f"reload {n} never applied"
    text = reader.read_until(r"Reconfigured: ", RELOADS)
    lines = text.splitlines()
    assert all(LINE.match(line) for line in lines), text
    warnings = [int(m.group(1)) for m in re.finditer(r"bogus_attribute_number_(\d+)", text)]
    # Once at the start, then once per reload, each burst in order.
    assert warnings == list(range(ATTRIBUTES)) * (RELOADS + 1)
    events = [line.split(": ", 2)[2].split(" ")[0] for line in lines
              if "Starting reconfiguration" in line or "Reconfigured:" in line]
    assert events == ["Starting", "Reconfigured:"] * RELOADS
    assert "messages dropped" not in text


def test_stderr_a_pipe_whose_reader_stops(tmp_path: Path,
                                          started: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    rfd, wfd = os.pipe()
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 4096)
        conf = config(tmp_path, port)
        proc = start(started, conf, stderr=wfd)
        serve_while_stalled(proc, Reader(rfd), conf, port)
        # The pipe's description, shared with this process, was left blocking.
        assert os.get_blocking(wfd)
    finally:
        os.close(rfd)
        os.close(wfd)


def test_stderr_a_socket_whose_peer_stops(tmp_path: Path,
                                          started: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conf = config(tmp_path, port)
        proc = start(started, conf, stderr=theirs.fileno())
        serve_while_stalled(proc, Reader(ours.fileno()), conf, port)
        assert not fcntl.fcntl(theirs.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK


def test_filelog_a_fifo_whose_reader_stops(tmp_path: Path,
                                           started: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.fcntl(rfd, F_SETPIPE_SZ, 4096)
        conf = config(tmp_path, port)
        proc = start(started, conf, "-filelog", str(fifo))
        serve_while_stalled(proc, Reader(rfd), conf, port)
    finally:
        os.close(rfd)


def reload_answering(proc: subprocess.Popen[bytes], conf: Path, port: int,
                     answer: str) -> None:
    """Reload with a server that answers `answer`, and see it applied: the daemon
    serves."""
    config(conf.parent, port, answer)
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while echo(port) != f"{answer}\n".encode():
        assert time.monotonic() < deadline, f"the reload to {answer!r} never applied"


def test_filelog_a_fifo_whose_reader_leaves_keeps_the_lines_for_the_next_reader(
        tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    """A reader restarted: the lines logged while none read (the pipe full first, then
    no reader at all) all reach the next reader, in order (they were lost, without a
    word)."""
    port = free_port()
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    first = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    second = None
    try:
        fcntl.fcntl(first, F_SETPIPE_SZ, 4096)
        conf = config(tmp_path, port)
        proc = start(started, conf, "-filelog", str(fifo))
        text = Reader(first).read_until(r"Started working")
        for n in range(RELOADS):
            reload_answering(proc, conf, port, f"reload{n}")
        os.close(first)         # the reader leaves, lines still waiting for it
        first = None
        reload_answering(proc, conf, port, "alone")
        second = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        reload_answering(proc, conf, port, "back")
        text += Reader(second).read_until(r"Reconfigured: ", RELOADS + 2)
        assert all(LINE.match(line) for line in text.splitlines()), text
        warnings = [int(m.group(1)) for m in re.finditer(r"bogus_attribute_number_(\d+)",
                                                         text)]
        assert warnings == list(range(ATTRIBUTES)) * (RELOADS + 3)
        assert "messages dropped" not in text
    finally:
        for fd in (first, second):
            if fd is not None:
                os.close(fd)


def test_lines_waiting_at_exit_are_written_once_the_reader_reads(
        tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    rfd, wfd = os.pipe()
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 4096)
        conf = config(tmp_path, port)
        proc = start(started, conf, stderr=wfd)
        reader = Reader(rfd)
        reader.read_until(r"Started working")
        config(tmp_path, port, "reloaded")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while echo(port) != b"reloaded\n":
            assert time.monotonic() < deadline, "the reload never applied"
        # The pipe is full, lines wait in the daemon: it exits, giving them a while.
        proc.send_signal(signal.SIGTERM)
        text = reader.read_until(r"WARNING: Exiting\.\.\.$")
        assert exit_status(proc) == 0
        assert re.findall(r"Reconfigured: ", text) == ["Reconfigured: "]
        assert all(LINE.match(line) for line in text.splitlines()), text
    finally:
        os.close(rfd)
        os.close(wfd)


def test_a_reader_that_never_reads_again_does_not_keep_the_daemon_from_exiting(
        tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    rfd, wfd = os.pipe()
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 4096)
        conf = config(tmp_path, port)
        proc = start(started, conf, "-d", stderr=wfd)
        Reader(rfd).read_until(r"Started working")
        config(tmp_path, port, "reloaded")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while echo(port) != b"reloaded\n":
            assert time.monotonic() < deadline, "the reload never applied"
        # The waiting lines get a bounded time at exit, then are given up.
        proc.send_signal(signal.SIGTERM)
        assert exit_status(proc) == 0
    finally:
        os.close(rfd)
        os.close(wfd)
