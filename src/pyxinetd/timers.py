"""Deadline timers: a heap of (deadline, callback) driven by the event loop.

The loop asks `next_deadline()` and sleeps in select() exactly until then, or forever
when nothing is pending: an idle daemon wakes for nothing (no periodic tick).
The clock is injected so tests can drive time by hand.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


def shortened(default: float, variable: str,
              environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """`default` seconds, or $`variable` when it holds a number of seconds above 0 and
    at most `default`: a test-only override that may make a period shorter (so a test
    sees what follows it in seconds), never longer, NaN or negative."""
    try:
        value = float(environ.get(variable, default))
    except ValueError:
        return default
    if value != value or value <= 0 or value > default:
        return default
    return value


@dataclass(order=True)
class Timer:
    deadline: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        """Cancel the timer; its slot in the heap is dropped lazily."""
        self.cancelled = True


class TimerQueue:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(deadline, next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock() + delay, callback)

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is pending."""
        self._drop_cancelled()
        return self._heap[0].deadline if self._heap else None

    def run_due(self, on_error: Callable[[str, Exception], None] | None = None) -> int:
        """Run every timer whose deadline has passed; return how many ran. A callback
        that raises is reported to `on_error` and the others still run (without
        `on_error`, the exception propagates)."""
        now = self.clock()
        ran = 0
        while True:
            self._drop_cancelled()
            if not self._heap or self._heap[0].deadline > now:
                return ran
            timer = heapq.heappop(self._heap)
            timer.cancelled = True
            ran += 1
            try:
                timer.callback()
            except Exception as exc:
                if on_error is None:
                    raise
                on_error("a timer", exc)

    def __len__(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)
