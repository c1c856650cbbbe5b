"""Syslog over the local socket: the loop never waits, and a burst is not lost.

The socket (/dev/log, or $PYXINETD_SYSLOG_SOCKET for tests) is non-blocking, spoken to
directly instead of through the `syslog` module, whose send blocks while the syslog
daemon's queue is full: a stalled syslog daemon must never stall serving. A full queue is
not rare, though: Linux lets a datagram socket hold `net.unix.max_dgram_qlen` messages
(10 unless a distribution raises it), so a start-up with a dozen configuration messages,
or a burst of FAIL lines, fills it as soon as the syslog daemon is a moment late. xinetd
then waits in `send`; dropping them would lose exactly the lines that explain a problem.
So a message that does not fit waits in the shared backlog (pyxinetd.backlog: at most
BACKLOG_LIMIT of them, the newest dropped and counted beyond, sent in order as the
socket has room; Linux wakes a connected datagram socket's writers when the receiver's
queue has room again). `close()` gives the backlog up to FLUSH_ON_CLOSE seconds.

The syslog daemon may also be away for a while: restarted (its socket removed, a new
one bound at the same path) or not started yet. A message that finds nobody listening
waits in the same backlog instead of being lost, and the next message tries to connect
again (nothing tells the daemon that a socket has appeared, and it never polls): once a
syslog daemon listens, what waited goes first, in order, each with its own time stamp.
Only what the old syslog daemon had taken but not read is lost with it. A message that
finds no descriptor left for the socket (EMFILE) waits the same way.

Such an outage is recorded, not reported: the first message that finds no syslog daemon
calls `on_unreachable` once, and `on_reached` is called once what waited has been sent
to a syslog daemon again (with how many waited and how many were dropped). Whoever owns
the program log sets them, when that log is not syslog itself (pyxinetd.master): the
administrator of a host without a syslog daemon otherwise never learns where the lines
went. Once per outage, never per message.

A syslog daemon may listen on a stream socket instead (syslog-ng's
`unix-stream("/dev/log")`): like glibc's syslog(), and so xinetd, the sender then
connects a stream and ends each message with a NUL byte. A stream may take a message
in part; its tail is sent before anything else, and dropped if the connection breaks
(the start of it went to a connection that is gone).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable

from pyxinetd.backlog import BACKLOG_LIMIT as BACKLOG_LIMIT
from pyxinetd.backlog import FLUSH_ON_CLOSE, Backlog
from pyxinetd.localzone import local_time
from pyxinetd.textbytes import as_written

SYSLOG_SOCKET_ENV = "PYXINETD_SYSLOG_SOCKET"
# A message too long for one datagram is cut to this many bytes.
DATAGRAM_CUT = 64 * 1024
DEFAULT_SYSLOG_SOCKET = "/dev/log"
SYSLOG_IDENT = "xinetd"
# daemon.warning, for the line that counts dropped messages.
DROPPED_PRIORITY = 3 * 8 + 4

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def syslog_timestamp(now: float) -> str:
    """RFC 3164 stamp: `Mmm dd hh:mm:ss`, the day padded with a space."""
    t = local_time(now)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


class SyslogSender(Backlog):
    """Sends RFC 3164 datagrams to the local syslog socket; never blocks the loop."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.path = path or os.environ.get(SYSLOG_SOCKET_ENV) or DEFAULT_SYSLOG_SOCKET
        self._sock: socket.socket | None = None
        # The socket is a stream: messages end with NUL, and may be sent in parts.
        self._stream = False
        # The head of the backlog is the unsent tail of a message begun on this stream.
        self._partial = False
        self._pid = os.getpid()
        # Why the messages counted as dropped were dropped (the line that counts them
        # says it).
        self._drop_reason = "the syslog socket was full"
        # Told once when a message first finds no syslog daemon, and once when what
        # waited meanwhile was sent to one again (module docstring); each gets one line.
        self.on_unreachable: Callable[[str], None] | None = None
        self.on_reached: Callable[[str], None] | None = None
        # The outage under way: why the first message found no syslog daemon (None:
        # none), and how many messages waited or were dropped since.
        self._outage: OSError | None = None
        self._outage_waited = 0
        self._outage_dropped = 0

    def send(self, priority: int, text: str, now: float | None = None) -> None:
        stamp = syslog_timestamp(time.time() if now is None else now)
        self.submit(as_written(f"<{priority}>{stamp} {SYSLOG_IDENT}[{self._pid}]: {text}"))

    def _dropped_message(self, count: int) -> bytes:
        if self._outage is not None:
            self._outage_dropped += count
        reason, self._drop_reason = self._drop_reason, "the syslog socket was full"
        return (f"<{DROPPED_PRIORITY}>{syslog_timestamp(time.time())} {SYSLOG_IDENT}"
                f"[{self._pid}]: {count} messages dropped: {reason}".encode())

    def _queue(self, data: bytes) -> None:
        if self._sock is None and self.pending >= self._limit:
            self._drop_reason = "no syslog daemon listened"
        elif self._sock is None and self._outage is not None:
            self._outage_waited += 1    # (not what waits for room once one listens)
        super()._queue(data)

    def flush(self) -> bool:
        done = super().flush()
        if done and self._outage is not None and self._sock is not None:
            self._outage_ended()
        return done

    def _outage_began(self, err: OSError) -> None:
        """A message found no syslog daemon (nobody listens, or no descriptor was left
        for the socket): say so once, until one takes what waits."""
        if self._outage is not None:
            return
        self._outage = err
        self._outage_waited = self._outage_dropped = 0
        if self.on_unreachable is None:
            return
        reason = os.strerror(err.errno) if err.errno else str(err)
        if err.errno in (errno.ENOENT, errno.ECONNREFUSED):
            what = f"no syslog daemon listens on {self.path}"
        else:
            what = f"cannot reach the syslog daemon on {self.path}"
        self.on_unreachable(
            f"syslog: {what} ({reason}): syslog messages wait for one, at most "
            f"{self._limit:,}; beyond that the newest are dropped")

    def _outage_ended(self) -> None:
        """What waited for a syslog daemon has all been sent to one."""
        waited, dropped = self._outage_waited, self._outage_dropped
        self._outage = None
        self._outage_waited = self._outage_dropped = 0
        if self.on_reached is None:
            return
        text = (f"syslog: a syslog daemon listens on {self.path}: the {waited} "
                f"message{'s' if waited != 1 else ''} that waited "
                f"{'were' if waited != 1 else 'was'} sent")
        if dropped:
            text += f", {dropped} more {'were' if dropped != 1 else 'was'} dropped"
        self.on_reached(text)

    def _room_target(self) -> socket.socket | None:
        return self._sock

    def _deliver(self, data: bytes) -> bytes | None:
        """Send one message (or the tail of the one begun on a stream): None once sent;
        else what is left to send, when the socket has no room, or no syslog daemon
        listens, or no descriptor is left for the socket (module docstring)."""
        # One reconnect attempt covers a restarted syslog daemon.
        for _ in range(2):
            if self._sock is None:
                self._sock = self._connect()
                if self._sock is None:
                    return data
            payload = data + b"\0" if self._stream and not self._partial else data
            try:
                sent = self._sock.send(payload, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return data
            except OSError as err:
                if err.errno == errno.EMSGSIZE and len(data) > DATAGRAM_CUT:
                    # Longer than one datagram of the socket may be (about 208 KiB on
                    # Linux): cut, as xinetd's fixed buffer cuts a long line, rather
                    # than lost without a word.
                    data = data[:DATAGRAM_CUT]
                    continue
                tail_only = self._partial
                self._close_socket()
                if tail_only:
                    return None     # a tail alone would read as a message of its own
                continue
            if sent == len(payload):
                self._partial = False
                return None
            self._partial = True
            return payload[sent:]
        return None

    def _close_socket(self) -> None:
        if self._sock is None:
            return
        if self._sock is self._watched:
            self._unwatch()
        self._sock.close()
        self._sock = None
        self._stream = self._partial = False

    def _connect(self) -> socket.socket | None:
        """A connected, non-blocking socket to the syslog daemon, datagram or (when it
        listens on a stream: EPROTOTYPE) stream, as glibc's syslog() does; None when
        nobody listens or no descriptor is left (the next message retries)."""
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            try:
                sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
            except OSError as err:
                self._outage_began(err)
                return None
            sock.setblocking(False)
            try:
                sock.connect(self.path)
            except OSError as err:
                sock.close()
                if err.errno == errno.EPROTOTYPE:
                    continue
                if err.errno != errno.EAGAIN:
                    # EAGAIN is a stream listener's full backlog: one listens.
                    self._outage_began(err)
                return None
            self._stream = kind == socket.SOCK_STREAM
            return sock
        return None

    def fileno(self) -> int | None:
        return None if self._sock is None else self._sock.fileno()

    def close(self, flush_for: float = FLUSH_ON_CLOSE) -> None:
        """Give the backlog `flush_for` seconds, then close the socket."""
        self.drain(flush_for)
        self._close_socket()
