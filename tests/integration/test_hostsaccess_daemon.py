"""hosts.allow/hosts.deny end to end with the real daemon on loopback: `daemon@host`
patterns (services on 127.0.0.1 and 127.0.0.2 under one daemon name), the `%`
expansions of the server endpoint seen through a `spawn` command, and `aclexec` with
/bin/true and /bin/false in both files.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import sys
from pathlib import Path

import pytest

from pyxinetd.access.resolver import resolve
from pyxinetd.service import MAX_PARKED_BYTES
from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port, namespace_problem, \
    run_scenario, wait_log_lines, wait_until
from tests.helpers.procs import resolver_helpers

TIMEOUT = 10.0


def service(name: str, bind: str, port: int, log: Path, libwrap: str) -> str:
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
    server_args = hello
    bind = {bind}
    libwrap = {libwrap}
    log_type = FILE {log}
    log_on_success = PID HOST
    log_on_failure = HOST
}}
"""


def fetch(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=TIMEOUT) as conn:
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


@pytest.fixture
def setup(daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> tuple[Daemon, dict[str, tuple[str, int]], Path]:
    log = tmp_path / "services.log"
    spawned = tmp_path / "spawned.txt"
    (tmp_path / "hosts.allow").write_text(
        "in.both@127.0.0.2: ALL\n"
        f"in.expand: ALL: spawn echo %A %R %a %H %s %d %N > {spawned}\n"
        "in.acltrue: ALL: aclexec /bin/true\n"
        "in.aclfalse: ALL: aclexec /bin/false\n"
        # Never reached for in.aclfalse: a failed aclexec ends the scan of this file.
        "in.aclfalse: ALL: allow\n")
    (tmp_path / "hosts.deny").write_text(
        "in.both, in.acltrue, in.aclfalse: ALL\n"
        "in.listed: ALL: aclexec /bin/true\n"
        "in.unlisted: ALL: aclexec /bin/false\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    specs = {
        "both-one": ("127.0.0.1", "in.both"),
        "both-two": ("127.0.0.2", "in.both"),
        "expand": ("127.0.0.2", "in.expand"),
        "acl-true": ("127.0.0.1", "in.acltrue"),
        "acl-false": ("127.0.0.1", "in.aclfalse"),
        "listed": ("127.0.0.1", "in.listed"),
        "unlisted": ("127.0.0.1", "in.unlisted"),
    }
    where = {name: (bind, free_port()) for name, (bind, _) in specs.items()}
    conf = "".join(service(name, where[name][0], where[name][1], log, libwrap)
                   for name, (_, libwrap) in specs.items())
    return daemons.start_config(conf), where, log


def wait_log(log: Path, text: str) -> None:
    wait_log_lines(log, re.escape(text), timeout=TIMEOUT)


def test_daemon_at_host_tells_the_local_addresses_apart(
        setup: tuple[Daemon, dict[str, tuple[str, int]], Path]) -> None:
    daemon, where, log = setup
    assert fetch(*where["both-two"]) == b"hello\n"
    assert fetch(*where["both-one"]) == b""
    wait_log(log, "FAIL: both-one libwrap from=127.0.0.1")
    daemon.wait_for_log(r"INFO: libwrap refused connection to both-one "
                        r"\(libwrap=in.both\) from 127.0.0.1")


def test_server_endpoint_expansions(setup: tuple[Daemon, dict[str, tuple[str, int]], Path],
                                    tmp_path: Path) -> None:
    daemon, where, log = setup
    assert fetch(*where["expand"]) == b"hello\n"
    spawned = tmp_path / "spawned.txt"
    wait_until(lambda: spawned.exists() and spawned.read_text().endswith("\n"), TIMEOUT,
               what="the spawn command's output")
    port = where["expand"][1]
    # %N has the server's name looked up; %H and %s use it when there is one.
    info = resolve("127.0.0.2")
    name = (info.name if info.confirmed else "paranoid") if info.name else "unknown"
    host = info.name if info.name and info.confirmed else "127.0.0.2"
    assert spawned.read_text().split() == [
        "127.0.0.2", str(port), "127.0.0.1", host, f"in.expand@{host}", "in.expand", name]


def test_aclexec_status_decides(setup: tuple[Daemon, dict[str, tuple[str, int]], Path]
                                ) -> None:
    daemon, where, log = setup
    assert fetch(*where["acl-true"]) == b"hello\n"
    assert fetch(*where["acl-false"]) == b""
    wait_log(log, "FAIL: acl-false libwrap from=127.0.0.1")
    daemon.wait_for_log(r"aclexec returned 1 \(hosts.allow line 4\) for acl-false from "
                        r"127.0.0.1: the rule does not apply")
    # In hosts.deny, a successful check refuses and a failed one lets the client in.
    assert fetch(*where["listed"]) == b""
    wait_log(log, "FAIL: listed libwrap from=127.0.0.1")
    assert fetch(*where["unlisted"]) == b"hello\n"
    assert "START: acl-false" not in log.read_text()


# -- datagram requests -----------------------------------------------------------------

def udp_service(name: str, port: int, kind: str) -> str:
    """A udp service on 127.0.0.2 with the id `name`, wrapped as in.`name` (the builtin
    is the service `echo`)."""
    helpers = Path(__file__).resolve().parents[1] / "helpers"
    body = {
        "internal": "type = INTERNAL UNLISTED\n    wait = yes",
        "wait": f"type = UNLISTED\n    wait = yes\n    server = {sys.executable}\n"
                f"    server_args = {helpers / 'udp_wait_server.py'}",
        "nowait": f"type = UNLISTED\n    wait = no\n    server = {sys.executable}\n"
                  f"    server_args = {helpers / 'dgram_nowait_server.py'}",
    }[kind]
    return f"""
service {"echo" if kind == "internal" else name}
{{
    id = {name}
    {body}
    socket_type = dgram
    protocol = udp
    port = {port}
    bind = 127.0.0.2
    user = root
    libwrap = in.{name}
}}
"""


@pytest.mark.parametrize("kind", ["internal", "wait", "nowait"])
def test_datagram_expansions_have_the_client_port(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    spawned = tmp_path / "spawned.txt"
    (tmp_path / "hosts.allow").write_text(
        f"in.udp{kind}: ALL: spawn echo %A %R %a %r %s > {spawned}\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    daemons.start_config(udp_service(f"udp{kind}", port, kind))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(TIMEOUT)
        client.sendto(b"ping", ("127.0.0.2", port))
        assert client.recv(4096).endswith(b"ping")
        client_port = client.getsockname()[1]
    wait_until(lambda: spawned.exists() and spawned.read_text().endswith("\n"), TIMEOUT,
               what="the spawn command's output")
    # The sender's port (%r), and the service socket's address and port (%A %R).
    assert spawned.read_text().split() == [
        "127.0.0.2", str(port), "127.0.0.1", str(client_port), f"in.udp{kind}@127.0.0.2"]


@pytest.mark.skipif(namespace_problem("ip") is not None, reason=str(namespace_problem("ip")))
def test_a_burst_of_slow_lookups_does_not_delay_later_ones(tmp_path: Path) -> None:
    # Lookups the daemon gave up on are not made any more: without that, the burst's
    # 200 one-second lookups (4 at a time) would keep a later client waiting 50 s.
    result = run_scenario(HELPERS / "slow_dns_scenario.py", tmp_path,
                          sys.executable, "-m", "pyxinetd")
    assert result["before"]
    assert result["fail_lines"] == 200
    assert result["after"]


def test_an_aclexec_check_still_running_ends_with_the_daemon(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check runs in a session of its own; the daemon that waited for it exits: its
    # name resolver helper kills it rather than leaving it running for nobody.
    pidfile = tmp_path / "check.pid"
    (tmp_path / "hosts.allow").write_text(
        f"in.slow: ALL: aclexec echo $$ > {pidfile}; n=0; "
        "while [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    daemon = daemons.start_config(service("slow", "127.0.0.1", port,
                                          tmp_path / "services.log", "in.slow"))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        wait_until(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"),
                   TIMEOUT, what="the aclexec check")
        check = int(pidfile.read_text())
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
    wait_until(lambda: not running(check), TIMEOUT, what="the check to end")


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(namespace_problem("ip") is not None, reason=str(namespace_problem("ip")))
def test_datagrams_held_for_their_senders_names_are_bounded(tmp_path: Path) -> None:
    # While names are looked up, a service holds at most MAX_PARKED_BYTES of datagrams;
    # the next one stays in the socket's receive queue (bounded by the kernel) instead
    # of growing the daemon.
    result = run_scenario(HELPERS / "parked_flood_scenario.py", tmp_path,
                          sys.executable, "-m", "pyxinetd")
    size = 60_000
    assert result["read"] == -(-MAX_PARKED_BYTES // size)
    assert result["held"]
    # Its lookups still pending, the name resolver helper ends with the daemon.
    assert result["helpers"] == 1 and result["helpers_left"] == 0


def test_resolver_that_cannot_start_for_want_of_descriptors_is_retried(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(f"""
service echo
{{
    type = INTERNAL UNLISTED
    id = echo-dgram
    socket_type = dgram
    protocol = udp
    port = {port}
    bind = 127.0.0.1
    wait = yes
    only_from = localhost
}}
""")
    pid = daemon.proc.pid

    def ask() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(b"ping", ("127.0.0.1", port))
            try:
                return client.recv(100)
            except TimeoutError:
                return None

    # The name of each sender is looked up by the resolver helper, started on first
    # need: no descriptor is left for its socket pair (the soft limit is the lowest
    # free descriptor number).
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = min(set(range(len(used) + 1)) - used)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", ("127.0.0.1", port))
        daemon.wait_for_log(re.escape("ERROR: cannot start the name resolver: Too many open "
                                      "files (the name of 127.0.0.1 is not looked up)"))
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    # That datagram went on without a name (refused, as after a failed lookup); the
    # service still reads its socket, and the next datagram starts the helper.
    assert ask() == b"ping"
    assert "internal error" not in daemon.log()


def test_a_fifo_named_as_a_file_pattern_blocks_no_service(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules are judged in the daemon's loop: opening a FIFO with no writer would
    block it, and every service with it. A /file that is no regular file lists nothing."""
    fifo = tmp_path / "bad-hosts"
    os.mkfifo(fifo)
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text(f"in.fifo: {fifo}\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    log = tmp_path / "services.log"
    wrapped, other = free_port(), free_port()
    daemons.start_config(service("wrapped", "127.0.0.1", wrapped, log, "in.fifo")
                         + service("other", "127.0.0.1", other, log, "in.other"))
    assert fetch("127.0.0.1", wrapped) == b"hello\n"
    assert fetch("127.0.0.1", other) == b"hello\n"


def test_a_file_pattern_of_addresses_looks_no_name_up(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libwrap looks the name up only when a word of the file needs it: a file of
    # addresses costs no lookup (the resolver helper, started on first need, never is).
    good, bad = tmp_path / "good-hosts", tmp_path / "bad-hosts"
    good.write_text("10.9.9.9 127.0.0.1\n")
    bad.write_text("10.9.9.9\n127.0.0.0/255.0.0.0\n")
    (tmp_path / "hosts.allow").write_text(f"in.good: {good}\n")
    (tmp_path / "hosts.deny").write_text(f"in.good: ALL\nin.bad: {bad}\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    log = tmp_path / "services.log"
    admitted, refused = free_port(), free_port()
    daemon = daemons.start_config(service("good", "127.0.0.1", admitted, log, "in.good")
                                  + service("bad", "127.0.0.1", refused, log, "in.bad"))
    assert fetch("127.0.0.1", admitted) == b"hello\n"
    assert fetch("127.0.0.1", refused) == b""
    wait_log(log, "FAIL: bad libwrap from=127.0.0.1")
    assert resolver_helpers(daemon.pid) == []


def test_a_file_pattern_that_cannot_be_opened_is_logged_once_per_reason(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libwrap: `open PATH: REASON` for any reason but ENOENT (the file lists nothing).
    listed = tmp_path / "bad-hosts"
    listed.symlink_to(listed)     # a link to itself: ELOOP, whoever reads it
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text(f"in.listed: {listed}\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    log = tmp_path / "services.log"
    port = free_port()
    daemon = daemons.start_config(service("listed", "127.0.0.1", port, log, "in.listed"))
    assert fetch("127.0.0.1", port) == b"hello\n"
    assert fetch("127.0.0.1", port) == b"hello\n"
    wait_log_lines(log, "START: listed", count=2, timeout=TIMEOUT)
    looping = (f"WARNING: {tmp_path / 'hosts.deny'}, line 1: open {listed}: "
               "Too many levels of symbolic links")
    daemon.wait_for_log(re.escape(looping))
    # Another reason is logged again: a folder in the path is a file.
    listed.unlink()
    (tmp_path / "plain").write_text("")
    listed.symlink_to(tmp_path / "plain" / "hosts")
    assert fetch("127.0.0.1", port) == b"hello\n"
    daemon.wait_for_log(re.escape(f"open {listed}: Not a directory"))
    assert daemon.log().count(looping) == 1
