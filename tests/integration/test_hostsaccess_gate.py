"""The access gate with a real loop, the real resolver helper and real sockets on
loopback: the server endpoint of an accepted connection, aclexec (status, fallback,
deadline), severity and banners of a refusing rule.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxinetd.access.gate import AccessGate, Datagram, Verdict
from pyxinetd.access.hostsaccess import HostsTables
from pyxinetd.access.hostspatterns import Lookups
from pyxinetd.access.resolver import resolve
from pyxinetd.config.addresses import parse_address
from pyxinetd.config.model import AddressEntry
from pyxinetd.filerights import Rights
from pyxinetd.log import ProgramLog
from pyxinetd.loop import Loop
from tests.daemon import alive, wait_until
from tests.factories import make_service

TIMEOUT = 15.0


class Gate:
    def __init__(self, tmp_path: Path, aclexec_timeout: float) -> None:
        self.allow = tmp_path / "hosts.allow"
        self.deny = tmp_path / "hosts.deny"
        self.loop = Loop()
        self.log = io.StringIO()
        program = ProgramLog(stream=self.log)
        tables = HostsTables(str(self.allow), str(self.deny), recheck=0.0,
                             clock=self.loop.clock)
        self.gate = AccessGate(self.loop, program, tables=tables,
                               aclexec_timeout=aclexec_timeout)

    def tables(self, allow: str, deny: str) -> None:
        self.allow.write_text(allow)
        self.deny.write_text(deny)

    def verdict(self, peer: str = "127.0.0.1", conn: socket.socket | None = None,
                datagram: Datagram | None = None, **service: object
                ) -> tuple[Verdict, bool]:
        """The verdict, and whether it had to wait (bounded by TIMEOUT)."""
        svc = make_service(**{"name": "svc", "libwrap": "in.test", **service})
        now = self.gate.check(svc, peer, conn, datagram)
        if now is not None:
            return now, False
        box: list[Verdict] = []
        self.gate.wait(svc, peer, box.append, conn, datagram)
        deadline = time.monotonic() + TIMEOUT
        while not box:
            assert time.monotonic() < deadline, "no verdict in time"
            self.loop.run_once()
        return box[0], True

    def close(self) -> None:
        # close() stops the helper and forgets its pid: reaping it is its parent's job
        # (the daemon's waitpid loop; this test's here).
        pid = self.gate.resolver.pid
        self.gate.close()
        deadline = time.monotonic() + TIMEOUT
        while pid is not None and time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
            time.sleep(0.02)
        self.loop.close()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path, aclexec_timeout=10.0)
    yield g
    g.close()


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """An accepted connection to 127.0.0.2 (listener, client, accepted)."""
    listener = socket.create_server(("127.0.0.2", 0))
    client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
    accepted, _ = listener.accept()
    yield listener, client, accepted
    for s in (accepted, client, listener):
        s.close()


# -- aclexec ---------------------------------------------------------------------

def test_aclexec_true_keeps_the_rule(gate: Gate) -> None:
    gate.tables("in.test: ALL: aclexec /bin/true\n", "ALL: ALL\n")
    verdict, waited = gate.verdict()
    assert waited and verdict.allowed


def test_aclexec_false_falls_through_to_hosts_deny(gate: Gate) -> None:
    gate.tables("in.test: ALL: aclexec /bin/false\n", "ALL: ALL\n")
    verdict, waited = gate.verdict()
    assert waited and not verdict.allowed and verdict.reason == "libwrap"
    assert "aclexec returned 1 (hosts.allow line 1) for svc from 127.0.0.1: " \
           "the rule does not apply" in gate.log.getvalue()


def test_aclexec_failing_in_hosts_deny_grants(gate: Gate) -> None:
    gate.tables("", "in.test: ALL: aclexec exit 3\n")
    assert gate.verdict()[0].allowed
    gate.tables("", "in.test: ALL: aclexec exit 0\n")
    assert not gate.verdict()[0].allowed


def test_aclexec_runs_in_the_daemons_environment_without_a_coerced_locale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A daemon started without LANG or LC_*: the helper's interpreter puts
    # LC_CTYPE=C.UTF-8 in its own environment at its start (PEP 538), which the
    # commands it runs inherited; the daemon's environment has no such variable.
    for name in ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MARK", "daemon")
    g = Gate(tmp_path, aclexec_timeout=10.0)
    try:
        out = tmp_path / "env.out"
        g.tables(f"in.test: ALL: aclexec env > {out}\n", "ALL: ALL\n")
        assert g.verdict()[0].allowed
        names = {line.partition("=")[0] for line in out.read_text().splitlines()}
    finally:
        g.close()
    assert "MARK" in names and "LC_CTYPE" not in names


def test_aclexec_expansions_and_other_daemons(gate: Gate, tmp_path: Path) -> None:
    out = tmp_path / "acl.out"
    gate.tables(f"in.test: ALL: aclexec echo %d %a > {out}\n", "ALL: ALL\n")
    assert gate.verdict()[0].allowed
    assert out.read_text() == "in.test 127.0.0.1\n"
    # A request no aclexec rule matches is decided at once.
    svc = make_service(name="other", libwrap="in.other")
    assert gate.gate.check(svc, "127.0.0.1") is not None


def test_aclexec_deadline_kills_the_check(tmp_path: Path) -> None:
    g = Gate(tmp_path, aclexec_timeout=0.5)
    try:
        pidfile = tmp_path / "check.pid"
        g.tables(f"in.test: ALL: aclexec echo $$ > {pidfile}; exec sleep 60\n",
                 "ALL: ALL\n")
        verdict, waited = g.verdict()
        assert waited and not verdict.allowed
        assert "aclexec did not finish within 0.5 s (killed)" in g.log.getvalue()
        # The master's own deadline may pass before the helper has even started the
        # command (a slow machine): the helper still runs it and kills it at its deadline.
        wait_until(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"), TIMEOUT,
                   what="the check to start")
        pid = int(pidfile.read_text())
        wait_until(lambda: not alive(pid), TIMEOUT, what="the timed-out check to die")
    finally:
        g.close()


# -- the server endpoint -------------------------------------------------------------

def test_daemon_at_host_reads_the_local_address(
        gate: Gate, connection: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    _, _, accepted = connection
    gate.tables("in.test@127.0.0.2: ALL\n", "ALL: ALL\n")
    assert gate.verdict(conn=accepted)[0].allowed
    gate.tables("in.test@127.0.0.1: ALL\n", "ALL: ALL\n")
    assert not gate.verdict(conn=accepted)[0].allowed
    gate.tables("in.test@127.0.0.0/255.255.255.0: ALL\n", "ALL: ALL\n")
    assert gate.verdict(conn=accepted)[0].allowed


def test_without_a_connection_the_bound_address_counts(gate: Gate) -> None:
    gate.tables("in.test@127.0.0.3: ALL\n", "ALL: ALL\n")
    assert gate.verdict(bind="127.0.0.3")[0].allowed
    assert not gate.verdict(bind="127.0.0.1")[0].allowed
    gate.tables("in.test@0.0.0.0: ALL\n", "ALL: ALL\n")
    assert gate.verdict(bind=None)[0].allowed


def test_endpoint_expansions(gate: Gate, tmp_path: Path,
                             connection: tuple[socket.socket, socket.socket, socket.socket]
                             ) -> None:
    listener, client, accepted = connection
    out = tmp_path / "spawn.out"
    gate.tables(f"in.test: ALL: spawn echo %A %R %a %r %H %s > {out}\n", "")
    verdict, _ = gate.verdict(conn=accepted)
    assert verdict.allowed
    port, client_port = listener.getsockname()[1], client.getsockname()[1]
    wait_until(out.exists, TIMEOUT, what="the spawn command's output")
    wait_until(lambda: out.read_text().endswith("\n"), TIMEOUT, what="a whole line")
    assert out.read_text() == \
        f"127.0.0.2 {port} 127.0.0.1 {client_port} 127.0.0.2 in.test@127.0.0.2\n"


@pytest.mark.skipif(resolve("127.0.0.1").name != "localhost",
                    reason="127.0.0.1 does not resolve to localhost")
def test_server_name_is_looked_up_for_percent_n(gate: Gate, tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname(), timeout=TIMEOUT):
        accepted, _ = listener.accept()
        with accepted:
            out = tmp_path / "names.out"
            gate.tables(f"in.test@localhost: ALL: spawn echo %N %H %s > {out}\n",
                        "ALL: ALL\n")
            verdict, waited = gate.verdict(conn=accepted)
            assert waited and verdict.allowed
            wait_until(lambda: out.exists() and out.read_text().endswith("\n"), TIMEOUT,
                       what="the spawn command's output")
            assert out.read_text() == "localhost localhost in.test@localhost\n"


@pytest.mark.skipif(resolve("127.0.0.1").name != "localhost",
                    reason="127.0.0.1 does not resolve to localhost")
def test_a_file_pattern_listing_the_client_name_refuses_it(gate: Gate,
                                                           tmp_path: Path) -> None:
    listed = tmp_path / "bad-hosts"
    listed.write_text("localhost\n")
    gate.tables("", f"ALL: {listed}\n")
    verdict, waited = gate.verdict()
    assert waited and not verdict.allowed


def test_a_file_of_another_daemons_rule_is_not_read_for_a_request(gate: Gate,
                                                                   tmp_path: Path) -> None:
    # libwrap reads a rule's /file lists only once its daemon matched: a request for a
    # service the rule does not name reads none of them (none per connection).
    names, addresses = tmp_path / "names", tmp_path / "addresses"
    names.write_text("bad.example\n")
    addresses.write_text("127.0.0.9\n")
    reads: list[str] = []

    def read(path: str) -> str | None:
        reads.append(path)
        return Path(path).read_text()

    gate.gate.lookups = Lookups(read_file=read)
    gate.tables(f"in.test: {addresses}\n", f"sshd: {names}\nin.test EXCEPT in.x: ALL\n")
    verdict, waited = gate.verdict()
    assert not waited and not verdict.allowed
    assert reads == [str(addresses)]
    reads.clear()
    assert gate.verdict(libwrap="in.other")[0].allowed
    assert reads == []


def test_a_name_another_daemons_rule_needs_is_not_looked_up_for_a_request(
        gate: Gate) -> None:
    # libwrap looks the client's name up only when a rule whose daemon list matched
    # reads it: `sshd: .example.com` makes no request for another service wait for a
    # reverse lookup, while a request for sshd does.
    gate.tables("sshd: .example.com\nALL: ALL\n", "")
    verdict, waited = gate.verdict()
    assert verdict.allowed and not waited
    verdict, waited = gate.verdict(libwrap="sshd")
    assert verdict.allowed and waited


# -- severity and banners of a refusing rule -----------------------------------------

def test_severity_sets_the_refusal_level(gate: Gate) -> None:
    gate.tables("", "in.test: ALL: severity auth.warning\n")
    assert not gate.verdict()[0].allowed
    assert "WARNING: libwrap refused connection to svc (libwrap=in.test) from 127.0.0.1" \
        in gate.log.getvalue()


def test_banner_of_a_refusing_rule_is_sent(
        gate: Gate, tmp_path: Path,
        connection: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    _, client, accepted = connection
    banners = tmp_path / "banners"
    banners.mkdir()
    (banners / "in.test").write_text("no entry to %A for %a\n")
    gate.tables("", f"in.test: ALL: banners {banners}\n")
    verdict, _ = gate.verdict(conn=accepted)
    assert not verdict.allowed
    accepted.close()
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    assert data == b"no entry to 127.0.0.2 for 127.0.0.1\r\n"


def test_datagram_endpoint_expansions(gate: Gate, tmp_path: Path) -> None:
    """A datagram: the sender's port, and the service socket's address and port (here
    the kernel's choice, as for an RPC service, not the configured port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as service, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        service.bind(("127.0.0.2", 0))
        client.bind(("127.0.0.1", 0))
        client.sendto(b"x", service.getsockname())
        _, sender = service.recvfrom(16)
        out = tmp_path / "spawn.out"
        gate.tables(f"in.test: ALL: spawn echo %A %R %a %r %s > {out}\n", "")
        verdict, _ = gate.verdict(datagram=Datagram(service, sender), socket_type="dgram",
                                  protocol="udp", port=None, bind="127.0.0.2")
        assert verdict.allowed
        wait_until(lambda: out.exists() and out.read_text().endswith("\n"), TIMEOUT,
                   what="the spawn command's output")
        assert out.read_text().split() == [
            "127.0.0.2", str(service.getsockname()[1]), "127.0.0.1",
            str(client.getsockname()[1]), "in.test@127.0.0.2"]


def test_tables_that_are_no_regular_files_count_as_missing(gate: Gate) -> None:
    # A FIFO would make open() wait for a writer for ever: read as an absent table.
    os.mkfifo(gate.allow)
    gate.deny.write_text("in.test: 127.0.0.2\n")
    assert gate.verdict("127.0.0.1")[0].allowed
    assert not gate.verdict("127.0.0.2")[0].allowed


# -- the tables a request is judged by -----------------------------------------------

@pytest.mark.skipif(resolve("127.0.0.1").name != "localhost",
                    reason="127.0.0.1 does not resolve to localhost")
def test_a_request_is_judged_by_the_tables_it_looked_names_up_for(
        gate: Gate, tmp_path: Path) -> None:
    # The names a request waits for are the ones its tables need: tables rewritten
    # during the wait must not judge it, or a rule by a name never looked up (here the
    # server's, through the same /file) is skipped. Both versions deny this client.
    listed = tmp_path / "names"
    listed.write_text("localhost\n")
    gate.tables("", f"ALL: {listed}\n")
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname(), timeout=TIMEOUT):
        accepted, _ = listener.accept()
        with accepted:
            svc = make_service(name="svc", libwrap="in.test")
            assert gate.gate.check(svc, "127.0.0.1", accepted) is None
            box: list[Verdict] = []
            gate.gate.wait(svc, "127.0.0.1", box.append, accepted)
            gate.tables("", f"ALL@{listed}: ALL\n")     # the client's name is on its way
            deadline = time.monotonic() + TIMEOUT
            while not box:
                assert time.monotonic() < deadline, "no verdict in time"
                gate.loop.run_once()
            assert not box[0].allowed



class CountedBanners(Lookups):
    """Counts the reads of banner files."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def banner_text(self, path: str, rights: Rights | None = None) -> bytes | None:
        self.reads += 1
        return super().banner_text(path, rights)


@pytest.mark.parametrize(("banner", "options", "reads"), [
    ("hello\n", "banners {dir}: spawn echo %h > {out}", 1),
    # Parked (for the name, for the aclexec check): read once by `check`, once by `wait`.
    ("name %n\n", "banners {dir}: spawn echo %h > {out}", 2),
    ("hello\n", "banners {dir}: aclexec /bin/true: spawn echo %h > {out}", 2),
])
def test_a_request_reads_its_banner_file_once_for_its_names_and_its_verdict(
        gate: Gate, tmp_path: Path, banner: str, options: str, reads: int,
        connection: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    # The names a banner's %n/%N is waited for, and the rule's options, see one version
    # of the file: a file rewritten between reads (it was read up to five times per
    # request) could leave `%n` expanded with no name looked up, or `%h` after it
    # showing the address, as libwrap never does.
    _, _, accepted = connection
    out, folder = tmp_path / "spawn.out", tmp_path / "banners"
    folder.mkdir()
    (folder / "in.test").write_text(banner)
    counted = CountedBanners()
    gate.gate.lookups = counted
    gate.tables("in.test: ALL: " + options.format(dir=folder, out=out) + "\n", "")
    assert gate.verdict(conn=accepted)[0].allowed
    assert counted.reads == reads
    wait_until(lambda: out.exists() and out.read_text().endswith("\n"), TIMEOUT,
               what="the spawn command's output")


def test_a_banner_is_sent_as_read_when_its_names_were_decided(
        gate: Gate, tmp_path: Path,
        connection: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    # The rule a failed aclexec hands over to (the hosts.deny one) sends its banner
    # once the check is done.
    # The file, rewritten by the check to ask for the client's name, which no lookup
    # was planned for, must go out as it was read (not with `%n` as `unknown`).
    _, client, accepted = connection
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.test").write_text("hello\n")
    rewrite = tmp_path / "rewrite"
    rewrite.write_text("name %n\n")
    gate.tables(f"in.test: ALL: aclexec cp {rewrite} {folder}/in.test; exit 1\n",
                f"in.test: ALL: banners {folder}\n")
    verdict, waited = gate.verdict(conn=accepted)
    assert not verdict.allowed and waited
    assert (folder / "in.test").read_text() == "name %n\n"   # the check ran
    accepted.close()
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    assert data == b"hello\r\n"


# -- the address lists' names ---------------------------------------------------------

def _entries(*tokens: str) -> tuple[AddressEntry, ...]:
    return tuple(e for t in tokens for e in parse_address(t, lambda name: None).entries)


def test_a_client_a_numeric_entry_decides_does_not_wait_for_its_name(gate: Gate) -> None:
    # xinetd looks a name up only when its scan reaches a name entry: with the DNS
    # down, 127.0.0.1 was held the whole lookup deadline (5 s) by a name in the list
    # that could not change its verdict.
    gate.tables("", "")
    verdict, waited = gate.verdict(only_from=_entries("127.0.0.1", "somehost.example"))
    assert verdict.allowed and not waited
    verdict, waited = gate.verdict(no_access=_entries("127.0.0.1", "bad.example"))
    assert not verdict.allowed and not waited
    # A client only a name can decide still waits for it.
    verdict, waited = gate.verdict(peer="127.0.0.3",
                                   only_from=_entries("127.0.0.1", "somehost.example"))
    assert not verdict.allowed and waited
