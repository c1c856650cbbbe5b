"""Syslog over the local datagram socket: the loop never waits, and a burst is not lost.

The socket (/dev/log, or $PYXINETD_SYSLOG_SOCKET for tests) is non-blocking, spoken to
directly instead of through the `syslog` module, whose send blocks while the syslog
daemon's queue is full: a stalled syslog daemon must never stall serving. A full queue is
not rare, though: Linux lets a datagram socket hold `net.unix.max_dgram_qlen` messages
(10 unless a distribution raises it), so a start-up with a dozen configuration messages,
or a burst of FAIL lines, fills it as soon as the syslog daemon is a moment late. xinetd
then waits in `send`; dropping them would lose exactly the lines that explain a problem.
So a message that does not fit waits in a backlog (at most BACKLOG_LIMIT of them, then
the newest are counted and dropped, and a line says how many), sent in order as soon as
the socket takes it: before any newer message, and from a timer of the loop once one is
attached. `close()` gives the backlog up to FLUSH_ON_CLOSE seconds.
"""

from __future__ import annotations

import collections
import os
import select
import socket
import time

from pyxinetd.loop import Loop
from pyxinetd.timers import Timer

SYSLOG_SOCKET_ENV = "PYXINETD_SYSLOG_SOCKET"
DEFAULT_SYSLOG_SOCKET = "/dev/log"
SYSLOG_IDENT = "xinetd"
BACKLOG_LIMIT = 1000
RETRY_INTERVAL = 0.05
FLUSH_ON_CLOSE = 2.0
# daemon.warning, for the line that counts dropped messages.
DROPPED_PRIORITY = 3 * 8 + 4

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def syslog_timestamp(now: float) -> str:
    """RFC 3164 stamp: `Mmm dd hh:mm:ss`, the day padded with a space."""
    t = time.localtime(now)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


class SyslogSender:
    """Sends RFC 3164 datagrams to the local syslog socket; never blocks the loop."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get(SYSLOG_SOCKET_ENV) or DEFAULT_SYSLOG_SOCKET
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        self._backlog: collections.deque[bytes] = collections.deque()
        self._dropped = 0
        self._loop: Loop | None = None
        self._timer: Timer | None = None

    def attach(self, loop: Loop) -> None:
        """Send the backlog from `loop`'s timers from now on."""
        self._loop = loop
        self._schedule()

    @property
    def pending(self) -> int:
        """Messages waiting for room in the syslog daemon's queue."""
        return len(self._backlog)

    def send(self, priority: int, text: str, now: float | None = None) -> None:
        stamp = syslog_timestamp(time.time() if now is None else now)
        data = f"<{priority}>{stamp} {SYSLOG_IDENT}[{self._pid}]: {text}".encode(errors="replace")
        if self._backlog and not self.flush():
            self._queue(data)
        elif not self._deliver(data):
            self._queue(data)

    def flush(self) -> bool:
        """Send what waits, in order; True once nothing waits."""
        while self._backlog:
            if not self._deliver(self._backlog[0]):
                return False
            self._backlog.popleft()
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            note = (f"<{DROPPED_PRIORITY}>{syslog_timestamp(time.time())} {SYSLOG_IDENT}"
                    f"[{self._pid}]: {dropped} messages dropped: the syslog socket was full")
            if not self._deliver(note.encode()):
                self._dropped = dropped
                return False
        return True

    def _deliver(self, data: bytes) -> bool:
        """Send one datagram: False when the queue is full; True once sent, or when no
        syslog daemon listens (then there is nobody to wait for, and it is dropped)."""
        # One reconnect attempt covers a restarted syslog daemon.
        for _ in range(2):
            if self._sock is None:
                self._sock = self._connect()
                if self._sock is None:
                    return True
            try:
                self._sock.send(data)
                return True
            except BlockingIOError:
                return False
            except OSError:
                self._sock.close()
                self._sock = None
        return True

    def _queue(self, data: bytes) -> None:
        if len(self._backlog) < BACKLOG_LIMIT:
            self._backlog.append(data)
        else:
            self._dropped += 1
        self._schedule()

    def _schedule(self) -> None:
        if self._loop is not None and self._timer is None and (self._backlog or self._dropped):
            self._timer = self._loop.call_later(RETRY_INTERVAL, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if not self.flush():
            self._schedule()

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            return None
        return sock

    def fileno(self) -> int | None:
        return None if self._sock is None else self._sock.fileno()

    def close(self) -> None:
        """Give the backlog FLUSH_ON_CLOSE seconds, then close the socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        deadline = time.monotonic() + FLUSH_ON_CLOSE
        while not self.flush() and self._sock is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [self._sock], [], left)
        self._backlog.clear()
        self._dropped = 0
        if self._sock is not None:
            self._sock.close()
            self._sock = None
