"""Under systemd, the program log on stderr is written for the journal.

systemd connects a unit's stderr to the journal's stream socket and names that socket's
`device:inode` in JOURNAL_STREAM. The journal stamps and tags each line itself and takes
a leading `<N>` as the line's priority, so pyxinetd then writes `<N>TEXT` lines: the
journal shows them as it shows xinetd's program log sent to syslog (`xinetd[PID]: TEXT`
at the line's level), not with a second stamp and tag inside the message. The stream
here is a real socketpair, as the journal's is; the daemon decides by comparing
descriptor 2 with JOURNAL_STREAM, so a stderr redirected elsewhere keeps the file format.
"""

from __future__ import annotations

import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxinetd.log import ProgramLog
from tests.daemon import READY_TIMEOUT, free_port, wait_until

TIMEOUT = 10.0
FILE_LINE = re.compile(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d xinetd\[\d+\]: [A-Z]+: ", re.M)


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "xinetd.conf"
    path.write_text("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-stream\n"
                    "\tsocket_type = stream\n\twait = no\n\tbind = 127.0.0.1\n"
                    f"\tport = {free_port()}\n\tbogus_attribute = 1\n}}\n")
    return path


@pytest.fixture
def stream() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.settimeout(TIMEOUT)
    yield ours, theirs
    ours.close()
    theirs.close()


def journal_stream(sock: socket.socket) -> str:
    st = os.fstat(sock.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def run_until(conf: Path, stderr: int, environ: dict[str, str], *args: str,
              read: socket.socket | None = None, log: Path | None = None,
              until: str = "Started working") -> str:
    """Start the daemon in the foreground, collect what it writes until `until`, stop it."""
    env = {**os.environ, **environ}
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                             *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, start_new_session=True, env=env)
    received = bytearray()
    try:
        def arrived() -> bool:
            if read is not None:
                # Only what has arrived: a blocking recv() would outlast the deadline.
                if select.select([read], [], [], 0)[0]:
                    received.extend(read.recv(65536))
                return until.encode() in received
            assert log is not None
            return until in log.read_text()
        wait_until(arrived, READY_TIMEOUT, what=until)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
    return received.decode() if read is not None else str(log and log.read_text())


def test_lines_carry_their_priority_and_no_stamp_of_their_own(
        tmp_path: Path, stream: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = stream
    conf = write_config(tmp_path)
    text = run_until(conf, theirs.fileno(), {"JOURNAL_STREAM": journal_stream(theirs)},
                     read=ours)
    lines = text.splitlines()
    assert "<5>Started working: 1 available service" in lines
    assert any(line.startswith("<4>bad service attribute: bogus_attribute ")
               and line.endswith(f"[file={conf}] [line=9]") for line in lines), lines
    assert not FILE_LINE.search(text), text
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines


def test_debug_lines_keep_the_pid_and_function(
        tmp_path: Path, stream: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = stream
    text = run_until(write_config(tmp_path), theirs.fileno(),
                     {"JOURNAL_STREAM": journal_stream(theirs)}, "-d", read=ours)
    assert re.search(r"^<7>\d+ \{\w+\} ", text, re.M), text
    assert re.search(r"^<5>\d+ \{\w+\} Started working", text, re.M), text


def test_a_stderr_redirected_elsewhere_keeps_the_file_format(
        tmp_path: Path, stream: tuple[socket.socket, socket.socket]) -> None:
    # The unit's command ran `pyxinetd ... 2>FILE`: JOURNAL_STREAM is inherited but
    # names the journal's socket, not the file now on descriptor 2.
    _, theirs = stream
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        text = run_until(write_config(tmp_path), err.fileno(),
                         {"JOURNAL_STREAM": journal_stream(theirs)}, log=log)
    assert FILE_LINE.search(text), text
    assert "<5>" not in text


def test_every_line_of_a_message_carries_its_priority() -> None:
    """The journal cuts a message at each newline and reads each piece's own `<N>`:
    a message of several lines is written with the prefix on each (without it the
    continuation would be filed at the stream's default priority)."""
    out = io.StringIO()
    ProgramLog(stream=out, journal=True).error("test", "first line\nsecond line")
    assert out.getvalue() == "<3>first line\n<3>second line\n"


@pytest.mark.parametrize("value", ["\u00b2:1", "1:\u0661", "\uff11:\uff12", "1", ":", "1:2:3", " 1:2"])
def test_a_malformed_journal_stream_keeps_the_file_format(
        tmp_path: Path, value: str) -> None:
    # `²` passes str.isdigit() but not int(): the daemon died at start with a
    # traceback. Digits other than ASCII ones are no device:inode systemd writes.
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        text = run_until(write_config(tmp_path), err.fileno(), {"JOURNAL_STREAM": value},
                         log=log)
    assert FILE_LINE.search(text), text
    assert "Traceback" not in text
