"""A cancelled timer keeps neither its callback nor, for long, its slot in the heap.

Per-connection timers (tcpmux's name, ident) are long and almost always cancelled early;
behind a live timer due later still, their slots used to stay until their own deadlines,
each holding its callback and whatever the callback held (a session)."""

from __future__ import annotations

import gc
import weakref

from pyxinetd.timers import COMPACT_MIN_CANCELLED, TimerQueue


class Session:
    def close(self) -> None:
        pass


def test_a_cancelled_timer_lets_go_of_its_callback_at_once() -> None:
    now = [0.0]
    timers = TimerQueue(lambda: now[0])
    timers.call_later(1000.0, lambda: None)         # live, due later: nothing pops
    session = Session()
    gone = weakref.ref(session)
    timer = timers.call_later(60.0, session.close)
    del session
    timer.cancel()
    gc.collect()
    assert gone() is None


def test_cancelled_slots_behind_a_later_live_timer_are_dropped_in_bulk() -> None:
    now = [0.0]
    timers = TimerQueue(lambda: now[0])
    fired: list[str] = []
    timers.call_later(1000.0, lambda: fired.append("scrub"))
    for _ in range(10 * COMPACT_MIN_CANCELLED):
        timers.call_later(2000.0, lambda: fired.append("late")).cancel()
    assert len(timers._heap) <= 2 * COMPACT_MIN_CANCELLED + 1
    assert len(timers) == 1
    assert timers.next_deadline() == 1000.0


def test_timers_still_fire_in_order_after_the_heap_is_rebuilt() -> None:
    now = [0.0]
    timers = TimerQueue(lambda: now[0])
    fired: list[int] = []
    kept = [timers.call_later(float(d), lambda d=d: fired.append(d)) for d in (30, 10, 20)]
    doomed = [timers.call_later(5.0 + i / 1000, lambda: fired.append(-1))
              for i in range(3 * COMPACT_MIN_CANCELLED)]
    for timer in doomed:
        timer.cancel()
    assert all(not t.cancelled for t in kept)
    now[0] = 100.0
    assert timers.run_due() == 3
    assert fired == [10, 20, 30]
    assert timers.next_deadline() is None


def test_a_callback_may_cancel_many_timers_while_the_queue_runs() -> None:
    now = [0.0]
    timers = TimerQueue(lambda: now[0])
    fired: list[str] = []
    others = [timers.call_later(50.0, lambda: fired.append("cancelled"))
              for _ in range(3 * COMPACT_MIN_CANCELLED)]

    def cancel_them() -> None:
        fired.append("first")
        for timer in others:
            timer.cancel()

    timers.call_later(1.0, cancel_them)
    timers.call_later(2.0, lambda: fired.append("second"))
    now[0] = 100.0
    assert timers.run_due() == 2
    assert fired == ["first", "second"]
    assert timers._heap == []


def test_cancelling_a_timer_that_already_ran_changes_nothing() -> None:
    now = [0.0]
    timers = TimerQueue(lambda: now[0])
    fired: list[str] = []
    timer = timers.call_later(1.0, lambda: fired.append("ran"))
    now[0] = 2.0
    assert timers.run_due() == 1
    timer.cancel()
    assert timers._cancelled == 0
    assert fired == ["ran"]


def test_seconds_setting_takes_a_positive_number_capped_and_defaults_otherwise() -> None:
    from pyxinetd.timers import seconds_setting
    assert seconds_setting(5.0, "X", 60.0, {}) == 5.0
    assert seconds_setting(5.0, "X", 60.0, {"X": "0.25"}) == 0.25
    assert seconds_setting(5.0, "X", 60.0, {"X": "600"}) == 60.0
    assert seconds_setting(5.0, "X", 60.0, {"X": "inf"}) == 60.0
    assert seconds_setting(5.0, "X", environ={"X": "inf"}) == 5.0
    assert seconds_setting(5.0, "X", environ={"X": "1e6"}) == 1e6
    for bad in ("0", "-1", "nan", "-inf", "soon", ""):
        assert seconds_setting(5.0, "X", 60.0, {"X": bad}) == 5.0
