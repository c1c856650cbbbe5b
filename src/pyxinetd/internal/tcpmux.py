"""tcpmux (RFC 1078): read a service name, then hand the connection to that service.

Differences from xinetd, all deliberate (docs/compatibility.md):
- the name line is read with MSG_PEEK and only the line itself is consumed, so bytes
  the client sent right after it stay queued for the selected server (xinetd read
  once, up to 1024 bytes, and closed without a reply when that read held more than
  the line);
- a name split over several segments is waited for (up to NAME_TIMEOUT seconds)
  instead of failing on the first read;
- the replies carry no trailing NUL byte (xinetd sent `+Go\\r\\n\\0` and
  `-Service name not found\\r\\n\\0`; RFC 1078 has no NUL, and a client that takes the
  NUL for the first byte of the server's output is confused by it);
- `help` lists the TCPMUX service names, one per CRLF-terminated line, as RFC 1078
  asks (a configured service literally named `help` still wins);
- a TCPMUXPLUS client's `+Go` is sent once its service admitted it
  (`acknowledge`, called where the server is started; a service served in the loop,
  a redirect or a builtin, writes it first in its greeting): after the banners of its
  hosts.allow/hosts.deny rule, as xinetd sends them, and before its `banner_success`;
  a refused client never gets it (xinetd sent it when the service had a
  `banner_fail`).
As in xinetd, a line of 2 bytes or less, one ending in a bare LF (even with more bytes
after it), or one not ending in CRLF within MAX_LINE bytes (over all its segments),
closes the connection without a reply.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from pyxinetd.config.model import ServiceConfig
from pyxinetd.internal.session import OnClose, Peer, discard_input
from pyxinetd.loop import READ, WRITE, Loop
from pyxinetd.textbytes import as_written
from pyxinetd.timers import Timer

MAX_LINE = 1024
NAME_TIMEOUT = 60.0
GO = b"+Go\r\n"
NOT_FOUND = b"-Service name not found\r\n"

Lookup = Callable[[str], "ServiceConfig | None"]
Launch = Callable[[ServiceConfig, socket.socket, Peer], None]


class TcpmuxSession:
    def __init__(self, loop: Loop, conn: socket.socket, peer: Peer, lookup: Lookup,
                 launch: Launch, on_close: OnClose, *,
                 names: Callable[[], Sequence[str]] | None = None,
                 greeting: bytes = b"", report: Callable[[str], None] | None = None
                 ) -> None:
        self.loop = loop
        self.conn = conn
        self.peer = peer
        self._lookup = lookup
        self._launch = launch
        self._on_close = on_close
        self._names = names
        # xinetd's ERROR for a client gone (EOF or reset) before its name's line end.
        self._report = report
        self._closed = False
        self._reply = bytearray()
        self._line = bytearray()
        # The tcpmux service's own banner_success: written before the name is read, so
        # that it comes before any reply and before the selected server's output.
        # A view of the caller's bytes, not a copy (a banner shared by many sessions).
        self._greeting = memoryview(greeting)
        conn.setblocking(False)
        self._timer: Timer | None = loop.call_later(NAME_TIMEOUT, self._name_too_late)
        loop.register(conn, WRITE if greeting else READ, self._ready)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._detach()
        self.conn.close()
        self._on_close()

    def _name_too_late(self) -> None:
        # Bytes of a name not read yet (they came with the deadline) would turn the
        # close into a reset: the client gets the FIN, as for a reply.
        discard_input(self.conn)
        self.close()

    def _detach(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.loop.unregister(self.conn)

    def _ready(self, mask: int) -> None:
        if self._closed:
            return
        try:
            if self._greeting:
                self._write_greeting()
            elif self._reply:
                self._write_reply()
            elif mask & READ:
                self._read_name()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._read_failed()     # reset while its name was awaited?
            self.close()

    def _read_failed(self) -> None:
        """xinetd's tcpmux reads the name once: a read that gets nothing (EOF, reset)
        is its `read failed`; bytes that make no name close silently."""
        if self._report is not None and not self._line and not self._reply:
            self._report("read failed")

    def _write_greeting(self) -> None:
        while self._greeting:
            sent = self.conn.send(self._greeting)
            self._greeting = self._greeting[sent:]
        self._greeting = memoryview(b"")    # lets the banner go
        self.loop.modify(self.conn, READ, self._ready)

    def _read_name(self) -> None:
        # Peek, then consume only up to the end of the line. Bytes before the CRLF are
        # part of the name and are taken into self._line (leaving them queued would
        # keep the socket readable and spin the loop).
        queued = self.conn.recv(MAX_LINE, socket.MSG_PEEK)
        if not queued:
            self._read_failed()     # EOF before a full line
            self.close()
            return
        tail = bytes(self._line[-1:])     # a CR already taken may start the CRLF
        end = (tail + queued).find(b"\r\n")
        if end < 0:
            self._line += self.conn.recv(len(queued))
            if len(self._line) >= MAX_LINE or b"\n" in self._line:
                # Far too long for a service name; or a line that ended without its
                # CR (`echo name | nc`), whether or not more followed it: no CRLF can
                # make that a name any more, so it is closed without a reply at once,
                # as xinetd does (waiting would hold the connection for NAME_TIMEOUT).
                self.close()
            return
        self._line += self.conn.recv(end + 2 - len(tail))   # up to the CRLF, no further
        line = bytes(self._line)
        if len(line) <= 2 or len(line) > MAX_LINE:
            # An empty name; or a line that arrived in several segments and ended past
            # MAX_LINE bytes, which in one segment would have been closed above.
            self.close()
            return
        # Decoded as the configuration is (UTF-8, other bytes as surrogate escapes),
        # so that a name matches the service whose name has its bytes, whatever the
        # encoding; the listing gives each name back as those bytes. Up to a NUL, as
        # xinetd reads it (a C string): `plus\0junk` asks for plus.
        name = line[:-2].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        service = self._lookup(name)
        if service is not None:
            self._start(service)
        elif name.lower() == "help" and self._names is not None:
            self._answer(b"".join(as_written(n) + b"\r\n" for n in self._names()))
        else:
            self._answer(NOT_FOUND)

    def _answer(self, reply: bytes) -> None:
        """Send a reply, then close; what does not fit now goes on write readiness."""
        self._reply += reply
        self.loop.modify(self.conn, WRITE, self._ready)
        self._write_reply()

    def _write_reply(self) -> None:
        while self._reply:
            sent = self.conn.send(self._reply)
            del self._reply[:sent]
        # What the client sent after the line (xinetd read it with the name) would turn
        # the close into a reset.
        discard_input(self.conn)
        self.close()

    def _start(self, service: ServiceConfig) -> None:
        self._detach()
        conn = self.conn
        conn.setblocking(True)   # the server inherits the file status flags
        try:
            self._launch(service, conn, self.peer)
        finally:
            self._on_close()


def acknowledgement(service: ServiceConfig) -> bytes:
    """What an admitted client of `service` is sent first: `+Go` for TCPMUXPLUS."""
    return GO if "TCPMUXPLUS" in service.types else b""


def acknowledge(service: ServiceConfig, conn: socket.socket) -> None:
    """Send a TCPMUXPLUS client its `+Go`, once its service's own checks admitted it
    (their hosts.allow/hosts.deny banners already sent): RFC 1078's `+` means the
    service is started, so a refused client must not get it."""
    if "TCPMUXPLUS" not in service.types:
        return      # every other service: asked per connection, so no further call
    try:
        conn.send(GO, socket.MSG_DONTWAIT)
    except OSError:
        pass    # 5 bytes on a fresh connection: fails only if the peer is gone
