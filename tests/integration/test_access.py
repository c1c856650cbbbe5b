"""Access control end to end: only_from/no_access (numeric and by name), hosts.allow and
hosts.deny (refusal by daemon name, twist, spawn), banner_fail and the FAIL reasons.

127.0.0.1's reverse name on the test machines is `localhost` (/etc/hosts), which the
name tests rely on; they skip when that is not so.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from pyxinetd.access.resolver import resolve
from tests.daemon import Daemon, DaemonFactory, free_port, read_log, wait_log_lines, wait_until

TIMEOUT = 10.0
LOCALHOST_KNOWN = resolve("127.0.0.1").name == "localhost"


def service(name: str, port: int, log: Path, extra: str = "", server_args: str = "hello"
            ) -> str:
    return f"""
service {name}
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    user = root
    server = /bin/echo
    server_args = {server_args}
    bind = 127.0.0.1
    log_type = FILE {log}
    log_on_success = PID HOST EXIT
    log_on_failure = HOST
{extra}
}}
"""


def fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        chunks = []
        while True:
            data = conn.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@pytest.fixture
def setup(daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> tuple[Daemon, dict[str, int], Path]:
    log = tmp_path / "services.log"
    fail_banner = tmp_path / "go-away"
    fail_banner.write_bytes(b"go away\r\n")
    spawned = tmp_path / "spawned.txt"
    (tmp_path / "hosts.allow").write_text(
        "twisted: 127.0.0.1: twist /bin/echo twisted %d %a\n"
        f"spawned: ALL: spawn echo %d %a > {spawned}\n")
    (tmp_path / "hosts.deny").write_text("refused-one: ALL\nby-name: localhost\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    specs = {
        "numeric": f"    only_from = 127.0.0.2\n    banner_fail = {fail_banner}",
        "better": "    only_from = 127.0.0.1\n    no_access = 127.0.0.0/8",
        "tie": "    only_from = 127.0.0.0/8\n    no_access = 127.0.0.0/8",
        "byname": "    only_from = localhost",
        "notbyname": "    no_access = localhost",
        "domain": "    only_from = .example.invalid",
        "wrapped": f"    libwrap = refused-one\n    banner_fail = {fail_banner}",
        "nowrap": "    libwrap = refused-one\n    flags = NOLIBWRAP",
        "named": "    libwrap = by-name",
        "twist": "    libwrap = twisted",
        "spawn": "    libwrap = spawned",
    }
    ports = {name: free_port() for name in specs}
    conf = "".join(service(name, ports[name], log, extra) for name, extra in specs.items())
    daemon = daemons.start_config(conf)
    return daemon, ports, log


def service_log(log: Path) -> str:
    return read_log(log)


def wait_log(log: Path, text: str) -> None:
    wait_log_lines(log, re.escape(text), timeout=TIMEOUT)


def test_address_lists(setup: tuple[Daemon, dict[str, int], Path]) -> None:
    daemon, ports, log = setup
    assert "started with libwrap loadavg options compiled in" in daemon.log()
    assert fetch(ports["numeric"]) == b"go away\r\n"
    wait_log(log, "FAIL: numeric address from=127.0.0.1")
    assert fetch(ports["better"]) == b"hello\n"        # the more specific entry wins
    assert fetch(ports["tie"]) == b""
    wait_log(log, "FAIL: tie address from=127.0.0.1")
    daemon.wait_for_log("Service=tie: only_from list and no_access list match equally "
                        "the address 127.0.0.1")
    assert fetch(ports["domain"]) == b""
    wait_log(log, "FAIL: domain address from=127.0.0.1")
    # A refusal by the lists costs no process: no START for these services.
    assert "START: numeric" not in service_log(log)


@pytest.mark.skipif(not LOCALHOST_KNOWN, reason="127.0.0.1 does not resolve to localhost")
def test_address_lists_by_name(setup: tuple[Daemon, dict[str, int], Path]) -> None:
    daemon, ports, log = setup
    assert fetch(ports["byname"]) == b"hello\n"
    assert fetch(ports["notbyname"]) == b""
    wait_log(log, "FAIL: notbyname address from=127.0.0.1")


def test_hosts_deny_by_daemon_name(setup: tuple[Daemon, dict[str, int], Path]) -> None:
    daemon, ports, log = setup
    assert fetch(ports["wrapped"]) == b"go away\r\n"
    wait_log(log, "FAIL: wrapped libwrap from=127.0.0.1")
    daemon.wait_for_log("INFO: libwrap refused connection to wrapped "
                        r"\(libwrap=refused-one\) from 127.0.0.1")
    assert fetch(ports["nowrap"]) == b"hello\n"        # NOLIBWRAP skips the tables


@pytest.mark.skipif(not LOCALHOST_KNOWN, reason="127.0.0.1 does not resolve to localhost")
def test_hosts_deny_by_host_name(setup: tuple[Daemon, dict[str, int], Path]) -> None:
    daemon, ports, log = setup
    assert fetch(ports["named"]) == b""
    wait_log(log, "FAIL: named libwrap from=127.0.0.1")


def test_twist_and_spawn(setup: tuple[Daemon, dict[str, int], Path], tmp_path: Path) -> None:
    daemon, ports, log = setup
    assert fetch(ports["twist"]) == b"twisted twisted 127.0.0.1\n"
    assert fetch(ports["spawn"]) == b"hello\n"
    spawned = tmp_path / "spawned.txt"
    wait_until(lambda: spawned.exists() and spawned.read_text() == "spawned 127.0.0.1\n",
               TIMEOUT, what="the spawn command's output")


def test_tables_are_reread_when_they_change(setup: tuple[Daemon, dict[str, int], Path],
                                            tmp_path: Path) -> None:
    daemon, ports, log = setup
    assert fetch(ports["nowrap"]) == b"hello\n"
    assert fetch(ports["byname" if LOCALHOST_KNOWN else "better"]) == b"hello\n"
    (tmp_path / "hosts.deny").write_text("ALL: ALL\n")
    wait_until(lambda: fetch(ports["better"]) == b"", TIMEOUT, interval=0.2,
               what="the edited hosts.deny to apply")
    wait_log(log, "FAIL: better libwrap from=127.0.0.1")


@pytest.mark.parametrize(("only_from", "served"), [
    ("127.0.0.0/8x", True),        # xinetd reads /8 and ignores the rest
    ("127.0.0.0/+8", True),
    ("127.0.0.2/32junk", False),
])
def test_only_from_prefix_length_read_as_xinetd_reads_it(
        daemons: DaemonFactory, tmp_path: Path, only_from: str, served: bool) -> None:
    port = free_port()
    log = tmp_path / "services.log"
    daemon = daemons.start_config(service("masked", port, log, f"only_from = {only_from}\n"
                                                                 "flags = NOLIBWRAP"))
    assert fetch(port) == (b"hello\n" if served else b"")
    wait_log_lines(log, re.escape("START: masked" if served else
                                  "FAIL: masked address from=127.0.0.1"), timeout=TIMEOUT)
    if only_from != "127.0.0.0/+8":
        daemon.wait_for_log(r"after the prefix length is ignored", timeout=TIMEOUT)


def test_a_client_that_spoke_first_still_gets_the_whole_refusal(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bytes the client sent before it was refused are never read; closing over them
    # made the kernel reset the connection, which could throw banner_fail (and the
    # `banner` before it) away before the client read it.
    log = tmp_path / "services.log"
    (tmp_path / "hi").write_bytes(b"hello there\r\n")
    (tmp_path / "go-away").write_bytes(b"go away\r\n")
    ports = {name: free_port() for name in ("address", "wrapped")}
    (tmp_path / "hosts.deny").write_text("refused-two: ALL\n")
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    extra = f"    banner = {tmp_path / 'hi'}\n    banner_fail = {tmp_path / 'go-away'}\n"
    daemons.start_config(
        service("address", ports["address"], log, extra + "    only_from = 10.0.0.1")
        + service("wrapped", ports["wrapped"], log, extra + "    libwrap = refused-two"))
    for name, port in ports.items():
        for attempt in range(30):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
                conn.sendall(b"x\n" * 100)
                got = b""
                while data := conn.recv(65536):
                    got += data
            assert got == b"hello there\r\ngo away\r\n", (name, attempt)
