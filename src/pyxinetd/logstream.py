"""A log's descriptor written without waiting: the program log's (`-filelog FILE`, or
stderr), a service log's FIFO or regular file.

A reader that stops reading must not stall the daemon: `-filelog` naming a FIFO whose
reader pauses, or `-dontfork` with stderr a pipe (`pyxinetd -dontfork | slow-reader`, a
paused pager) or a socket (journald's stdout stream) whose reader stalls. A blocking
write there would stop every service until the reader reads again, so each line is
written without waiting, and a line that finds no room waits in the shared backlog
(pyxinetd.backlog), drained from the loop when the descriptor is writable.

How a write is kept from waiting depends on what the descriptor is, because O_NONBLOCK
is a flag of the open file description, which an inherited descriptor shares with other
processes (the shell's terminal, the other end of `|`): setting it on stderr would
change it for them too. So the description stderr came with is never changed:
- a socket gets send(MSG_DONTWAIT) per line, a flag of the call alone;
- a pipe or FIFO is opened again through /proc/self/fd/N: a description of its own on
  the same pipe, made non-blocking (a FIFO the daemon opened itself, for `-filelog`, is
  its own description already);
- a regular file never waits for a reader, and a terminal waits only while its user
  holds it (^S): both are written as they are, a blocking write.
A regular file may have no room either: its file system is full (ENOSPC) or its owner's
quota is (EDQUOT). A line it refuses so, or the tail of one it took in part, waits in the
same backlog and goes first when the next line is written (nothing tells the daemon that
room appeared, and it never polls), so lines are not lost while someone frees the disk,
nor cut in the middle.
A FIFO's reader may leave, and another come (`-filelog` naming a FIFO whose reader is
restarted): with `wait_for_reader`, a line written while it has no reader (EPIPE)
waits the same way, and goes first when a later line finds a reader again. Nothing
is watched meanwhile (a pipe without a reader is always ready to fail).
Each line is one write of one whole line (lines are far below PIPE_BUF, which a pipe
writes whole or not at all), so lines never interleave with parts of others; a longer
line a stream takes in part has its tail written before anything else.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Callable

from pyxinetd.backlog import BACKLOG_LIMIT, FLUSH_ON_CLOSE, Backlog


# What a regular file refuses for want of room, which room made later cures.
_NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class Kind(enum.Enum):
    BLOCKING = "a terminal or another device"
    FILE = "a regular file"
    PIPE = "a pipe or a FIFO"
    SOCKET = "a socket"


class LogStream(Backlog):
    """Writes whole lines to one descriptor; never waits for its reader.

    `owned`: the descriptor was opened by the daemon and is closed with
    the stream (a `-filelog` file, a service log's FIFO); else it is inherited
    (stderr) and left as it came.

    `dropped_message` reads the count of dropped lines (None: it reported the count
    itself); `write_failed` hears of a write that failed for good (the reader is gone),
    whose line is lost; `no_room` hears once that a regular file has no room (a full
    disk), or with `wait_for_reader` a pipe no reader (EPIPE), whose lines wait, and
    again only after a line was written since;
    `wait_for_reader`: a line a pipe or FIFO refuses for want of a reader waits for
    the next one instead of being lost (module docstring)."""

    def __init__(self, fd: int, *, owned: bool,
                 dropped_message: Callable[[int], bytes | None], limit: int = BACKLOG_LIMIT,
                 write_failed: Callable[[OSError], None] | None = None,
                 no_room: Callable[[OSError], None] | None = None,
                 wait_for_reader: bool = False) -> None:
        super().__init__(limit)
        self._fd: int | None = fd
        self._owned = owned
        self._dropped_line = dropped_message
        self._write_failed = write_failed
        self._no_room = no_room
        # The regular file refused the last write for want of room (said once).
        self._full = False
        self._wait_for_reader = wait_for_reader
        # The pipe refused the last write for want of a reader: nothing to watch.
        self._readerless = False
        # The descriptor written to, when it is not `fd` itself.
        self._writer: int | None = None
        self._sock: socket.socket | None = None
        self.kind = self._prepare(fd)
        # Told, from the loop, once the lines that waited are all written (or given up).
        self.on_drained: Callable[[], None] | None = None
        # Told, from the loop, when the reader left while lines waited for room: only
        # a next line would try them again.
        self.on_stranded: Callable[[], None] | None = None

    def _prepare(self, fd: int) -> Kind:
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return Kind.BLOCKING    # writes fail, and are dropped, as before
        if stat.S_ISREG(mode):
            return Kind.FILE
        if stat.S_ISSOCK(mode):
            try:
                # A descriptor of our own on the same description: a socket object
                # closes what it wraps, and stderr must stay open.
                own = os.dup(fd)
            except OSError:
                return Kind.BLOCKING
            try:
                self._sock = socket.socket(fileno=own)
            except OSError:
                os.close(own)
                return Kind.BLOCKING
            return Kind.SOCKET
        if stat.S_ISFIFO(mode):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                return Kind.BLOCKING    # a reading end: writes fail, as they always did
            if self._owned:
                os.set_blocking(fd, False)      # a description only the daemon holds
                return Kind.PIPE
            try:
                self._writer = os.open(f"/proc/self/fd/{fd}",
                                       os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                # No /proc, or the reader is gone (ENXIO): writing as before; with no
                # reader a write fails at once, and the line is dropped.
                return Kind.BLOCKING
            return Kind.PIPE
        return Kind.BLOCKING

    @property
    def fd(self) -> int | None:
        """The descriptor the lines are for (None once closed)."""
        return self._fd

    def write_line(self, data: bytes) -> None:
        """Write one whole line now, or queue it; never waits (but on a regular file or
        a terminal, see the module docstring). On a device other than a pipe or socket
        (a terminal) a line that cannot be written is lost."""
        if self._fd is None:
            return
        if self.kind is Kind.BLOCKING:
            self._write_through(data)
            return
        self.submit(data)

    def _write_through(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError:
            pass        # a closed terminal: the line is lost, serving goes on

    def _deliver(self, data: bytes) -> bytes | None:
        try:
            if self._sock is not None:
                sent = self._sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            else:
                fd = self._writer if self._writer is not None else self._fd
                if fd is None:
                    return None
                sent = os.write(fd, data)
        except BlockingIOError:
            self._readerless = False    # full, so read: the loop watches for room
            return data
        except OSError as err:
            if self.kind is Kind.FILE and err.errno in _NO_ROOM_ERRNOS:
                if not self._full and self._no_room is not None:
                    self._no_room(err)
                self._full = True
                return data     # written before the next line, once there is room
            if (self.kind is Kind.PIPE and err.errno == errno.EPIPE
                    and self._wait_for_reader):
                if not self._readerless and self._no_room is not None:
                    self._no_room(err)
                self._readerless = True
                return data     # written before the next line that finds a reader
            if self._write_failed is not None:
                self._write_failed(err)
            return None     # the reader is gone (EPIPE): nobody to wait for
        self._readerless = False
        if sent < len(data):
            return data[sent:]
        self._full = False
        return None

    def _room_target(self) -> socket.socket | int | None:
        if self.kind is Kind.FILE or self._readerless:
            return None     # always "writable" to poll: the next line tries again
        if self._sock is not None:
            return self._sock
        return self._writer if self._writer is not None else self._fd

    def _dropped_message(self, count: int) -> bytes | None:
        return self._dropped_line(count)

    @property
    def readerless(self) -> bool:
        """The pipe had no reader at the last write (its lines wait for the next)."""
        return self._readerless

    def _drained(self) -> None:
        if self.on_drained is not None:
            self.on_drained()

    def _stranded(self) -> None:
        if self.on_stranded is not None:
            self.on_stranded()

    def fds(self) -> list[int]:
        """Descriptors the stream opened (the spawner must not pass them on)."""
        out = [fd for fd in (self._writer, self._fd if self._owned else None) if fd is not None]
        if self._sock is not None:
            out.append(self._sock.fileno())
        return out

    def close(self, flush_for: float = FLUSH_ON_CLOSE) -> int:
        """Give the waiting lines `flush_for` seconds, then close what was opened;
        returns how many lines were forgotten."""
        if self._fd is None:
            return 0
        forgotten = self.drain(flush_for)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None
        if self._owned:
            os.close(self._fd)
        self._fd = None
        return forgotten
