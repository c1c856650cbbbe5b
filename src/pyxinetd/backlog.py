"""Messages a log target had no room for: kept in order, sent as room appears.

A log written without waiting (syslog's socket, the program log's pipe, FIFO or socket)
sometimes has no room: the syslog daemon, or whoever reads the pipe, is late or has
stopped reading. Waiting for it would stall the loop, and every service with it;
dropping at once would lose exactly the lines that explain a problem. So a message that
does not fit waits here, at most BACKLOG_LIMIT of them (beyond that the newest are
counted and dropped, and a line says how many once there is room again). What waits is
sent in order, before any newer message, and whenever the loop (once attached) reports
the target writable: the kernel wakes a writer when the reader makes room, so nothing
is retried on a clock. A target with nothing to watch (a full disk, a FIFO without a
reader: pyxinetd.logstream) has what waits tried again with its next message instead.
`drain()` gives what waits a bounded time at exit.

A subclass says how one message is delivered, what the loop watches for room, and how
the count of dropped messages reads (or that it is reported elsewhere).
"""

from __future__ import annotations

import abc
import collections
import select
import time

from pyxinetd.loop import WRITE, FileLike, Loop

BACKLOG_LIMIT = 1000
FLUSH_ON_CLOSE = 2.0


class Backlog(abc.ABC):
    """A bounded queue of waiting messages in front of a target that must never block."""

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        self._limit = limit
        self._backlog: collections.deque[bytes] = collections.deque()
        self._dropped = 0
        self._loop: Loop | None = None
        # What the loop watches for room, while something waits.
        self._watched: FileLike | int | None = None

    # -- what a target provides ----------------------------------------------
    @abc.abstractmethod
    def _deliver(self, data: bytes) -> bytes | None:
        """Write one message (or the tail of one begun earlier) without waiting: None
        once it is written or given up for good, else what is left when there is no
        room."""

    @abc.abstractmethod
    def _room_target(self) -> FileLike | int | None:
        """What to watch for room (None: nothing to watch, the target is gone)."""

    @abc.abstractmethod
    def _dropped_message(self, count: int) -> bytes | None:
        """The message that says `count` messages were dropped, sent after the others;
        None when the count was reported some other way."""

    # -- the queue -------------------------------------------------------------
    def attach(self, loop: Loop) -> None:
        """Send the backlog from `loop` from now on, as the target has room."""
        self._loop = loop
        self._schedule()

    @property
    def pending(self) -> int:
        """Messages waiting for room."""
        return len(self._backlog)

    def submit(self, data: bytes) -> None:
        """Write `data` now if nothing waits and there is room; else queue it."""
        if self._backlog and not self.flush():
            self._queue(data)
            return
        left = self._deliver(data)
        if left is not None:
            self._queue(left)   # the backlog is empty: this is its head
        else:
            self._schedule()    # a backlog this call emptied is no longer watched

    def flush(self) -> bool:
        """Send what waits, in order; True once nothing waits."""
        while True:
            if not self._backlog:
                if not self._dropped:
                    return True
                dropped, self._dropped = self._dropped, 0
                message = self._dropped_message(dropped)
                if message is None:
                    return True
                self._backlog.append(message)
            left = self._deliver(self._backlog[0])
            if left is not None:
                self._backlog[0] = left
                return False
            self._backlog.popleft()

    def take_over(self, other: Backlog) -> None:
        """Put what waits in `other` (a target given up for this one) before what waits
        here, and its count of dropped messages with ours; beyond the bound, the newest
        are counted. Meant for a target nothing was written to yet: a message begun
        here would be cut."""
        self._backlog.extendleft(reversed(other._backlog))
        self._dropped += other._dropped
        other._backlog.clear()
        other._dropped = 0
        while len(self._backlog) > self._limit:
            self._backlog.pop()
            self._dropped += 1
        self._schedule()

    def _queue(self, data: bytes) -> None:
        if len(self._backlog) < self._limit:
            self._backlog.append(data)
        else:
            self._dropped += 1
        self._schedule()

    def _schedule(self) -> None:
        """Watch the target for room while something waits; stop once nothing does."""
        waiting = bool(self._backlog or self._dropped)
        target = self._room_target() if waiting and self._loop is not None else None
        if target is self._watched:
            return
        self._unwatch()
        if target is not None and self._loop is not None:
            self._loop.register(target, WRITE, self._writable)
            self._watched = target

    def _unwatch(self) -> None:
        """Stop watching (before the watched descriptor is closed)."""
        if self._watched is not None and self._loop is not None:
            self._loop.unregister(self._watched)
        self._watched = None

    def _writable(self, mask: int) -> None:
        self.flush()
        self._schedule()
        if not (self._backlog or self._dropped):
            self._drained()
        elif self._watched is None:
            self._stranded()

    def _drained(self) -> None:
        """What waited is all sent (or given up), from the loop: a subclass may let go
        of a target kept only for it."""

    def _stranded(self) -> None:
        """What waits no longer has anything to watch (the reader left), from the loop:
        only a next message would try again. A subclass may give up a target kept only
        for what waits."""

    def drain(self, seconds: float = FLUSH_ON_CLOSE) -> int:
        """Detach from the loop and give what waits up to `seconds` (0: what fits at
        once); the rest is forgotten: returns how many messages, dropped ones included.
        Waits outside the loop: for the exit only."""
        self._unwatch()
        self._loop = None
        deadline = time.monotonic() + seconds
        while not self.flush():
            target = self._room_target()
            left = deadline - time.monotonic()
            if target is None or left <= 0:
                break
            select.select([], [target], [], left)
        forgotten = len(self._backlog) + self._dropped
        self._backlog.clear()
        self._dropped = 0
        return forgotten
