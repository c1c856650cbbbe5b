"""A name lookup the resolver helper never took (its queue full: it has read nothing
for a while) is no name the DNS lacks. The lookup is sent again as soon as the helper
reads, within the request's deadline; if it never was, a verdict that depended on the
name refuses the request (a denying rule by name skipped would admit the client the
admin denied), with a WARNING line naming the client, and a verdict that did not
depend on it is unaffected. Real loop, real helper process (stopped with SIGSTOP).
"""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxinetd.access.gate import Verdict
from pyxinetd.access.resolver import NOT_LOOKED_UP, NameInfo
from pyxinetd.config.model import AddressEntry
from tests.factories import make_service
from tests.integration.test_hostsaccess_gate import Gate
from tests.integration.test_resolver_send_failures import (
    MOST_QUEUED, killed_helper, running_helper, turns,
)

# The lookups' deadline here: the test waits for it to pass (bounded by `turns`).
LOOKUP_DEADLINE = 0.5


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path, aclexec_timeout=10.0)
    g.tables("", "")
    g.gate.resolver.timeout = LOOKUP_DEADLINE
    yield g
    if g.gate.resolver.pid is not None:
        os.kill(g.gate.resolver.pid, signal.SIGCONT)
    g.close()


def full_queue(gate: Gate) -> int:
    """The helper running, stopped, and its queue full; its pid."""
    pid = running_helper(gate)
    os.kill(pid, signal.SIGSTOP)
    names: list[NameInfo] = []
    for _ in range(MOST_QUEUED):
        gate.gate.resolver.lookup("127.0.0.9", names.append)
        if "queue is full" in gate.log.getvalue():
            return pid
    raise AssertionError("the helper's queue never filled")


def verdict_of(gate: Gate, peer: str = "127.0.0.1", **service: object) -> list[Verdict]:
    svc = make_service(name="svc", libwrap="in.test", **service)
    assert gate.gate.check(svc, peer) is None
    verdicts: list[Verdict] = []
    gate.gate.wait(svc, peer, verdicts.append)
    return verdicts


def decided(gate: Gate, peer: str = "127.0.0.1", **service: object) -> list[Verdict]:
    """`verdict_of`, once its verdict came (the loop turned until it did)."""
    verdicts = verdict_of(gate, peer, **service)
    turns(gate, lambda: bool(verdicts))
    return verdicts


NO_ACCESS_LOCALHOST = {"no_access": (AddressEntry("localhost", "host", name="localhost"),)}


def test_no_access_by_name_refuses_when_the_lookup_never_ran(gate: Gate) -> None:
    full_queue(gate)
    verdicts = decided(gate, **NO_ACCESS_LOCALHOST)
    assert [v.allowed for v in verdicts] == [False]
    assert verdicts[0].reason == "address"
    assert "the name of 127.0.0.1 was not looked up" in gate.log.getvalue()


def test_hosts_deny_by_name_refuses_when_the_lookup_never_ran(gate: Gate) -> None:
    gate.tables("", "ALL: localhost\n")
    full_queue(gate)
    verdicts = decided(gate)
    assert [v.allowed for v in verdicts] == [False]
    assert verdicts[0].reason == "libwrap"
    assert "the name of 127.0.0.1 was not looked up" in gate.log.getvalue()


def test_hosts_allow_unknown_does_not_admit_a_client_never_looked_up(gate: Gate) -> None:
    gate.tables("ALL: UNKNOWN\n", "ALL: ALL\n")
    full_queue(gate)
    verdicts = decided(gate)
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "libwrap")]
    assert "the name of 127.0.0.1 was not looked up" in gate.log.getvalue()


def test_a_hosts_verdict_reached_before_any_name_pattern_is_unaffected(gate: Gate) -> None:
    gate.tables("ALL: 127.0.0.1\n", "ALL: localhost\n")
    full_queue(gate)
    verdicts = decided(gate)
    assert [v.allowed for v in verdicts] == [True]
    assert "was not looked up" not in gate.log.getvalue()


def test_a_list_verdict_no_name_could_change_is_unaffected(gate: Gate) -> None:
    # The exact address in only_from outranks any domain in no_access: the verdict is
    # given at once, no lookup asked for (none could run, the queue being full).
    full_queue(gate)
    svc = make_service(
        name="svc", libwrap="in.test",
        only_from=(AddressEntry("127.0.0.1", "host", ipaddress.IPv4Network("127.0.0.1/32")),),
        no_access=(AddressEntry(".bad.example", "domain", name=".bad.example"),))
    verdict = gate.gate.check(svc, "127.0.0.1")
    assert verdict is not None and verdict.allowed
    assert "was not looked up" not in gate.log.getvalue()


def test_a_lookup_the_full_queue_held_back_is_sent_once_the_helper_reads(
        gate: Gate) -> None:
    gate.gate.resolver.timeout = 60.0
    pid = full_queue(gate)
    verdicts = verdict_of(gate, **NO_ACCESS_LOCALHOST)
    gate.loop.call_later(0.0, lambda: None)
    gate.loop.run_once()
    assert verdicts == []
    os.kill(pid, signal.SIGCONT)
    turns(gate, lambda: bool(verdicts))
    # Refused by the name itself (localhost), looked up once the helper read.
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "address")]
    assert "was not looked up" not in gate.log.getvalue()


def test_a_lookup_that_never_ran_is_not_looked_up_rather_than_unnamed(gate: Gate) -> None:
    full_queue(gate)
    names: list[NameInfo] = []
    gate.gate.resolver.lookup("127.0.0.1", names.append)
    turns(gate, lambda: bool(names))
    assert names == [NOT_LOOKED_UP]


def test_a_deny_rule_by_name_refuses_when_the_helper_is_found_gone(gate: Gate) -> None:
    # The lookup is not sent at all: the helper exited (killed here).
    gate.tables("", "ALL: localhost\n")
    killed_helper(gate)
    verdicts = decided(gate)
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "libwrap")]
    assert ("WARNING: the name of 127.0.0.1 was not looked up (the name "
            "resolver exited): svc from 127.0.0.1 refused") in gate.log.getvalue()


@pytest.mark.parametrize(("allow", "allowed"), [
    # Matched by its address whether or not the name would have matched.
    ("ALL: localhost 127.0.0.1\n", True),
    # The name decides whether the exception applies.
    ("ALL: 127.0.0.1 EXCEPT localhost\n", False),
])
def test_a_client_list_decides_without_the_name_when_no_name_would_change_it(
        gate: Gate, allow: str, allowed: bool) -> None:
    gate.tables(allow, "ALL: ALL\n")
    full_queue(gate)
    verdicts = decided(gate)
    assert [v.allowed for v in verdicts] == [allowed]
    assert ("was not looked up" in gate.log.getvalue()) is not allowed


def test_a_domain_in_no_access_refuses_though_a_host_under_it_is_in_only_from(
        gate: Gate) -> None:
    # The network admits 127.0.0.1 without a name and so does x.bad.example (the exact
    # host outranks the domain), but any other name under .bad.example is refused.
    full_queue(gate)
    verdicts = verdict_of(
        gate, only_from=(AddressEntry("127.0.0.0/8", "cidr",
                                      ipaddress.IPv4Network("127.0.0.0/8")),
                         AddressEntry("x.bad.example", "host", name="x.bad.example")),
        no_access=(AddressEntry(".bad.example", "domain", name=".bad.example"),))
    turns(gate, lambda: bool(verdicts))
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "address")]
    assert "the name of 127.0.0.1 was not looked up" in gate.log.getvalue()


def test_hosts_deny_by_a_file_of_names_refuses_when_the_lookup_never_ran(
        gate: Gate, tmp_path: Path) -> None:
    listed = tmp_path / "bad-hosts"
    listed.write_text("localhost\n")
    gate.tables("", f"ALL: {listed}\n")
    full_queue(gate)
    verdicts = decided(gate)
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "libwrap")]
    assert "the name of 127.0.0.1 was not looked up" in gate.log.getvalue()


def test_a_file_that_lists_the_address_after_a_name_matches_without_the_name(
        gate: Gate, tmp_path: Path) -> None:
    listed = tmp_path / "good-hosts"
    listed.write_text("localhost 127.0.0.1\n")
    gate.tables(f"ALL: {listed}\n", "ALL: ALL\n")
    full_queue(gate)
    verdicts = decided(gate)
    assert [v.allowed for v in verdicts] == [True]
    assert "was not looked up" not in gate.log.getvalue()


def test_an_aclexec_check_the_full_queue_held_back_runs_once_the_helper_reads(
        gate: Gate, tmp_path: Path) -> None:
    gate.gate.resolver.timeout = 60.0
    ran = tmp_path / "ran"
    gate.tables(f"in.test: ALL: aclexec touch {ran}\n", "ALL: ALL\n")
    pid = full_queue(gate)
    verdicts = verdict_of(gate)
    gate.loop.call_later(0.0, lambda: None)
    gate.loop.run_once()
    assert verdicts == []
    os.kill(pid, signal.SIGCONT)
    turns(gate, lambda: bool(verdicts))
    # Admitted by the check's own status: it ran.
    assert [(v.allowed, v.reason) for v in verdicts] == [(True, None)]
    assert ran.exists()
    assert "aclexec not run" not in gate.log.getvalue()
    assert "name resolver: its queue is full (the name of 127.0.0.9 waits for it)" \
        in gate.log.getvalue()


def test_an_aclexec_check_never_sent_by_its_deadline_refuses(
        gate: Gate, tmp_path: Path) -> None:
    gate.gate.aclexec_timeout = LOOKUP_DEADLINE
    ran = tmp_path / "ran"
    gate.tables(f"in.test: ALL: aclexec touch {ran}\n", "ALL: ALL\n")
    full_queue(gate)
    verdicts = decided(gate)
    # Never run, which is no failed check: its rule refuses.
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "libwrap")]
    assert ("WARNING: aclexec not run (the name resolver's queue stayed full) "
            "(hosts.allow line 1) for svc from 127.0.0.1: refused") in gate.log.getvalue()
    assert not ran.exists()


@pytest.mark.parametrize("rule", [
    # Run with `unknown` for %n, the check would fail and the rule not apply: admitted.
    "ALL: ALL: aclexec grep -qx %n {listed}",
    # libwrap looked the name up for `localhost`, so %h (%c) is the name there; run
    # with the address, the check would fail and the denying rule not apply: admitted.
    "ALL: localhost 127.0.0.1: aclexec grep -qx %h {listed}",
    "ALL: localhost 127.0.0.1: aclexec grep -qx %c {listed}",
])
def test_a_deny_rule_whose_aclexec_reads_the_name_refuses_when_it_never_ran(
        gate: Gate, tmp_path: Path, rule: str) -> None:
    listed = tmp_path / "bad-hosts"
    listed.write_text("localhost\n")
    gate.tables("", rule.format(listed=listed) + "\n")
    killed_helper(gate)
    verdicts = decided(gate)
    assert [(v.allowed, v.reason) for v in verdicts] == [(False, "libwrap")]
    assert ("WARNING: the name of 127.0.0.1 was not looked up (the name resolver "
            "exited): svc from 127.0.0.1 refused") in gate.log.getvalue()
    assert "aclexec returned" not in gate.log.getvalue()


def test_an_aclexec_showing_a_name_no_pattern_asked_for_runs_with_the_address(
        gate: Gate, tmp_path: Path) -> None:
    # 127.0.0.1 matched first: libwrap never looked the name up, and %h is the address.
    listed = tmp_path / "bad-hosts"
    listed.write_text("127.0.0.1\n")
    gate.tables("", f"ALL: 127.0.0.1 localhost: aclexec grep -qx %h {listed}\n")
    killed_helper(gate)
    verdicts = decided(gate)
    assert [v.allowed for v in verdicts] == [False]
    assert "was not looked up" not in gate.log.getvalue()


def test_a_file_of_addresses_decides_at_once_while_no_lookup_could_run(
        gate: Gate, tmp_path: Path) -> None:
    # No word of the files needs a name: no lookup is asked, so none waits for the
    # stopped helper (nor is refused for want of it).
    good, bad = tmp_path / "good-hosts", tmp_path / "bad-hosts"
    good.write_text("10.9.9.9 127.0.0.1\n")
    bad.write_text("127.0.0.2\n")
    gate.tables(f"ALL: {good}\n", f"ALL: {bad}\n")
    full_queue(gate)
    svc = make_service(name="svc", libwrap="in.test")
    assert gate.gate.check(svc, "127.0.0.1") == Verdict(True)
    refused = gate.gate.check(svc, "127.0.0.2")
    assert refused is not None and (refused.allowed, refused.reason) == (False, "libwrap")
    assert "was not looked up" not in gate.log.getvalue()
