"""daytime (RFC 867) and time (RFC 868), and the one-shot reply session they share.

daytime is xinetd's text: `DD MON YYYY HH:MM:SS ZONE\r\n` in local time with the month
in upper case (`26 NOV 2026 19:02:55 UTC`). time is 4 bytes, big-endian, seconds since
1900-01-01 00:00 UTC, modulo 2**32 (RFC 868 wraps in 2036).
"""

from __future__ import annotations

import socket
import struct
import time

from pyxinetd.internal.session import OnClose, StreamSession
from pyxinetd.localzone import local_time
from pyxinetd.loop import Loop

SECONDS_1900_TO_1970 = 2208988800

# Month abbreviations are fixed English words whatever the locale (strftime's %b is not).
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN",
           "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def daytime_text(now: float | None = None) -> bytes:
    t = local_time(now)
    zone = time.strftime("%Z", t)
    text = (f"{t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {zone}\r\n")
    return text.encode("ascii", "replace")


def time_bytes(now: float | None = None) -> bytes:
    seconds = int(time.time() if now is None else now)
    return struct.pack("!I", (seconds + SECONDS_1900_TO_1970) & 0xFFFFFFFF)


class ReplySession(StreamSession):
    """Writes one fixed reply and closes: daytime, time, servers, services.

    Nothing is read (input is left unread, as xinetd does), so the session ends as
    soon as the reply has been handed to the kernel.
    """

    wants_input = False

    def __init__(self, loop: Loop, conn: socket.socket, on_close: OnClose,
                 reply: bytes, greeting: bytes = b"") -> None:
        # The reply goes out at once (or on write readiness), after the greeting, then
        # the session closes.
        super().__init__(loop, conn, on_close, greeting=greeting, output=reply, finish=True)


def reply_session(loop: Loop, conn: socket.socket, on_close: OnClose,
                  reply: bytes, greeting: bytes = b"") -> ReplySession:
    return ReplySession(loop, conn, on_close, reply, greeting)
