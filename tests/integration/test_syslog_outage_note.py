"""A host without a syslog daemon: the program log says where the syslog lines went.

Syslog lines that find nobody listening wait in the daemon (at most 1,000) until a
syslog daemon listens (pyxinetd.syslogsender). When the program log is not syslog
(`-filelog`, or stderr under `-dontfork`), it says so once per outage (a WARNING), and
once more when a syslog daemon took what waited (a NOTICE, with what was dropped).
A program log that is syslog says nothing of it: its lines wait with the others.
xinetd says nothing at all.

A service's START (or FAIL) line is logged before its connection is closed, so a client
that has read the end of its connection knows its line was logged.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, read_log, syslog_until, wait_until

TIMEOUT = 10.0
UNREACHABLE = r"WARNING: syslog: no syslog daemon listens on \S+log\.sock"
REACHED = r"NOTICE: syslog: a syslog daemon listens on \S+log\.sock"


@pytest.fixture
def syslog_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the daemons started from now on look for a syslog daemon (none yet)."""
    path = tmp_path / "log.sock"
    monkeypatch.setenv("PYXINETD_SYSLOG_SOCKET", str(path))
    return path


@pytest.fixture
def syslogd(syslog_path: Path) -> Iterator[socket.socket]:
    """A syslog daemon's socket that a test binds when it wants one to listen."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    try:
        yield sock
    finally:
        sock.close()


def service(port: int, *extra: str) -> str:
    lines = "".join(f"\t{line}\n" for line in extra)
    return (f"service a\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/true\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"\tcps = 0 0\n\tlog_type = SYSLOG local3\n{lines}}}\n")


def served(port: int) -> None:
    """One connection, read to its end: its START or FAIL line is logged."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.recv(1)


def test_filelog_says_once_that_no_syslog_daemon_listens_and_once_that_one_took_the_lines(
        daemons: DaemonFactory, port: int, syslog_path: Path,
        syslogd: socket.socket) -> None:
    daemon = daemons.start_config(service(port, "log_on_success = PID"))
    for _ in range(3):
        served(port)
    assert len(re.findall(UNREACHABLE, daemon.log())) == 1
    assert "(No such file or directory): syslog messages wait for one, at most 1,000; " \
           "beyond that the newest are dropped" in daemon.log()
    assert not re.search(REACHED, daemon.log())
    syslogd.bind(str(syslog_path))
    served(port)
    got = syslog_until(syslogd, "START", most=1)
    got += [syslogd.recv(4096).decode() for _ in range(3)]
    assert [m.split("]: ", 1)[1].split(" pid=")[0] for m in got] == ["START: a"] * 4
    notice = re.findall(REACHED + r".*", daemon.wait_for_log(REACHED))
    assert notice == [f"NOTICE: syslog: a syslog daemon listens on {syslog_path}: "
                      "the 3 messages that waited were sent"]


def test_each_outage_is_said_once(daemons: DaemonFactory, port: int, syslog_path: Path,
                                  syslogd: socket.socket) -> None:
    daemon = daemons.start_config(service(port, "log_on_success = PID"))
    served(port)
    syslogd.bind(str(syslog_path))
    served(port)
    assert len(re.findall(REACHED, daemon.wait_for_log(REACHED))) == 1
    # The syslog daemon goes away, and its successor is not there yet.
    syslogd.close()
    syslog_path.unlink()
    served(port)
    served(port)
    assert len(re.findall(UNREACHABLE, daemon.wait_for_log(UNREACHABLE, count=2))) == 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as successor:
        successor.bind(str(syslog_path))
        served(port)
    log = daemon.wait_for_log(REACHED, count=2)
    assert len(re.findall(REACHED, log)) == 2
    assert len(re.findall(UNREACHABLE, log)) == 2


def test_the_notice_counts_the_lines_dropped_beyond_the_limit(
        daemons: DaemonFactory, port: int, syslog_path: Path,
        syslogd: socket.socket) -> None:
    # Refused connections: a FAIL line each, and no server to start.
    daemon = daemons.start_config(service(port, "only_from = 10.9.9.9",
                                          "log_on_failure = HOST"))
    for _ in range(1005):
        served(port)
    assert len(re.findall(UNREACHABLE, daemon.log())) == 1
    syslogd.bind(str(syslog_path))
    served(port)
    # The socket takes a few at once, the rest as the reader makes room; the count of
    # dropped lines comes once the backlog is empty, after the newest line.
    got = syslog_until(syslogd, "messages dropped", most=1002)
    assert got[-1].endswith("]: 5 messages dropped: no syslog daemon listened")
    assert sum("FAIL: a address" in m for m in got) == 1001
    log = daemon.wait_for_log(REACHED)
    assert re.findall(REACHED + r".*", log) == [
        f"NOTICE: syslog: a syslog daemon listens on {syslog_path}: the 1000 messages "
        "that waited were sent, 5 more were dropped"]


def test_stderr_under_dontfork_says_it_too(tmp_path: Path, port: int, syslog_path: Path,
                                           syslogd: socket.socket) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(service(port, "log_on_success = PID"))
    err = tmp_path / "stderr"
    with open(err, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf),
                                 "-dontfork"], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, start_new_session=True)
    daemon = Daemon(proc, err)
    try:
        daemon.wait_ready()
        served(port)
        assert len(re.findall(UNREACHABLE, read_log(err))) == 1
        syslogd.bind(str(syslog_path))
        served(port)
        assert len(re.findall(REACHED, read_log(err))) == 1
    finally:
        daemon.stop()


def test_a_program_log_on_syslog_says_nothing_of_it(
        tmp_path: Path, port: int, syslog_path: Path, syslogd: socket.socket) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(service(port, "log_on_success = PID"))
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                             "-syslog", "daemon"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: _accepts(port), TIMEOUT, what="the service")
        syslogd.bind(str(syslog_path))
        served(port)
        # Started working, the two START lines: in order, and nothing about the outage.
        got = syslog_until(syslogd, "START", most=10)
        got.append(syslogd.recv(4096).decode())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
    assert "Started working" in "".join(got)
    assert sum("START: a" in m for m in got) == 2
    assert not any("syslog daemon" in m for m in got)


def _accepts(port: int) -> bool:
    try:
        served(port)
        return True
    except OSError:
        return False
