"""One direction of a relay (pyxinetd.redirect): the bytes read from one socket and not yet
written to the other, bounded by BUFFER_LIMIT, with the source's FIN passed on once they
are written (half-close) and a count of the bytes passed on, for the TRAFFIC line.

The socket is read only while the buffer has room, and written only when the loop says
it is writable: a slow reader slows its sender (TCP flow control), never the daemon.
"""

from __future__ import annotations

import errno
import socket

BUFFER_LIMIT = 64 * 1024
RECV_SIZE = 16 * 1024

# An empty head: nothing to write before the buffer.
NOTHING = memoryview(b"")


class RelayDirection:
    """Bytes read from `src` waiting to be written to `dst`."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.buffer = bytearray()
        self.eof = False        # src sent its FIN
        self.shut = False       # FIN passed on to dst
        self.count = 0
        # Written before the buffer and not traffic: the banners, a view of the caller's
        # bytes (not a copy: many relays may share one large banner).
        self.head = NOTHING

    @property
    def done(self) -> bool:
        return self.shut

    @property
    def pending(self) -> bool:
        """Something to write: bytes, or the FIN of a source that finished (a relay
        that starts with its source already finished has only that)."""
        return bool(self.head) or bool(self.buffer) or (self.eof and not self.shut)

    def wants_read(self) -> bool:
        return not self.eof and len(self.head) + len(self.buffer) < BUFFER_LIMIT

    def read(self) -> None:
        """Receive what `src` has (OSError when it was reset); flush() passes it on."""
        data = self.src.recv(max(1, min(RECV_SIZE,
                                        BUFFER_LIMIT - len(self.head) - len(self.buffer))))
        if data:
            self.buffer += data
        else:
            self.eof = True

    def source_lost(self) -> None:
        """`src` was reset: what it sent before still goes to `dst`, then a FIN."""
        self.eof = True

    def destination_lost(self) -> None:
        """`dst` was reset: nothing more can reach it; stop reading for it."""
        self.buffer.clear()
        self.head = NOTHING
        self.eof = self.shut = True

    def flush(self) -> None:
        if self.head:
            try:
                sent = self.dst.send(self.head)
            except (BlockingIOError, InterruptedError):
                return
            # The rest as a view of the same bytes; none left: let them go.
            self.head = self.head[sent:] if sent < len(self.head) else NOTHING
            if self.head:
                return
        if self.buffer:
            try:
                sent = self.dst.send(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            del self.buffer[:sent]
            self.count += sent
        if self.eof and not self.buffer and not self.shut:
            self.shut = True
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise
