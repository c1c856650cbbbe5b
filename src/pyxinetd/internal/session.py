"""A non-blocking stream connection on the master's loop, with a bounded output buffer.

Every in-loop builtin is a StreamSession with a few hooks. The session watches READ
only while it wants input and its pending output is below OUTPUT_LIMIT, and WRITE only
while output is pending (or the subclass wants to produce more): a peer that never
reads stops our reading, so memory stays bounded and nothing spins.

I/O is optimistic, as asyncio's sock_sendall: a new session reads and writes at once
(on loopback the request is usually queued before the connection is accepted), output
is sent as soon as it is queued, and the socket is registered only for what would
block. The registered mask is tracked here, so the selector is touched only when it
really changes. A greeting (banner_success) is written first, from the caller's bytes
without a copy: many sessions share one large banner (pyxinetd.banners) instead of each
holding its own. A session that ends before its creator got it back defers on_close
to the loop (Loop.call_soon), so that callback still never runs inside start_*.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from pyxinetd.loop import READ, WRITE, Loop

Peer = tuple[Any, ...]
OnClose = Callable[[], None]

_NOTHING = memoryview(b"")

# Pending output above which a session stops reading (echo) or producing (chargen).
OUTPUT_LIMIT = 64 * 1024
RECV_SIZE = 16 * 1024

WRITES_PER_WAKEUP = 4
READS_PER_WAKEUP = 4


# How much unread input a finished session discards before it closes (see discard_input).
DISCARD_LIMIT = 4 * RECV_SIZE


def discard_input(conn: socket.socket) -> None:
    """Before closing a connection whose output is all written: consume what the client
    sent and nobody read (a newline typed at daytime, bytes after a tcpmux name), then
    send the FIN.

    Closing with unread input makes the kernel send a reset instead of a FIN, and a
    reset throws away output still in our send queue: the last write went out with
    MSG_MORE, so the reply itself could be lost. Up to DISCARD_LIMIT bytes are read
    without waiting. shutdown(SHUT_WR) then sends the queued output and the FIN at once,
    whatever happens next: input that arrives after the last read (or beyond
    DISCARD_LIMIT) makes the close reset the connection, but only after the client has
    its reply and the FIN. Never raises OSError.
    """
    try:
        for _ in range(DISCARD_LIMIT // RECV_SIZE):
            if not conn.recv(RECV_SIZE, socket.MSG_DONTWAIT):
                break       # EOF: nothing left to discard
    except OSError:
        pass                # EAGAIN: nothing queued; or the peer is gone
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass                # the peer is gone


class Session(Protocol):
    """A connection served inside the loop."""

    @property
    def closed(self) -> bool: ...

    def close(self) -> None:
        """End the session now: unregister, close the sockets, call on_close once."""


class StreamSession:
    """Base of the in-loop stream builtins.

    Subclasses override `received(data)`, `eof()` and `refill()`; they queue output
    with `send(data)` and ask for the end with `finish()` (close once the output is
    flushed).
    """

    wants_input = True

    def __init__(self, loop: Loop, conn: socket.socket, on_close: OnClose, *,
                 greeting: bytes = b"", output: bytes = b"", finish: bool = False) -> None:
        self.loop = loop
        self.conn = conn
        self._on_close = on_close
        # Written first: the greeting (not copied), then the output queued after it.
        self._head = memoryview(greeting) if greeting else _NOTHING
        self._out = bytearray(output)
        # finish=True: `greeting` and `output` are all there is (set before the first
        # write).
        self._finishing = finish
        if finish:
            self.wants_input = False
        self._closed = False
        self._mask = 0          # the events registered with the loop (0: not registered)
        self._starting = True   # on_close must wait until the creator has the session
        conn.setblocking(False)
        self._ready(READ | WRITE)
        self._starting = False

    # -- hooks --------------------------------------------------------------
    def received(self, data: bytes) -> None:
        """Bytes arrived from the peer."""

    def eof(self) -> None:
        """The peer shut down its sending side; by default, end after flushing."""
        self.finish()

    def refill(self) -> bool:
        """Called when output is below the limit; queue more and return True if any."""
        return False

    def producing(self) -> bool:
        """True while refill() would queue more output (chargen)."""
        return False

    # -- used by subclasses ---------------------------------------------------
    def send(self, data: bytes) -> None:
        self._out += data

    def finish(self) -> None:
        """Close once every queued byte has been written."""
        self._finishing = True
        self.wants_input = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self._head) + len(self._out)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._head = _NOTHING
        if self._mask:
            self._mask = 0
            self.loop.unregister(self.conn)
        self.conn.close()
        if self._starting:
            self.loop.call_soon(self._on_close)
        else:
            self._on_close()

    # -- loop side ------------------------------------------------------------
    # `pending` is written out below: these run several times per connection, and the
    # property is a call each time.
    def _events(self) -> int:
        pending = len(self._head) + len(self._out)
        events = 0
        if self.wants_input and not self._finishing and pending < OUTPUT_LIMIT:
            events |= READ
        if pending or (self.producing() and not self._finishing):
            events |= WRITE
        return events

    def _update(self) -> None:
        if self._closed:
            return
        if self._finishing and not (self._head or self._out):
            discard_input(self.conn)
            self.close()
            return
        events = self._events()
        if events == 0 and not self._finishing:
            # Neither reading nor writing nor producing: nothing can happen any more.
            self.close()
            return
        if events != self._mask:
            if not self._mask:
                self.loop.register(self.conn, events, self._ready)
            elif events:
                self.loop.modify(self.conn, events, self._ready)
            else:
                self.loop.unregister(self.conn)
            self._mask = events

    def _ready(self, mask: int) -> None:
        if self._closed:
            return
        try:
            if mask & WRITE:
                self._write()
            if mask & READ:
                self._read_available()
                if self._head or self._out:
                    # Written at once: the socket is almost always writable.
                    self._write()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            # Reset, broken pipe, timeout...: the peer is gone; nothing to report.
            self.close()
            return
        self._update()

    def _read_available(self) -> None:
        """Read until the socket would block, EOF or the output limit; a bounded number
        of reads (a peer streaming fast must not keep the loop here)."""
        for _ in range(READS_PER_WAKEUP):
            if not self._events() & READ:
                return
            try:
                self._read()
            except (BlockingIOError, InterruptedError):
                return

    def _read(self) -> None:
        room = max(1, min(RECV_SIZE, OUTPUT_LIMIT - len(self._head) - len(self._out)))
        data = self.conn.recv(room)
        if not data:
            self.eof()
            return
        self.received(data)

    def _write(self) -> None:
        # Once finishing, the close follows the last byte: MSG_MORE lets the kernel put
        # the FIN in the same segment as the end of the output (one packet less).
        flags = socket.MSG_MORE if self._finishing else 0
        # A bounded number of sends per wake-up: a fast reader of chargen must not
        # keep the loop here forever.
        for _ in range(WRITES_PER_WAKEUP):
            if self._head:
                sent = self.conn.send(self._head, flags)
                # The rest as a view of the same bytes; none left: let them go.
                self._head = self._head[sent:] if sent < len(self._head) else _NOTHING
                if self._head:
                    return  # the socket buffer is full; wait for the next readiness
                continue
            if not self._out and (self._finishing or not self.refill()):
                return
            sent = self.conn.send(self._out, flags)
            del self._out[:sent]
            if self._out:
                return      # the socket buffer is full; wait for the next readiness
