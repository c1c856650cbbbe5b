"""Deadline timers: a heap of (deadline, callback) driven by the event loop.

The loop asks `next_deadline()` and sleeps in select() exactly until then, or forever
when nothing is pending: an idle daemon wakes for nothing (no periodic tick).
The clock is injected so tests can drive time by hand.

A cancelled timer lets go of its callback at once, and its slot leaves the heap when it
reaches the top, or, when cancelled slots make up most of the heap, all of them at
once. Per-connection timers are long (tcpmux's 60 s for a name, ident's 30 s, IDONLY's
120 s) and almost always cancelled early; behind one live timer due later still (the
SENSOR scrub, a cps pause), their slots and every session their callbacks held stayed
until their own deadlines, about 2 KiB per tcpmux connection for a minute.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


def seconds_setting(default: float, variable: str, maximum: float = math.inf,
                    environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """`default` seconds, or $`variable` when it holds a number of seconds above 0, at
    most `maximum` (a larger one is taken as `maximum`; an infinite one with no maximum,
    NaN, zero, a negative number or a word as `default`): the daemon's few period and
    deadline settings from the environment."""
    try:
        value = float(environ.get(variable, default))
    except ValueError:
        return default
    if not value > 0 or (value == math.inf and maximum == math.inf):
        return default
    return min(value, maximum)


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


# The heap is rebuilt without its cancelled slots once they are more than this many
# and more than half of it: amortized, one list pass per cancelled slot at most.
COMPACT_MIN_CANCELLED = 100


def _nothing() -> None:
    pass


@dataclass(order=True)
class Timer:
    deadline: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)
    # Told of a cancel while the timer is in its queue's heap.
    on_cancel: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def cancel(self) -> None:
        """Cancel the timer: its callback is released now (it may hold a whole session),
        its slot in the heap later (see TimerQueue)."""
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _nothing
        on_cancel, self.on_cancel = self.on_cancel, None
        if on_cancel is not None:
            on_cancel()


class TimerQueue:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._cancelled = 0     # cancelled slots still in the heap

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(deadline, next(self._seq), callback, on_cancel=self._one_cancelled)
        heapq.heappush(self._heap, timer)
        return timer

    def _one_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled > COMPACT_MIN_CANCELLED and 2 * self._cancelled > len(self._heap):
            # In place: a timer callback running from run_due may be the canceller.
            self._heap[:] = [t for t in self._heap if not t.cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock() + delay, callback)

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
            self._cancelled -= 1

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is pending."""
        heap = self._heap
        if heap and heap[0].cancelled:      # asked every loop turn: no call when clean
            self._drop_cancelled()
        return heap[0].deadline if heap else None

    def run_due(self, on_error: Callable[[str, Exception], None] | None = None) -> int:
        """Run every timer whose deadline has passed; return how many ran. A callback
        that raises is reported to `on_error` and the others still run (without
        `on_error`, the exception propagates)."""
        if not self._heap:
            return 0        # every loop turn asks: an idle queue costs no clock read
        now = self.clock()
        ran = 0
        while True:
            self._drop_cancelled()
            if not self._heap or self._heap[0].deadline > now:
                return ran
            timer = heapq.heappop(self._heap)
            # Out of the heap: a cancel() from now on (the callback's own, say) has
            # no slot to count.
            timer.cancelled = True
            timer.on_cancel = None
            callback, timer.callback = timer.callback, _nothing
            ran += 1
            try:
                callback()
            except Exception as exc:
                if on_error is None:
                    raise
                on_error("a timer", exc)

    def __len__(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)
