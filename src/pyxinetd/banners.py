"""The `banner`, `banner_success` and `banner_fail` files, written at xinetd's moments.

Reference §4.4: for every request the master writes
  1. `banner` first, before any check (banner());
  2. after a refusal, `banner_fail` (banner_fail()), then closes the connection;
  3. after every check passed, `banner_success` (banner_success()), then the service
     starts.
The file is read afresh at every use (editing it needs no reload, as in xinetd). A file
that cannot be opened is skipped, and `log_error` receives the program-log text
`service = ID, open of banner F failed` (the master logs it at ERROR level); so is a
path that is not a regular file (a FIFO would block the loop, /dev/zero never end), and
no more than BANNER_LIMIT bytes of a file are sent.

Writing never blocks the loop:
- for a connection about to go to a spawned server, or to be closed after
  banner_fail, the write is a best-effort non-blocking send (MSG_DONTWAIT): a banner
  larger than the free space of the socket's send buffer (usually hundreds of KiB on
  a fresh connection) is cut short. Each function returns the bytes it could not send;
- for in-loop services (builtins, redirect), pass that remainder plus
  load(service, SUCCESS, ...) as the session's `greeting`: the session writes it on
  write readiness before anything else, so nothing is cut and the order is kept.
On datagram services the write fails silently (there is no connected peer), as in xinetd.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable

from pyxinetd.config.model import ServiceConfig
from pyxinetd.files import READ_LIMIT, read_regular

LogError = Callable[[str], None]
# The most of a banner file that is read and sent.
BANNER_LIMIT = READ_LIMIT


class Moment(str, enum.Enum):
    """Which banner attribute: the value is the attribute's name."""

    BANNER = "banner"
    SUCCESS = "banner_success"
    FAIL = "banner_fail"


def banner_path(service: ServiceConfig, moment: Moment) -> str | None:
    if moment is Moment.BANNER:
        return service.banner
    if moment is Moment.SUCCESS:
        return service.banner_success
    return service.banner_fail


def read_banner(path: str) -> bytes | None:
    """The banner file's bytes (at most BANNER_LIMIT), or None when it cannot be read."""
    return read_regular(path, BANNER_LIMIT)


def open_failed_message(service: ServiceConfig, path: str) -> str:
    return f"service = {service.id}, open of banner {path} failed"


def load(service: ServiceConfig, moment: Moment, log_error: LogError) -> bytes:
    """The banner for `moment`, b"" when none is configured or the file cannot be read."""
    path = banner_path(service, moment)
    if path is None:
        return b""
    data = read_banner(path)
    if data is None:
        log_error(open_failed_message(service, path))
        return b""
    return data


def send_now(sock: socket.socket, data: bytes) -> bytes:
    """Send what the socket accepts right now without blocking; return the rest."""
    if not data:
        return b""
    try:
        sent = sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
    except OSError:
        return data     # full, reset, or not connected (a dgram service socket)
    return data[sent:]


def write(service: ServiceConfig, sock: socket.socket, moment: Moment,
          log_error: LogError) -> bytes:
    """Write the `moment` banner to `sock` (best effort); return the unsent bytes."""
    return send_now(sock, load(service, moment, log_error))


def banner(service: ServiceConfig, sock: socket.socket, log_error: LogError) -> bytes:
    """Moment 1: before any check, whatever the outcome."""
    return write(service, sock, Moment.BANNER, log_error)


def banner_fail(service: ServiceConfig, sock: socket.socket, log_error: LogError) -> bytes:
    """Moment 2: after a refusal, before the connection is closed."""
    return write(service, sock, Moment.FAIL, log_error)


def banner_success(service: ServiceConfig, sock: socket.socket,
                   log_error: LogError) -> bytes:
    """Moment 3: every check passed; the server is about to start."""
    return write(service, sock, Moment.SUCCESS, log_error)
