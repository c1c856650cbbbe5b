"""hosts.allow's `linger N` option through the real daemon.

libwrap sets lingering on for N > 0 and off for `linger 0` (the default graceful close);
on with 0 seconds would make the last close a reset, cutting off what a server wrote
last. And lingering belongs to a server's socket: on a connection the daemon serves and
closes itself (a builtin, a redirect), close() would wait up to N seconds for a client
that does not read, the whole daemon with it, where xinetd's forked child alone waits.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port

TIMEOUT = 10.0


def tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: str) -> None:
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))


def internal(name: str, port: int) -> str:
    return (f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tport = {port}\n\tbind = 127.0.0.1\n}}\n")


def test_linger_0_is_a_graceful_close_not_a_reset(daemons: DaemonFactory, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tables(tmp_path, monkeypatch, "ALL: ALL: linger 0\n")
    server = tmp_path / "big"
    server.write_text("#!/bin/sh\nexec head -c 3000000 /dev/zero\n")
    server.chmod(0o755)
    port = free_port()
    daemons.start_config(f"service big\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                         f"\twait = no\n\tuser = root\n\tport = {port}\n"
                         f"\tbind = 127.0.0.1\n\tserver = {server}\n}}\n")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        # The server writes all it can, exits; its socket's last close comes while
        # most of the 3 MB still waits for this client.
        time.sleep(1)
        received = 0
        while data := conn.recv(1 << 16):
            received += len(data)
    assert received == 3000000


def test_linger_on_a_connection_the_daemon_serves_stalls_nothing(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An echo client that sends a lot, half-closes and never reads: the session ends
    # with output unsent. With SO_LINGER 60 on it the master's close() waited for it,
    # and daytime, asked meanwhile, was answered only after that (or its client's
    # 10 s timeout came first).
    tables(tmp_path, monkeypatch, "ALL: ALL: linger 60\n")
    echo, daytime = free_port(), free_port()
    daemons.start_config(internal("echo", echo) + internal("daytime", daytime))
    with socket.create_connection(("127.0.0.1", echo), timeout=TIMEOUT) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = b"x" * 300000
        hog.settimeout(1)
        try:
            hog.sendall(payload)
        except OSError:
            pass        # the echo is not read: the daemon stops reading at some point
        hog.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", daytime), timeout=TIMEOUT) as conn:
            reply = b""
            while data := conn.recv(100):
                reply += data
    assert reply.endswith(b"\r\n")


def test_linger_on_a_connection_whose_server_failed_stalls_nothing(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server cannot be executed (its mode changed after the load): the daemon
    # closes the connection itself, and its banner, not read by the client, was still
    # queued. With SO_LINGER 60 left on it, that close held the daemon.
    tables(tmp_path, monkeypatch, "ALL: ALL: linger 60\n")
    banner = tmp_path / "banner"
    banner.write_bytes(b"b" * 400000)
    server = tmp_path / "server"
    server.write_text("#!/bin/sh\necho never\n")
    server.chmod(0o755)
    broken, daytime = free_port(), free_port()
    daemon = daemons.start_config(
        f"service broken\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = root\n\tport = {broken}\n\tbind = 127.0.0.1\n\tserver = {server}\n"
        f"\tbanner = {banner}\n}}\n" + internal("daytime", daytime))
    server.chmod(0o644)
    with socket.socket() as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.settimeout(TIMEOUT)
        hog.connect(("127.0.0.1", broken))
        daemon.wait_for_log(r"FAIL|ERROR")
        with socket.create_connection(("127.0.0.1", daytime), timeout=TIMEOUT) as conn:
            reply = b""
            while data := conn.recv(100):
                reply += data
    assert reply.endswith(b"\r\n")
