"""The name resolver's master side when a request cannot be sent to a running helper,
with a real loop and the real helper process: the helper stopped (SIGSTOP) until its
socket's buffer is full, or killed before the master read its end of file.

A lookup or an aclexec check met with a full queue waits for the helper to read
(tests/integration/test_lookup_not_run.py), in the order they were asked, after a
restart of the helper too; a check never sent by its deadline says why it was not run
("the name resolver's queue stayed full", not that the resolver is not running), at
that deadline. A helper found gone while a request is sent answers what it
was asked at the end of the loop's turn, never before `lookup` or `run_check` returns:
the access gate, asking for one name, counted the answer in before it looked at what
was missing, and gave its verdict twice.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyxinetd.access.resolver import (
    CHECK_GRACE, HELPER_LOST, QUEUE_STAYED_FULL, NameInfo, NotRun, never_ran,
)
from pyxinetd.config.model import AddressEntry
from tests.factories import make_service
from tests.integration.test_hostsaccess_gate import Gate

# Bound of the requests sent to a stopped helper before its queue is full.
MOST_QUEUED = 100_000
# Requests resent to a new helper: more than it takes before it starts reading.
RESENT = 30_000


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path, aclexec_timeout=10.0)
    g.tables("", "")
    yield g
    if g.gate.resolver.pid is not None:
        os.kill(g.gate.resolver.pid, signal.SIGCONT)
    g.close()


def turns(gate: Gate, done: Callable[[], bool]) -> None:
    """Run the loop until `done()`, then one more turn (what it queued runs)."""
    for _ in range(1000):
        if done():
            break
        gate.loop.run_once()
    assert done(), "not answered"
    gate.loop.call_later(0.0, lambda: None)   # that turn does not sleep
    gate.loop.run_once()


def running_helper(gate: Gate) -> int:
    """Start the helper (one lookup answered); its pid."""
    names: list[NameInfo] = []
    gate.gate.resolver.lookup("127.0.0.1", names.append)
    turns(gate, lambda: bool(names))
    pid = gate.gate.resolver.pid
    assert pid is not None
    return pid


def killed_helper(gate: Gate) -> None:
    """The helper killed and reaped, its end of file not read by the master yet."""
    pid = running_helper(gate)
    os.kill(pid, signal.SIGKILL)
    assert os.waitpid(pid, 0)[0] == pid


def test_a_check_met_with_a_full_queue_waits_for_it(
        gate: Gate) -> None:
    resolver = gate.gate.resolver
    pid = running_helper(gate)
    os.kill(pid, signal.SIGSTOP)
    names: list[NameInfo] = []
    for _ in range(MOST_QUEUED):
        resolver.lookup("127.0.0.1", names.append)
        if "name resolver:" in gate.log.getvalue():
            break   # the first request the helper did not take
    assert "name resolver: its queue is full (the name of 127.0.0.1 waits for it)" \
        in gate.log.getvalue()
    statuses: list[int | None | NotRun] = []
    resolver.run_check(("true",), 10.0, statuses.append)
    gate.loop.call_later(0.0, lambda: None)
    gate.loop.run_once()
    # Nothing given up: the check and the lookups wait, the helper still runs.
    assert statuses == [] and names == []
    assert resolver.pid == pid
    assert "aclexec" not in gate.log.getvalue()
    os.kill(pid, signal.SIGCONT)
    turns(gate, lambda: bool(statuses))
    assert statuses == [0]
    assert "exited" not in gate.log.getvalue()


def test_a_check_never_sent_by_its_deadline_is_not_run(gate: Gate) -> None:
    resolver = gate.gate.resolver
    pid = running_helper(gate)
    os.kill(pid, signal.SIGSTOP)
    names: list[NameInfo] = []
    for _ in range(MOST_QUEUED):
        resolver.lookup("127.0.0.1", names.append)
        if "name resolver:" in gate.log.getvalue():
            break
    statuses: list[int | None | NotRun] = []
    resolver.run_check(("true",), 0.0, statuses.append)
    turns(gate, lambda: bool(statuses))
    assert statuses == [QUEUE_STAYED_FULL]
    assert resolver.pid == pid


def test_a_lookup_that_finds_the_helper_gone_is_answered_after_it_returns(
        gate: Gate) -> None:
    killed_helper(gate)
    names: list[NameInfo] = []
    gate.gate.resolver.lookup("127.0.0.1", names.append)
    assert names == []
    turns(gate, lambda: bool(names))
    # Never looked up: not a name the DNS lacks.
    assert names == [never_ran(HELPER_LOST)]


def test_a_check_that_finds_the_helper_gone_is_answered_after_it_returns(
        gate: Gate) -> None:
    killed_helper(gate)
    statuses: list[int | None | NotRun] = []
    gate.gate.resolver.run_check(("true",), 10.0, statuses.append)
    assert statuses == []
    turns(gate, lambda: bool(statuses))
    assert statuses == [HELPER_LOST]


def test_a_verdict_waiting_for_a_name_from_a_helper_found_gone_is_given_once(
        gate: Gate) -> None:
    killed_helper(gate)
    svc = make_service(name="svc", only_from=(AddressEntry("localhost", "host",
                                                           name="localhost"),))
    assert gate.gate.check(svc, "127.0.0.1") is None
    verdicts: list[object] = []
    gate.gate.wait(svc, "127.0.0.1", verdicts.append)
    assert verdicts == []
    turns(gate, lambda: bool(verdicts))
    assert len(verdicts) == 1, verdicts
    # And the next request starts a new helper, which names the client.
    assert running_helper(gate) > 0


def test_a_check_the_master_gave_up_on_is_not_run_by_a_helper_late_to_read_it(
        gate: Gate, tmp_path: Path) -> None:
    # The helper reads the check after the master's deadline for it (here it is
    # stopped; on a loaded host it starts slowly): the master logged the check as
    # killed and applied the next rule. Its deadline counts from when the master
    # sent it, so the helper does not run the command then.
    resolver = gate.gate.resolver
    pid = running_helper(gate)
    os.kill(pid, signal.SIGSTOP)
    ran = tmp_path / "ran"
    statuses: list[int | None | NotRun] = []
    resolver.run_check((f"touch {ran}",), 0.0, statuses.append)
    turns(gate, lambda: bool(statuses))
    assert statuses == [None]
    os.kill(pid, signal.SIGCONT)
    # A check sent after it is answered once the helper has read both.
    after: list[int | None | NotRun] = []
    resolver.run_check(("true",), 10.0, after.append)
    turns(gate, lambda: bool(after))
    assert after == [0]
    assert not ran.exists()


def test_a_check_never_sent_is_refused_at_its_own_deadline_once(gate: Gate) -> None:
    # A check waiting for room in the stopped helper's queue: its time is up at its
    # deadline, not CHECK_GRACE later (the grace is for a helper that has it, its
    # commands killed at the deadline). A timer due halfway through that grace finds
    # it refused already; it is refused once, even after the grace.
    resolver = gate.gate.resolver
    pid = running_helper(gate)
    os.kill(pid, signal.SIGSTOP)
    names: list[NameInfo] = []
    for _ in range(MOST_QUEUED):
        resolver.lookup("127.0.0.1", names.append)
        if "name resolver:" in gate.log.getvalue():
            break
    statuses: list[int | None | NotRun] = []
    resolver.run_check(("true",), 0.2, statuses.append)
    seen: list[list[int | None | NotRun]] = []
    gate.loop.call_later(0.2 + CHECK_GRACE / 2, lambda: seen.append(list(statuses)))
    gate.loop.call_later(0.2 + CHECK_GRACE * 2, lambda: seen.append(list(statuses)))
    turns(gate, lambda: len(seen) == 2)
    assert seen == [[QUEUE_STAYED_FULL], [QUEUE_STAYED_FULL]]
    assert resolver.pid == pid


def test_requests_resent_to_a_restarted_helper_keep_the_order_asked(gate: Gate) -> None:
    # Requests that waited for the helper's next start (as after a start that found
    # no process) are sent in turn once it starts; the new helper, still starting,
    # takes only so many, then reads while the rest are sent. One its full queue did
    # not take waits for room: every one asked after it must go behind it, not to the
    # helper as room appears (a later lookup overtaking an earlier check or lookup).
    resolver = gate.gate.resolver
    resolver._restart = gate.loop.call_later(3600.0, resolver._start_again)
    asked: list[int] = []
    for index in range(RESENT):
        if index % 100 == 50:
            resolver.run_check(("true",), 3600.0, lambda status: None)
        else:
            resolver.lookup("127.0.0.1", lambda info: None)
        asked.append(len(asked) + 1)
    assert resolver.pid is None
    resolver._restart.cancel()
    resolver._start_again()
    backlog = list(resolver._backlog)
    assert backlog, "the new helper took every request before its queue was full"
    assert backlog == asked[asked.index(backlog[0]):]
