"""The `banner`, `banner_success` and `banner_fail` files, written at xinetd's moments.

Reference §4.4: for every request the master writes
  1. `banner` first, before any check (banner());
  2. after a refusal, `banner_fail` (banner_fail()), then closes the connection;
  3. after every check passed, `banner_success` (banner_success()), then the service
     starts.
The file is read afresh at every use (editing it needs no reload, as in xinetd); a read
that gives the same bytes as the last one returns that same object (read_banner), so
the in-loop sessions holding a large banner share it. A file
that cannot be opened is skipped, and `log_error` receives the program-log text
`service = ID, open of banner F failed: WHY (client A)` (the master logs it at ERROR
level; xinetd's text stops before the colon and names neither the cause nor the
client); so is a path that is not a regular file (a FIFO would block the loop,
/dev/zero never end), and no more than BANNER_LIMIT bytes of a file are sent.

Writing never blocks the loop:
- `banner`, `banner_fail`, and `banner_success` for a connection about to go to a
  spawned server, are a best-effort non-blocking send (MSG_DONTWAIT): a banner larger
  than the free space of the socket's send buffer (usually hundreds of KiB on a fresh
  connection) is cut short (each function returns the bytes it could not send, which
  the dispatcher drops);
- for in-loop services (builtins, redirect, tcpmux), `banner_success` is read with
  load(service, SUCCESS, ...) and given whole to the session as its `greeting`: the
  session writes it on write readiness before anything else, so nothing is cut and the
  order is kept.
Datagram builtins never send one (the loader warns: there is no connection to write
it on); on another datagram service the write fails silently (no connected peer), as
in xinetd.
"""

from __future__ import annotations

import enum
import socket
import sys
from collections.abc import Callable

from pyxinetd.config.model import ServiceConfig
from pyxinetd.filerights import Rights, read_for, read_problem, rights_of
from pyxinetd.files import READ_LIMIT
from pyxinetd.listener import peer_text

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


# The last bytes read from each banner file. A connection whose banner reads the same
# gets this very object: an in-loop session queues its banner without copying it, so
# clients that never read cost the daemon one copy of a large banner in all, not one
# each (the fresh read is dropped at once). Kept: the last _SHARED_FILES files read,
# and any other whose copy a session still holds (dropped, the next client of that
# file would get a copy of its own, and clients cycling through more banner files than
# that would each hold one).
_SHARED_FILES = 4
_shared: dict[str, bytes] = {}
# sys.getrefcount() of a cached copy no session holds: the cache's and the argument's.
_CACHE_ONLY = 2


def read_banner(path: str, rights: Rights | None = None) -> bytes | None:
    """The banner file's bytes (at most BANNER_LIMIT), or None when it cannot be read,
    read with `rights` where a user other than root can change the path
    (pyxinetd.filerights; None: the daemon's own). Read afresh at every call; equal
    contents come back as one shared object."""
    data = read_for(path, rights, BANNER_LIMIT)
    if data is None:
        return None
    known = _shared.pop(path, None)
    if known is not None and known == data:
        data = known
    _shared[path] = data    # the most recent last, the oldest dropped first
    if len(_shared) > _SHARED_FILES:
        for older in list(_shared)[:-_SHARED_FILES]:
            if sys.getrefcount(_shared[older]) <= _CACHE_ONLY:
                del _shared[older]
    return data




def open_failed_message(service: ServiceConfig, path: str, client: str | None = None
                        ) -> str:
    """xinetd's text, then why the file was skipped and the client it was meant for."""
    why = read_problem(path, rights_of(service))
    text = f"service = {service.id}, open of banner {path} failed: {why}"
    return text if client is None else f"{text} (client {client})"


def client_of(sock: socket.socket) -> str | None:
    """The connected client as `from=` writes it; None on a datagram service socket
    (or any socket without an IP peer)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        return peer_text(sock.getpeername())
    except OSError:
        return None


def load(service: ServiceConfig, moment: Moment, log_error: LogError,
         client: str | None = None) -> bytes:
    """The banner for `moment`, b"" when none is configured or the file cannot be read
    (`client`: who it was for, named in the message)."""
    path = banner_path(service, moment)
    if path is None:
        return b""
    data = read_banner(path, rights_of(service))
    if data is None:
        log_error(open_failed_message(service, path, client))
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
          log_error: LogError, client: str | None = None) -> bytes:
    """Write the `moment` banner to `sock` (best effort); return the unsent bytes.

    `client` is the peer as `from=` writes it; the socket's own peer name is no
    substitute for an IPv4 client of a dual-stack service, whose accepted socket was
    turned into an IPv4 one (listener.accept_batch) and so names it `a.b.c.d`, not
    `::ffff:a.b.c.d` as its other lines do."""
    path = banner_path(service, moment)
    if path is None:
        return b""
    data = read_banner(path, rights_of(service))
    if data is None:
        who = client if client is not None else client_of(sock)
        log_error(open_failed_message(service, path, who))
        return b""
    return send_now(sock, data)


def banner(service: ServiceConfig, sock: socket.socket, log_error: LogError,
           client: str | None = None) -> bytes:
    """Moment 1: before any check, whatever the outcome."""
    return write(service, sock, Moment.BANNER, log_error, client)


def banner_fail(service: ServiceConfig, sock: socket.socket, log_error: LogError,
                client: str | None = None) -> bytes:
    """Moment 2: after a refusal, before the connection is closed."""
    return write(service, sock, Moment.FAIL, log_error, client)


def banner_success(service: ServiceConfig, sock: socket.socket,
                   log_error: LogError, client: str | None = None) -> bytes:
    """Moment 3: every check passed; the server is about to start."""
    return write(service, sock, Moment.SUCCESS, log_error, client)
