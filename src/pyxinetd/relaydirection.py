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
        # dst is gone, but src is still read until its EOF and what it sends dropped
        # (see destination_lost).
        self.dropping = False
        self.count = 0
        self.received = 0       # bytes read from src, dropped ones too
        # Written before the buffer and not traffic: the banners, a view of the caller's
        # bytes (not a copy: many relays may share one large banner).
        self.head = NOTHING

    @property
    def done(self) -> bool:
        return self.shut

    @property
    def settled(self) -> bool:
        """Done, and, when dropping, src has finished sending too: nothing of this
        direction is left to wait for."""
        return self.shut and (self.eof or not self.dropping)

    @property
    def pending(self) -> bool:
        """Something to write: bytes, or the FIN of a source that finished (a relay
        that starts with its source already finished has only that)."""
        return bool(self.head) or bool(self.buffer) or (self.eof and not self.shut)

    def wants_read(self) -> bool:
        if self.eof:
            return False
        return self.dropping or len(self.head) + len(self.buffer) < BUFFER_LIMIT

    def read(self) -> None:
        """Receive what `src` has (OSError when it was reset); flush() passes it on."""
        data = self.src.recv(max(1, min(RECV_SIZE,
                                        BUFFER_LIMIT - len(self.head) - len(self.buffer))))
        if not data:
            self.eof = True
            return
        self.received += len(data)
        if not self.dropping:
            self.buffer += data

    def source_lost(self) -> None:
        """`src` was reset: what it sent before still goes to `dst`, then a FIN."""
        self.eof = True

    def destination_lost(self, drain: bool = False) -> None:
        """`dst` was reset: nothing more can reach it. Stop reading for it; or, with
        `drain`, keep reading `src` until its EOF and drop what it sends: closing a
        socket over input nobody read resets the connection, and the reset throws away
        what is still queued towards that peer (the other direction's last bytes)."""
        self.buffer.clear()
        self.head = NOTHING
        self.shut = True
        if drain:
            self.dropping = True
        else:
            self.eof = True

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
