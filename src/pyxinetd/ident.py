"""An RFC 1413 (ident) client driven by the master's loop (reference §4.11).

xinetd asks the client host's identd who owns a connection from a forked child, with a
blocking connect/write/read under alarm(). Here one `IdentQuery` is a small state
machine on the Loop instead: a non-blocking socket bound to the connection's local
address (port 0), connected to the peer's port 113; `REMOTEPORT,LOCALPORT\\r\\n` is
written once the socket is writable; the reply is read until the first CRLF, at most
MAX_REPLY bytes; a deadline timer bounds the whole exchange. Nothing here blocks, and a
query that is cancelled never calls back.

The outcome and its wording are xinetd's (`idresult_explain`), because they appear in
`NOID` log lines. The failure messages start with xinetd's text and then name the
client and the identity server (`Endpoints.about`): xinetd's name neither. What counts as a good reply is xinetd's too (`verify_line`): the two
port numbers must be the ones asked about, the keyword must be `USERID`, and what
follows the colon after it (leading white space skipped) is the text xinetd logs,
e.g. `UNIX : alice`. xinetd keeps that text byte for byte; pyxinetd writes control
characters other than tab as `?`, so a remote identd cannot forge log lines.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pyxinetd.log import strerror
from pyxinetd.loop import READ, WRITE, Loop
from pyxinetd.timers import Timer

IDENT_PORT = 113
# xinetd reads the reply into a 1024-byte buffer; the CRLF must arrive within it.
MAX_REPLY = 1024
USERID_KEYWORD = b"USERID"
# C's isspace() in the "C" locale: what xinetd skips around the fields.
_C_SPACE = b" \t\n\v\f\r"
# strtol() as xinetd's parse_base10 uses it: optional blanks and sign, base-10 digits,
# then only blanks.
_PORT_RE = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")
_INT_MAX = 2**31 - 1
# Control characters (tab excepted) are replaced in what reaches the logs.
_UNPRINTABLE = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"
_SANITIZE = bytes.maketrans(_UNPRINTABLE, b"?" * len(_UNPRINTABLE))
# The line breaks Unicode adds (NEL, LINE and PARAGRAPH SEPARATOR): a reader that splits
# decoded text with str.splitlines() would see a forged second log line there. And the
# other C1 controls (a terminal showing the log takes U+009B for an escape sequence's
# start) and the marks that turn the direction of text (a log line shown other than
# written).
_UNICODE_BREAKS = str.maketrans(
    {chr(c): "?" for c in (*range(0x80, 0xA0), 0x2028, 0x2029, 0x200E, 0x200F,
                           *range(0x202A, 0x202F), *range(0x2066, 0x206A))})


class Outcome(enum.Enum):
    """How a query ended, with xinetd's explanation (the REASON of `NOID` lines)."""

    OK = "no error"
    NO_SERVER = "no server"
    TIMEOUT = "timeout"
    ERROR = "system error"
    RESPONSE_ERROR = "error while receiving response"
    BAD_RESPONSE = "bad response"

    @property
    def reason(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class IdentResult:
    outcome: Outcome
    # The text after `USERID :` (OK only), as it goes into the `USERID` line.
    userid: str | None = None


# Reported to the program log as (function, text), the way xinetd's child does.
Report = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The connection being identified, seen from our side: we connect from our
    address on it (port 0) to the client's address, port 113."""

    family: int
    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    scope_id: int = 0             # IPv6 link-local addresses
    ident_port: int = IDENT_PORT  # another port only in tests
    # The client's address as messages name it (empty: remote_host). The caller
    # passes the `from=` text: an IPv4 client of a dual-stack service is then
    # `::ffff:a.b.c.d`, as in xinetd's `Bad line received from identity server at A`
    # (xinetd prints the address of its AF_INET6 socket).
    peer_name: str = ""

    @property
    def shown_host(self) -> str:
        return self.peer_name or self.remote_host

    def about(self) -> str:
        """What failure messages append after xinetd's wording, so that they name the
        client and the identity server asked (xinetd's text alone names neither):
        `(client A port P, identity server A port 113)`."""
        return (f"(client {self.shown_host} port {self.remote_port}, "
                f"identity server {self.remote_host} port {self.ident_port})")

    def query(self) -> bytes:
        """The request line: the port on the client's host first (RFC 1413)."""
        return f"{self.remote_port},{self.local_port}\r\n".encode()

    def bind_address(self) -> tuple[str, int] | tuple[str, int, int, int]:
        if self.family == socket.AF_INET6:
            return (self.local_host, 0, 0, self.scope_id)
        return (self.local_host, 0)

    def ident_address(self) -> tuple[str, int] | tuple[str, int, int, int]:
        if self.family == socket.AF_INET6:
            return (self.remote_host, self.ident_port, 0, self.scope_id)
        return (self.remote_host, self.ident_port)


def endpoints_of(conn: socket.socket) -> Endpoints:
    """The addresses of an accepted TCP connection; raises OSError (e.g. ENOTCONN).

    An IPv4 client on a dual-stack socket is asked over IPv4: its identd listens
    there, and the accepted socket may already have been turned into an IPv4 one
    (IPV6_ADDRFORM), in which case the kernel reports plain IPv4 addresses anyway.
    """
    local = conn.getsockname()
    remote = conn.getpeername()
    local_host, local_port = str(local[0]), int(local[1])
    remote_host, remote_port = str(remote[0]), int(remote[1])
    if len(remote) == 4:
        mapped_remote = _unmapped(remote_host)
        mapped_local = _unmapped(local_host)
        if mapped_remote is not None and mapped_local is not None:
            return Endpoints(socket.AF_INET, mapped_local, local_port,
                             mapped_remote, remote_port)
        return Endpoints(socket.AF_INET6, local_host, local_port, remote_host, remote_port,
                         scope_id=int(remote[3]))
    return Endpoints(socket.AF_INET, local_host, local_port, remote_host, remote_port)


def _unmapped(host: str) -> str | None:
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return None
    return None if address.ipv4_mapped is None else str(address.ipv4_mapped)


def printable(data: bytes) -> str:
    """Bytes from the network as they may go into a log line."""
    return data.translate(_SANITIZE).decode("utf-8", errors="replace").translate(
        _UNICODE_BREAKS)


def _port(field: bytes) -> int | None:
    match = _PORT_RE.fullmatch(field)
    if match is None:
        return None
    value = int(match.group(1))
    return value if 0 <= value <= _INT_MAX else None


def parse_reply(line: bytes, remote_port: int, local_port: int) -> bytes | None:
    """The user id text of a reply line (CRLF removed), or None when it is not a
    well-formed USERID reply about this port pair (xinetd: `bad response`).

    `remote_port , local_port : USERID : OS : user` gives `OS : user`: everything after
    the colon that follows the keyword, leading white space skipped, the rest kept.
    """
    # xinetd handles the line as a C string: it ends at the first NUL.
    line = line.split(b"\0", 1)[0]
    first, comma, rest = line.partition(b",")
    if not comma or _port(first) != remote_port:
        return None
    second, colon, rest = rest.partition(b":")
    if not colon or _port(second) != local_port:
        return None
    rest = rest.lstrip(_C_SPACE)
    if not rest.startswith(USERID_KEYWORD):
        return None
    rest = rest[len(USERID_KEYWORD):].lstrip(_C_SPACE)
    if not rest.startswith(b":"):
        return None
    text = rest[1:].lstrip(_C_SPACE)
    return text or None


def split_reply(buffer: bytes) -> bytes | None:
    """The first CRLF-terminated line within the first MAX_REPLY bytes (CRLF
    removed), or None when there is none yet."""
    end = buffer.find(b"\r\n", 0, MAX_REPLY)
    return None if end < 0 else buffer[:end]


class IdentQuery:
    """One ident exchange on the loop. `done(result)` is called exactly once, from a
    loop callback (never from start()), unless cancel() comes first."""

    def __init__(self, loop: Loop, where: Endpoints, timeout: float,
                 done: Callable[[IdentResult], None], report: Report) -> None:
        self._loop = loop
        self._where = where
        self._timeout = timeout
        self._done: Callable[[IdentResult], None] | None = done
        self._report = report
        self._sock: socket.socket | None = None
        self._timer: Timer | None = None
        self._out = where.query()
        self._in = b""

    @property
    def finished(self) -> bool:
        return self._done is None

    def start(self) -> None:
        self._timer = self._loop.call_later(self._timeout, self._timed_out)
        try:
            sock = socket.socket(self._where.family, socket.SOCK_STREAM)
        except OSError as err:
            self._fail_soon(Outcome.ERROR, f"socket creation: {strerror(err)} "
                                           f"{self._where.about()}")
            return
        self._sock = sock
        sock.setblocking(False)
        try:
            # From the address the client reached, so multi-homed hosts are asked
            # about the right connection.
            sock.bind(self._where.bind_address())
        except OSError as err:
            self._fail_soon(Outcome.ERROR, f"socket bind: {strerror(err)} "
                                           f"{self._where.about()}")
            return
        code = sock.connect_ex(self._where.ident_address())
        if code not in (0, errno.EINPROGRESS):
            self._fail_soon(Outcome.NO_SERVER)
            return
        self._loop.register(sock, WRITE, self._on_connect)

    def cancel(self) -> None:
        """Forget the query: close its socket; `done` will not be called."""
        self._done = None
        self._close()

    # -- the exchange ------------------------------------------------------
    def _on_connect(self, mask: int) -> None:
        sock = self._sock
        assert sock is not None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code != 0:
            # Refused, unreachable, reset: xinetd's `no server`, logged by nobody.
            self._finish(IdentResult(Outcome.NO_SERVER))
            return
        self._loop.modify(sock, WRITE, self._on_writable)
        self._on_writable(mask)

    def _on_writable(self, mask: int) -> None:
        sock = self._sock
        assert sock is not None
        try:
            sent = sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._finish(IdentResult(Outcome.ERROR))
            return
        self._out = self._out[sent:]
        if not self._out:
            self._loop.modify(sock, READ, self._on_readable)

    def _on_readable(self, mask: int) -> None:
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(MAX_REPLY - len(self._in))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._fail(Outcome.RESPONSE_ERROR, "get_line",
                       f"read: {strerror(err)} {self._where.about()}")
            return
        if not data:
            self._fail(Outcome.RESPONSE_ERROR, "get_line",
                       "identd server reply missing ending CR-LF "
                       f"{self._where.about()}")
            return
        self._in += data
        line = split_reply(self._in)
        if line is None:
            if len(self._in) >= MAX_REPLY:
                self._fail(Outcome.RESPONSE_ERROR, "get_line",
                           "Too much input from identity server "
                           f"{self._where.about()}")
            return
        text = parse_reply(line, self._where.remote_port, self._where.local_port)
        if text is None:
            shown = printable(line.split(b"\0", 1)[0])
            self._fail(Outcome.BAD_RESPONSE, "log_remote_user",
                       f"Bad line received from identity server at "
                       f"{self._where.shown_host}: {shown}")
            return
        self._finish(IdentResult(Outcome.OK, printable(text)))

    def _timed_out(self) -> None:
        self._timer = None
        self._finish(IdentResult(Outcome.TIMEOUT))

    # -- endings -------------------------------------------------------------
    def _fail(self, outcome: Outcome, func: str, text: str) -> None:
        if self._done is not None:
            self._report(func, text)
        self._finish(IdentResult(outcome))

    def _fail_soon(self, outcome: Outcome, text: str | None = None) -> None:
        # Failures inside start() are delivered from the loop, as every other ending.
        self._close()
        if text is not None:
            self._report("log_remote_user", text)
        self._loop.call_soon(lambda: self._finish(IdentResult(outcome)))

    def _finish(self, result: IdentResult) -> None:
        done, self._done = self._done, None
        self._close()
        if done is not None:
            done(result)

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._loop.unregister(self._sock)
            self._sock.close()
            self._sock = None
