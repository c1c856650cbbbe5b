"""SyslogSender never raises nor blocks: a line it cannot send yet waits, and goes first
once the next one can be sent."""

from __future__ import annotations

import os
import resource
import socket
from pathlib import Path

from pyxinetd.log import SyslogSender


def send_without_a_descriptor(sender: SyslogSender, text: str) -> None:
    """`sender.send(text)` with not a descriptor left for its socket (as when accept()
    has just failed with EMFILE): the limit is the number the next one would get."""
    lowest_free = os.dup(0)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        sender.send(27, text)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_no_descriptor_for_the_socket_keeps_the_line_for_the_next_one(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender = SyslogSender(path)
        send_without_a_descriptor(sender, "accept failed: Too many open files")
        assert sender.pending == 1
        sender.send(27, "and then")
        got = [m.rsplit(b": ", 1)[1] for m in _received(syslogd)]
        sender.close()
    assert got == [b"Too many open files", b"and then"]


def _received(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    got: list[bytes] = []
    while True:
        try:
            got.append(sock.recv(1000))
        except BlockingIOError:
            return got


def test_messages_sent_while_nobody_listens_go_first_once_a_syslog_daemon_listens(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    sender = SyslogSender(path)
    sender.send(27, "one")              # no syslog daemon yet
    sender.send(27, "two")
    assert sender.pending == 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender.send(27, "three")
        got = _received(syslogd)
        sender.close()
    assert [m.rsplit(b": ", 1)[1] for m in got] == [b"one", b"two", b"three"]


def test_a_restarted_syslog_daemon_gets_what_was_sent_while_it_was_away(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old.bind(path)
    sender = SyslogSender(path)
    sender.send(27, "before")
    assert [m.rsplit(b": ", 1)[1] for m in _received(old)] == [b"before"]
    old.close()
    os.unlink(path)
    sender.send(27, "meanwhile")        # the old socket is gone, no new one yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as new:
        new.bind(path)
        sender.send(27, "after")
        got = _received(new)
        sender.close()
    assert [m.rsplit(b": ", 1)[1] for m in got] == [b"meanwhile", b"after"]


def test_what_nobody_listened_to_beyond_the_limit_is_counted_once(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    sender = SyslogSender(path)
    sender._limit = 3
    for n in range(5):
        sender.send(27, f"m{n}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender.send(27, "m5")
        got = [m.split(b"]: ", 1)[1] for m in _received(syslogd)]
        sender.close()
    assert got == [b"m0", b"m1", b"m2", b"2 messages dropped: no syslog daemon listened",
                   b"m5"]


def test_a_syslog_daemon_that_stops_reading_never_blocks_and_the_loss_is_said_once(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender = SyslogSender(path)
        sender._limit = 3
        total = qlen + 1 + 3 + 5    # the socket's queue, the backlog, 5 too many
        for n in range(total):
            sender.send(27, f"m{n}")    # returns at once: the socket is non-blocking
        assert sender.pending == 3
        got = [m.split(b"]: ", 1)[1] for m in _received(syslogd)]
        sender.flush()
        got += [m.split(b"]: ", 1)[1] for m in _received(syslogd)]
        sender.close()
    assert got == [f"m{n}".encode() for n in range(total - 5)] + [
        b"5 messages dropped: the syslog socket was full"]


def test_an_outage_is_told_once_as_it_begins_and_once_when_what_waited_was_sent(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    sender = SyslogSender(path)
    told: list[str] = []
    sender.on_unreachable = told.append
    sender.on_reached = told.append
    sender._limit = 3
    for n in range(5):
        sender.send(27, f"m{n}")
    assert told == [f"syslog: no syslog daemon listens on {path} (No such file or "
                    "directory): syslog messages wait for one, at most 3; beyond "
                    "that the newest are dropped"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender.send(27, "m5")
        sender.send(27, "m6")
        assert len(_received(syslogd)) == 6
        assert told[1:] == [f"syslog: a syslog daemon listens on {path}: the 3 messages "
                            "that waited were sent, 2 more were dropped"]
    os.unlink(path)
    sender.send(27, "m7")
    assert len(told) == 3 and told[2].startswith("syslog: no syslog daemon listens on")
    sender.close(flush_for=0)


def test_a_socket_without_a_descriptor_for_it_is_told_as_unreachable(
        tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        sender = SyslogSender(path)
        told: list[str] = []
        sender.on_unreachable = told.append
        sender.on_reached = told.append
        send_without_a_descriptor(sender, "accept failed: Too many open files")
        sender.send(27, "and then")
        sender.close()
    assert told == [f"syslog: cannot reach the syslog daemon on {path} (Too many open "
                    "files): syslog messages wait for one, at most 1,000; beyond "
                    "that the newest are dropped",
                    f"syslog: a syslog daemon listens on {path}: the 1 message that "
                    "waited was sent"]


def test_a_message_longer_than_a_datagram_may_be_is_cut_not_lost(tmp_path: Path) -> None:
    # A service name of 300,000 characters in an ERROR line: the datagram socket
    # refuses it (EMSGSIZE), and it was dropped without a word.
    from pyxinetd.syslogsender import DATAGRAM_CUT
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        syslogd.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sender = SyslogSender(path)
        sender.send(27, "Service " + "n" * 300000 + " missing attribute user")
        sender.send(27, "next")
        syslogd.setblocking(False)
        first = syslogd.recv(1 << 20)
        second = syslogd.recv(1000)
        sender.close()
    assert len(first) == DATAGRAM_CUT and b"Service nnnn" in first
    assert second.endswith(b": next")
