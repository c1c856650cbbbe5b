"""The single-threaded event loop every part of the daemon runs on.

One selector, one timer heap. Handlers are plain callables receiving the ready event
mask; they must never block. `run_once()` sleeps until the next I/O event or the next
timer deadline, and indefinitely when no timer is pending, so an idle daemon uses no
CPU. Signals reach the loop through signals.SignalWakeup, which registers a socket here.

A handler, timer or callback that raises (a bug: handlers catch the errors they expect)
must not end the loop and with it every service: with `on_error` set (the master sets
it) the exception is reported there and the loop goes on, as asyncio's loop does. A
failing I/O handler's descriptor is also taken out of the selector, since a handler that
raises before consuming its readiness would otherwise be called again at once, forever;
whatever it served stops, the rest keeps serving. Without `on_error` (unit tests) the
exception propagates.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable
from typing import Protocol

from pyxinetd.errors import SetupError
from pyxinetd.timers import Clock, Timer, TimerQueue

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE

# The longest sleep asked of the selector: epoll takes its timeout as a C int of
# milliseconds (about 24.8 days) and raises OverflowError beyond, which would end the
# loop. A timer due later (`-cc 2147483647`, a month-long cps pause) costs one idle
# wake-up a day until it is due.
_MAX_SLEEP = 86400.0

Handler = Callable[[int], None]
# Told what failed ("the handler of descriptor 7", "a timer") and the exception.
ErrorHook = Callable[[str, Exception], None]


class FileLike(Protocol):
    def fileno(self) -> int: ...


class Loop:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        try:
            self.selector = selectors.DefaultSelector()
        except OSError as err:
            raise SetupError("the event loop's selector", err) from err
        self.timers = TimerQueue(clock)
        self.clock = clock
        self._running = False
        # Callbacks for the end of the current turn (call_soon): cheaper than a timer.
        self._soon: list[Callable[[], None]] = []
        self.on_error: ErrorHook | None = None
        # The descriptor whose events come first in a turn (see first()); -1: none.
        self._first_fd = -1
        # What is registered, by descriptor number: the selector's keys as it returned
        # them. Its own mapping looks a number up through four Python-level calls, and
        # a miss raises a KeyError that formats repr(fileobj) (a getsockname() and a
        # getpeername() for a socket); run_once() looks up every event.
        self._keys: dict[int, selectors.SelectorKey] = {}

    # -- I/O registration -------------------------------------------------
    def register(self, fileobj: FileLike | int, events: int, handler: Handler) -> None:
        key = self.selector.register(fileobj, events, handler)
        self._keys[key.fd] = key

    def modify(self, fileobj: FileLike | int, events: int, handler: Handler) -> None:
        try:
            key = self.selector.modify(fileobj, events, handler)
        except BaseException:
            # The selector unregisters a descriptor the kernel refused to modify
            # (EBADF, ENOMEM): the table follows it.
            # In place: run_once() holds the table through its turn.
            kept = list(self.selector.get_map().values())
            self._keys.clear()
            self._keys.update((key.fd, key) for key in kept)
            raise
        self._keys[key.fd] = key

    def unregister(self, fileobj: FileLike | int) -> None:
        """Unregister if registered; a no-op otherwise (callers close sockets freely)."""
        try:
            key = self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            return
        del self._keys[key.fd]

    def is_registered(self, fileobj: FileLike | int) -> bool:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0:  # a closed socket: the selector finds it by identity, if at all
            return any(key.fileobj is fileobj for key in self._keys.values())
        return fd in self._keys

    def first(self, fileobj: FileLike | int | None) -> None:
        """Handle the events of `fileobj` (registered separately) before any other of
        the same turn; None: no such descriptor.

        The signal socket: a server's exit and the next client's connection often
        arrive together, and reaping the server first frees the slot the client is
        then admitted to (xinetd reads its signal pipe before its service sockets)."""
        if fileobj is None:
            self._first_fd = -1
        else:
            self._first_fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()

    def set_events(self, fileobj: FileLike | int, events: int, handler: Handler) -> None:
        """Register, modify or unregister so that exactly `events` are watched."""
        registered = self.is_registered(fileobj)
        if events == 0:
            if registered:
                self.unregister(fileobj)
        elif registered:
            self.modify(fileobj, events, handler)
        else:
            self.register(fileobj, events, handler)

    # -- timers -----------------------------------------------------------
    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_at(deadline, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_later(delay, callback)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run `callback` at the end of the current turn (next turn, outside the loop)."""
        self._soon.append(callback)

    # -- running ----------------------------------------------------------
    def run_once(self) -> None:
        if self._soon:
            timeout: float | None = 0.0
        else:
            deadline = self.timers.next_deadline()
            timeout = (None if deadline is None
                       else min(_MAX_SLEEP, max(0.0, deadline - self.clock())))
        registered = self._keys
        events = self.selector.select(timeout)
        if len(events) > 1 and self._first_fd >= 0:
            for index, (key, _) in enumerate(events):
                if key.fd == self._first_fd:
                    if index:
                        events.insert(0, events.pop(index))
                    break
        for key, mask in events:
            # An earlier handler of this batch may have unregistered, closed or re-armed
            # this descriptor: deliver only what is still asked for, to the handler that
            # asks for it now (the selector is level-triggered: nothing skipped is lost).
            current = registered.get(key.fd)
            if current is None or current.fileobj is not key.fileobj:
                continue
            mask &= current.events
            if not mask:
                continue
            handler: Handler = current.data
            try:
                handler(mask)
            except Exception as exc:
                if self.on_error is None:
                    raise
                self.unregister(key.fileobj)
                self.on_error(f"the handler of descriptor {key.fd} (no longer watched)", exc)
        self.timers.run_due(self.on_error)
        if self._soon:
            # One batch per turn: callbacks queued by these run in the next turn.
            soon, self._soon = self._soon, []
            for callback in soon:
                try:
                    callback()
                except Exception as exc:
                    if self.on_error is None:
                        raise
                    self.on_error("a callback", exc)

    def run(self) -> None:
        """Run until stop() is called from a handler or timer."""
        self._running = True
        while self._running:
            self.run_once()

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        self.selector.close()
        self._keys.clear()
