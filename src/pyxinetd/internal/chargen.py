"""chargen (RFC 864) with xinetd's exact bytes.

Lines are 72 printable characters then CRLF. The characters cycle through the 93 bytes
`!` (33) to `}` (125): xinetd leaves out the space and `~`. Each line starts one
character further in the cycle than the one before, but the line counter wraps at 95,
not 93 (measured on xinetd 2.3.15.3): lines 93 and 94 start again at `!` and `"`, and
line 95 starts at `!` like line 0. A datagram reply is exactly 1024
bytes: 13 full lines and a 60-character line, each line advancing the cycle by one;
the position is process-wide and persists from one datagram to the next (as in xinetd,
where it is a static of the daemon). A stream session starts at that same position and
then runs its own count without moving it (xinetd's forked child starts from its copy
of the daemon's position: `!` only until the first datagram was answered).
"""

from __future__ import annotations

import socket

from pyxinetd.internal.session import OnClose, StreamSession
from pyxinetd.loop import Loop

RING = bytes(range(ord("!"), ord("}") + 1))
# Number of distinct lines before the output repeats (see the module docstring).
CYCLE = len(RING) + 2
LINE_CHARS = 72
LINE_LENGTH = LINE_CHARS + 2
DATAGRAM_SIZE = 1024
# How much one refill queues: whole lines, about 8 KiB.
_REFILL_LINES = 8192 // LINE_LENGTH

_DOUBLE_RING = RING + RING


def line(number: int, chars: int = LINE_CHARS) -> bytes:
    """Line `number` of the output (counted from 0), CRLF included."""
    start = (number % CYCLE) % len(RING)
    return _DOUBLE_RING[start:start + chars] + b"\r\n"


_LINES = tuple(line(i) for i in range(CYCLE))


def lines(first: int, count: int) -> bytes:
    """`count` consecutive full lines, starting with line number `first`."""
    return b"".join(_LINES[(first + i) % CYCLE] for i in range(count))


class _DatagramCycle:
    """The process-wide position of the dgram chargen."""

    def __init__(self) -> None:
        self.position = 0

    def next_reply(self) -> bytes:
        full = (DATAGRAM_SIZE - 2) // LINE_LENGTH        # 13 full lines
        rest = DATAGRAM_SIZE - full * LINE_LENGTH - 2     # then 60 characters
        data = lines(self.position, full) + line(self.position + full, rest)
        self.position = (self.position + full + 1) % CYCLE
        return data


DATAGRAM_CYCLE = _DatagramCycle()


class ChargenSession(StreamSession):
    """Writes lines forever, only on write readiness; never reads (xinetd shuts the
    reading side down); ends when a write fails."""

    wants_input = False

    def __init__(self, loop: Loop, conn: socket.socket, on_close: OnClose, *,
                 greeting: bytes = b"") -> None:
        self._position = DATAGRAM_CYCLE.position
        try:
            conn.shutdown(socket.SHUT_RD)
        except OSError:
            pass    # already reset: the first write will end the session
        super().__init__(loop, conn, on_close, greeting=greeting)

    def producing(self) -> bool:
        return True

    def refill(self) -> bool:
        self.send(lines(self._position, _REFILL_LINES))
        self._position = (self._position + _REFILL_LINES) % CYCLE
        return True
