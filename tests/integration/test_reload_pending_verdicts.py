"""A plain service's access verdict still awaited at a reload (here an aclexec command
held by a FIFO) is judged by the new configuration once it comes: the new rules refuse
the client (FAIL, no server), or admit it to the new configuration's server; a
removed service's client is closed without a server (docs/reload.md)."""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port, read_log, wait_log_lines
from tests.integration.test_intercept import (gated_aclexec, tcp_from, udp_from,
                                            verdict_awaited)
from tests.integration.test_reload import reload


def config(tmp_path: Path, port: int, *lines: str, socket_type: str = "stream",
           wait: str = "no", server: str = "/bin/echo", args: str = "old",
           libwrap: str = "in.icept") -> str:
    """Service `plain` (its hosts.allow name in.icept, as gated_aclexec writes)."""
    body = "".join(f"\t{line}\n" for line in lines)
    return f"""defaults
{{
\tlog_type = FILE {tmp_path / "services.log"}
\tlog_on_success = PID HOST EXIT
\tlog_on_failure = HOST
}}
service plain
{{
\ttype = UNLISTED
\tsocket_type = {socket_type}
\tprotocol = {"tcp" if socket_type == "stream" else "udp"}
\twait = {wait}
\tuser = root
\tport = {port}
\tbind = 127.0.0.1
\tserver = {server}
\tserver_args = {args}
\tlibwrap = {libwrap}
{body}}}
"""


def dgram_config(tmp_path: Path, port: int, *lines: str, wait: str = "no",
                 count: str = "", libwrap: str = "in.icept") -> str:
    """Service `plain` as a datagram service: wait = yes runs udp_wait_server.py (with
    `count`, its argument), wait = no dgram_nowait_server.py."""
    helper = "udp_wait_server.py" if wait == "yes" else "dgram_nowait_server.py"
    args = f"-I -S {HELPERS / helper} {count}".rstrip()
    return config(tmp_path, port, *lines, socket_type="dgram", wait=wait,
                  server=sys.executable, args=args, libwrap=libwrap)


def gated_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int, Path]:
    """The FIFO holding the verdict of 127.0.0.5 (gated_aclexec), a port for the
    service, and its log."""
    return (gated_aclexec(tmp_path, monkeypatch, "127.0.0.5"), free_port(),
            tmp_path / "services.log")


@contextmanager
def connected_across(daemon: Daemon, gate: Path, port: int,
                     new: str) -> Iterator[socket.socket]:
    """The connection of 127.0.0.5, its verdict awaited at a reload to `new`, once the
    verdict came."""
    with tcp_from("127.0.0.5", port) as late:
        with verdict_awaited(gate):
            reload(daemon, new, 1)
        yield late


@contextmanager
def sent_across(daemon: Daemon, gate: Path, port: int,
                new: str) -> Iterator[socket.socket]:
    """The socket of 127.0.0.5, whose datagram's verdict is awaited at a reload to
    `new`, once the verdict came."""
    with udp_from("127.0.0.5") as late:
        late.sendto(b"late", ("127.0.0.1", port))
        with verdict_awaited(gate):
            reload(daemon, new, 1)
        yield late


def answer(conn: socket.socket) -> bytes:
    """All the server sent until the connection ended (b"" when the daemon closed or
    reset it unanswered)."""
    chunks = []
    try:
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def answer_across(daemon: Daemon, gate: Path, port: int, new: str) -> bytes:
    """What the connection of 127.0.0.5, its verdict awaited at a reload to `new`,
    gets once the verdict came."""
    with connected_across(daemon, gate, port, new) as late:
        return answer(late)


def judged_by_the_new_rules(log: Path, change: str, answered: bytes) -> None:
    """`changed`: the client got the new configuration's server; otherwise none, and
    `refused` logged FAIL."""
    if change == "changed":
        assert answered == b"new\n"
        wait_log_lines(log, r"START: plain pid=\d+ from=127\.0\.0\.5")
        return
    assert answered == b""
    if change == "refused":
        wait_log_lines(log, r"FAIL: plain address from=127\.0\.0\.5")
    assert "START: plain" not in read_log(log)


@pytest.mark.parametrize("change", ["refused", "changed", "removed"])
def test_a_stream_verdict_awaited_at_a_reload_is_judged_by_the_new_rules(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    # Before: the old rules' verdict started the old configuration's server.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    daemon = daemons.start_config(config(tmp_path, port))
    if change == "refused":
        new = config(tmp_path, port, "no_access = 127.0.0.5")
    elif change == "changed":
        # Under its new hosts.allow name no rule asks an aclexec command.
        new = config(tmp_path, port, args="new", libwrap="in.other")
    else:
        new = config(tmp_path, free_port()).replace("service plain", "service other")
    judged_by_the_new_rules(log, change, answer_across(daemon, gate, port, new))


@pytest.mark.parametrize("wait", ["yes", "no"])
def test_a_datagram_verdict_awaited_at_a_reload_is_judged_by_the_new_rules(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        wait: str) -> None:
    # The dispatcher's first datagram of a sender, waiting for its verdict: the new
    # rules refuse the sender; no server starts for it, and the next sender is served.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    daemon = daemons.start_config(dgram_config(tmp_path, port, wait=wait))
    new = dgram_config(tmp_path, port, "no_access = 127.0.0.5", wait=wait)
    with sent_across(daemon, gate, port, new) as late, udp_from("127.0.0.6") as other:
        wait_log_lines(log, r"FAIL: plain address from=127\.0\.0\.5")
        other.sendto(b"next", ("127.0.0.1", port))
        assert re.fullmatch(r"pid=\d+ got=next", other.recv(1000).decode())
        late.setblocking(False)
        with pytest.raises(BlockingIOError):
            late.recv(1000)
    assert "START: plain pid=0" not in read_log(log)
    assert not re.search(r"START: plain pid=\d+ from=127\.0\.0\.5", read_log(log))


@pytest.mark.parametrize("change", ["refused", "changed"])
def test_a_verdict_awaited_at_a_reload_that_replaces_the_socket_is_judged_by_the_new_rules(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    # `flags = KEEPALIVE` makes a new socket: the request, accepted on the old one,
    # is still judged by the configuration in force, not the one it was asked under.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    daemon = daemons.start_config(config(tmp_path, port))
    if change == "refused":
        new = config(tmp_path, port, "flags = KEEPALIVE", "no_access = 127.0.0.5")
    else:
        new = config(tmp_path, port, "flags = KEEPALIVE", args="new", libwrap="in.other")
    judged_by_the_new_rules(log, change, answer_across(daemon, gate, port, new))


@pytest.mark.parametrize("wait", ["yes", "no"])
def test_a_datagram_verdict_awaited_at_a_reload_that_replaces_the_socket_goes_with_it(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        wait: str) -> None:
    # The datagram was read from (or queued on) the old socket, which is gone: no
    # verdict of the old rules is applied to it (the failed aclexec hands over to a
    # hosts.deny rule that would refuse it: no FAIL line, no server), and the
    # sender's next datagram, on the new socket, is judged by the new rules.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    allow = tmp_path / "hosts.allow"
    allow.write_text(allow.read_text().replace(">/dev/null'", ">/dev/null; exit 1'"))
    (tmp_path / "hosts.deny").write_text("in.icept: ALL\n")
    daemon = daemons.start_config(dgram_config(tmp_path, port, wait=wait))
    # A wildcard `bind` makes a new socket, still reached at 127.0.0.1.
    new = dgram_config(tmp_path, port, wait=wait, libwrap="in.other").replace(
        "bind = 127.0.0.1", "bind = 0.0.0.0")
    with sent_across(daemon, gate, port, new) as late:
        # The old rules' check has ended (and its verdict, if any, been applied).
        daemon.wait_for_log(r"aclexec returned 1 .* for plain from 127\.0\.0\.5")
        late.sendto(b"again", ("127.0.0.1", port))
        reply = late.recv(1000).decode()
        assert re.fullmatch(r"pid=\d+ got=again", reply), reply
    text = read_log(log)
    assert "FAIL: plain" not in text
    assert len(re.findall(r"START: plain pid=\d+ from=127\.0\.0\.5", text)) == 1


def test_a_verdict_awaited_at_a_reload_whose_new_socket_cannot_bind_starts_no_server(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The new `bind` address is not on the host: the service is not available under
    # the configuration that judges the request, so no server starts for it.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    daemon = daemons.start_config(config(tmp_path, port))
    new = config(tmp_path, port, libwrap="in.other").replace(
        "bind = 127.0.0.1", "bind = 192.0.2.1")
    assert answer_across(daemon, gate, port, new) == b""
    daemon.wait_for_log(r"service plain: request from 127\.0\.0\.5 dropped: "
                        r"the service is not available")
    assert "START: plain" not in read_log(log)


def test_a_datagram_judged_again_at_a_reload_whose_next_reload_replaces_the_socket_goes_with_it(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A first reload has the new rules judge the waiting datagram (their aclexec
    # command runs for it); a second one, before their verdict, replaces the socket:
    # the datagram went with the old socket, and the second reload's rules, which
    # refuse the sender, log no FAIL line for it.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    allow = tmp_path / "hosts.allow"
    allow.write_text(allow.read_text().replace(">/dev/null'", ">/dev/null; exit 1'"))
    daemon = daemons.start_config(dgram_config(tmp_path, port, wait="yes"))
    first = dgram_config(tmp_path, port, wait="yes", count="0")
    with sent_across(daemon, gate, port, first) as late:
        with verdict_awaited(gate):
            reload(daemon, dgram_config(tmp_path, port, "no_access = 127.0.0.5", wait="yes"
                                        ).replace("bind = 127.0.0.1", "bind = 0.0.0.0"), 2)
        # The second rules' check has ended (its command failed: they would hand over).
        daemon.wait_for_log(r"aclexec returned 1 .* for plain from 127\.0\.0\.5", count=2)
        # The socket is watched: a datagram of another sender is served.
        with udp_from("127.0.0.6") as other:
            other.sendto(b"next", ("127.0.0.1", port))
            assert re.fullmatch(r"pid=\d+ got=next", other.recv(1000).decode())
    text = read_log(log)
    assert "FAIL: plain" not in text
    assert not re.search(r"START: plain pid=\d+ from=127\.0\.0\.5", text)


def test_a_connection_judged_again_at_a_reload_whose_next_reload_replaces_the_socket_is_served(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first reload's rules run their aclexec command for the waiting connection;
    # the second reload gives the service a new socket before their verdict: the
    # connection, accepted on the first socket, is judged by the second reload's
    # configuration and gets its server.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    daemon = daemons.start_config(config(tmp_path, port))
    with connected_across(daemon, gate, port, config(tmp_path, port, args="first")) as late:
        with verdict_awaited(gate):
            reload(daemon, config(tmp_path, port, "flags = KEEPALIVE", args="second",
                                  libwrap="in.other"), 2)
        assert answer(late) == b"second\n"
    wait_log_lines(log, r"START: plain pid=\d+ from=127\.0\.0\.5")
    assert "not available" not in daemon.log()


@pytest.mark.parametrize("socket_type", ["stream", "dgram"])
def test_a_verdict_awaited_at_a_reload_that_changes_nothing_is_applied_and_asked_once(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        socket_type: str) -> None:
    # A SIGHUP with the file unchanged (its lines moved, here) makes new configuration
    # objects but replaces no rule: the awaited verdict stands, and the aclexec command
    # is not run a second time for the same client.
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    runs = tmp_path / "runs"
    allow = tmp_path / "hosts.allow"
    allow.write_text(allow.read_text().replace("aclexec /bin/sh -c '",
                                               f"aclexec /bin/sh -c 'echo run >>{runs}; "))
    text = config(tmp_path, port) if socket_type == "stream" else dgram_config(tmp_path, port)
    daemon = daemons.start_config(text)
    if socket_type == "stream":
        assert answer_across(daemon, gate, port, "\n\n" + text) == b"old\n"
    else:
        with sent_across(daemon, gate, port, "\n\n" + text) as late:
            assert re.fullmatch(r"pid=\d+ got=late", late.recv(1000).decode())
    wait_log_lines(log, r"START: plain pid=\d+ from=127\.0\.0\.5")
    assert runs.read_text() == "run\n"
    assert "FAIL" not in read_log(log)


def test_a_server_admitted_by_a_verdict_that_stood_at_an_unchanged_reload_moves_with_the_next_reload(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A first reload has the new rules judge the waiting connection; a second one,
    # before their verdict, changes nothing. The server the verdict starts is the
    # service's as a third reload finds it: its EXIT goes to the third one's log
    # (before, it carried the first reload's configuration, which no reload hands
    # over: its EXIT went to a log the service no longer writes to).
    gate, port, log = gated_plain(tmp_path, monkeypatch)
    moved = tmp_path / "moved.log"
    daemon = daemons.start_config(config(tmp_path, port, server="/bin/cat", args="-"))
    changed = config(tmp_path, port, server="/bin/cat", args="- -")
    with connected_across(daemon, gate, port, changed) as late:
        with verdict_awaited(gate):
            reload(daemon, "\n\n" + changed, 2)
        wait_log_lines(log, r"START: plain pid=\d+ from=127\.0\.0\.5")
        reload(daemon, changed.replace("services.log", "moved.log"), 3)
        late.sendall(b"served\n")
        assert late.recv(100) == b"served\n"
    wait_log_lines(moved, r"EXIT: plain status=0 pid=\d+")
    assert "EXIT" not in read_log(log)
