"""Service state machine, cps with an injected clock, the child table and reaping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from pyxinetd.children import Child, ChildTable, ExitStatus, reap
from pyxinetd.log import file_timestamp
from pyxinetd.servicelog import (
    exit_entry, fail_entry, start_entry, traffic_entry, whole_seconds,
)
from pyxinetd.service import (REASON_CPS, REASON_INSTANCES, REASON_PER_SOURCE,
                              REASON_PROCESS_LIMIT, Cps, Event, InvalidTransition, Limits,
                              ServiceRuntime, State, next_state)
from pyxinetd.timers import TimerQueue
from tests.factories import make_service


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_wait_cycle_and_cps_cycle() -> None:
    assert next_state(State.STARTING, Event.BOUND) is State.ACTIVE
    assert next_state(State.ACTIVE, Event.WAIT_SPAWNED) is State.SUSPENDED_WAIT
    assert next_state(State.SUSPENDED_WAIT, Event.WAIT_REAPED) is State.ACTIVE
    assert next_state(State.ACTIVE, Event.CPS_TRIPPED) is State.SUSPENDED_CPS
    assert next_state(State.SUSPENDED_CPS, Event.CPS_EXPIRED) is State.ACTIVE
    assert next_state(State.SUSPENDED_CPS, Event.REBIND_FAILED) is State.FAILED
    assert next_state(State.STARTING, Event.BIND_FAILED) is State.FAILED
    for state in State:
        assert next_state(state, Event.STOP) is State.STOPPED


@pytest.mark.parametrize("state,event", [
    (State.SUSPENDED_WAIT, Event.WAIT_SPAWNED),
    (State.ACTIVE, Event.WAIT_REAPED),
    (State.SUSPENDED_CPS, Event.WAIT_SPAWNED),
    (State.FAILED, Event.BOUND),
])
def test_invalid_transitions_raise(state: State, event: Event) -> None:
    with pytest.raises(InvalidTransition):
        next_state(state, event)


def test_cps_two_three_trips_on_the_third_request_in_a_second() -> None:
    clock = FakeClock()
    cps = Cps(2, clock)
    assert cps.admit() and cps.admit()
    assert not cps.admit()


def test_cps_window_restarts_after_rate_seconds() -> None:
    clock = FakeClock()
    cps = Cps(2, clock)
    assert cps.admit() and cps.admit()
    clock.now += 2          # window length (seconds) = rate
    assert cps.admit() and cps.admit()
    assert cps.count == 2


def test_cps_integer_rate_over_elapsed_seconds() -> None:
    clock = FakeClock()
    cps = Cps(3, clock)
    assert cps.admit() and cps.admit()
    clock.now += 2
    # Inside the 3-second window, 2 s elapsed: count // 2 must exceed 3 to trip.
    assert all(cps.admit() for _ in range(5))      # counts 3..7: 7 // 2 = 3
    assert not cps.admit()                         # 8 // 2 = 4 > 3


def test_cps_reactivation_timer_driven_by_the_injected_clock() -> None:
    clock = FakeClock()
    timers = TimerQueue(clock)
    fired: list[str] = []
    timers.call_later(10, lambda: fired.append("reactivate"))
    assert timers.next_deadline() == 1010.0
    clock.now += 9.9
    assert timers.run_due() == 0
    clock.now += 0.2
    assert timers.run_due() == 1 and fired == ["reactivate"]
    assert timers.next_deadline() is None


def _child(pid: int, service_id: str, peer: str) -> Child:
    return Child(pid, make_service(name=service_id), peer, 0.0, 0.0)


def test_child_table_counts_per_service_peer_and_total() -> None:
    table = ChildTable()
    table.add(_child(10, "a", "1.1.1.1"))
    table.add(_child(11, "a", "2.2.2.2"))
    table.add(_child(12, "b", "1.1.1.1"))
    occ = table.occupancy
    assert (occ.of_service("a"), occ.of_peer("a", "1.1.1.1"), occ.total) == (2, 1, 3)
    assert table.pop(10) is not None and table.pop(10) is None
    assert (occ.of_service("a"), occ.of_peer("a", "1.1.1.1"), occ.total) == (1, 0, 2)
    table.pop(11)
    table.pop(12)
    assert occ.total == 0 and occ.of_service("a") == 0 and len(table) == 0


def test_child_table_counts_ids_case_insensitively_and_rehomes() -> None:
    table = ChildTable()
    child = _child(10, "Foo", "1.1.1.1")
    table.add(child)
    renamed = make_service(name="foo")
    table.rehome({id(child.service): renamed})
    assert child.service is renamed
    assert (table.occupancy.of_service("foo"), table.occupancy.of_peer("FOO", "1.1.1.1")) \
        == (1, 1)
    assert table.pop(10) is child and table.occupancy.of_service("Foo") == 0


def test_released_child_counts_only_toward_the_total() -> None:
    table = ChildTable()
    child = _child(10, "a", "1.1.1.1")
    table.add(child)
    table.release(child)
    table.release(child)
    occ = table.occupancy
    assert (occ.of_service("a"), occ.of_peer("a", "1.1.1.1"), occ.total) == (0, 0, 1)
    table.add(_child(11, "a", "1.1.1.1"))
    assert table.pop(10) is child
    assert (occ.of_service("a"), occ.of_peer("a", "1.1.1.1"), occ.total) == (1, 1, 1)


def test_checks_in_xinetd_order() -> None:
    clock = FakeClock()
    table = ChildTable()
    rt = ServiceRuntime(make_service(name="s", instances=2, per_source=1, cps=(100, 1)),
                        clock)
    limits = Limits(process_limit=3)
    assert rt.check("1.1.1.1", table.occupancy, limits) is None
    table.add(_child(1, "s", "1.1.1.1"))
    assert rt.check("1.1.1.1", table.occupancy, limits) == REASON_PER_SOURCE
    table.add(_child(2, "s", "2.2.2.2"))
    assert rt.check("3.3.3.3", table.occupancy, limits) == REASON_INSTANCES
    other = ServiceRuntime(make_service(name="o"), clock)
    table.add(_child(3, "o", "4.4.4.4"))
    assert other.check("5.5.5.5", table.occupancy, limits) == REASON_PROCESS_LIMIT
    tight = ServiceRuntime(make_service(name="t", cps=(1, 1)), clock)
    tight.check("x", table.occupancy, Limits())
    # cps comes first: it trips even though the -limit would also refuse.
    assert tight.check("x", table.occupancy, limits) == REASON_CPS


REAP_SCRIPT = """
import json, os, signal, sys
from pyxinetd.children import reap

def zombie(pid):
    # Exited, not yet collected: the next waitpid(-1, WNOHANG) may take it.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)

exited = os.fork()
if exited == 0:
    os._exit(3)
killed = os.fork()
if killed == 0:
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(0)
hold_r, hold_w = os.pipe()
running = os.fork()
if running == 0:
    os.close(hold_w)
    os.read(hold_r, 1)      # until the parent closes its end
    os._exit(0)
os.close(hold_r)
zombie(exited)
zombie(killed)
first = sorted((pid, s.kind, s.value) for pid, s in reap())
os.close(hold_w)
zombie(running)
second = [(pid, s.kind, s.value) for pid, s in reap()]
third = list(reap())
print(json.dumps({"pids": [exited, killed, running], "first": first, "second": second,
                  "third": third}))
"""


def test_reap_loops_until_nothing_is_left() -> None:
    # Real children, in a process of their own (the test process may have other children
    # that are not the test's to collect).
    done = subprocess.run([sys.executable, "-c", REAP_SCRIPT], capture_output=True,
                          text=True, timeout=30, check=True)
    result = json.loads(done.stdout)
    exited, killed, running = result["pids"]
    # Both exited children in one pass; the one still running stops the loop without
    # blocking on it (WNOHANG: pid 0).
    assert result["first"] == sorted([[exited, "status", 3], [killed, "signal", 9]])
    assert result["second"] == [[running, "status", 0]]
    # No child left at all (ECHILD): the loop ends too.
    assert result["third"] == []


def test_exit_status_decoding_of_a_real_child() -> None:
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    decoded = ExitStatus.decode(status)
    assert decoded.as_pair() == ("signal", 9)
    assert str(decoded) == "terminated by SIGKILL"
    assert ExitStatus.decode(3 << 8).as_pair() == ("status", 3)


def test_durations_count_whole_wall_clock_seconds_as_xinetd() -> None:
    # xinetd subtracts time() at the start from time() at the end.
    assert whole_seconds(1000.8, 0.3) == 1      # crosses a second: 1(sec)
    assert whole_seconds(1000.1, 0.3) == 0
    assert whole_seconds(1000.5, 2.4) == 2
    assert whole_seconds(1000.9, 2.4) == 3


def test_service_entries_follow_the_flags() -> None:
    full = make_service(name="svc", log_on_success={"PID", "HOST", "EXIT", "DURATION"},
                        log_on_failure={"HOST"})
    assert start_entry(full, 42, "::1") == "START: svc pid=42 from=::1"
    assert exit_entry(full, 42, ("signal", 9), 3) == "EXIT: svc signal=9 pid=42 duration=3(sec)"
    assert fail_entry(full, "service_limit", "::1") == "FAIL: svc service_limit from=::1"
    bare = make_service(name="svc", log_on_success={"HOST"}, log_on_failure={"ATTEMPT"})
    assert start_entry(bare, 42, "a") == "START: svc from=a"
    assert exit_entry(bare, 42, ("status", 0), 1) is None
    assert fail_entry(bare, "time", "a") == "FAIL: svc time"
    none = make_service(name="svc")
    assert start_entry(none, 1, "a") is None and fail_entry(none, "time", "a") is None
    traffic = make_service(name="r", log_on_success={"TRAFFIC"})
    assert traffic_entry(traffic, 1, 2) == "TRAFFIC: r in=1(bytes) out=2(bytes)"


def test_file_timestamp_is_not_zero_padded_for_month_and_day() -> None:
    import time

    stamp = file_timestamp(time.mktime((2018, 9, 9, 8, 5, 3, 0, 0, -1)))
    assert stamp == "18/9/9@08:05:03"


def test_loop_warnings_at_most_once_a_minute_with_the_count_dropped_since() -> None:
    now = [1000.0]
    rt = ServiceRuntime(make_service(name="echo"), lambda: now[0])
    assert rt.loop_warning_due() == 0
    assert [rt.loop_warning_due() for _ in range(5)] == [None] * 5
    now[0] += 60
    assert rt.loop_warning_due() is None
    now[0] += 1
    assert rt.loop_warning_due() == 6
    assert rt.loop_warning_due() is None
