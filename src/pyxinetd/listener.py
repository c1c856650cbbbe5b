"""Listening sockets: create, bind (with timer-driven retries) and accept.

As xinetd (reference §4.2): AF_INET6 is dual-stack unless the service sets v6only;
SO_REUSEADDR always; NODELAY/KEEPALIVE on the listener (Linux hands them to accepted
sockets); listen backlog 64. Unlike xinetd, a failed bind is retried from timers
(XINETD_BIND_DELAY microseconds apart, default 0) so the loop never sleeps.

A wildcard-bound datagram socket the daemon answers on learns each datagram's
destination (pyxinetd.replysource), so that replies leave from the address asked.

Every listener is non-blocking and close-on-exec; spawn() hands a listener to a
wait=yes server explicitly on fds 0-2.
"""

from __future__ import annotations

import _socket
import errno
import ipaddress
import os
import re
import resource
import socket
import struct
from collections.abc import Callable, Iterator

from pyxinetd import replysource
from pyxinetd.config.model import ServiceConfig, SocketType
from pyxinetd.errors import BindError
from pyxinetd.log import strerror
from pyxinetd.loop import Loop
from pyxinetd.timers import Timer

LISTEN_BACKLOG = 64
BIND_RETRIES = 10
BIND_DELAY_ENV = "XINETD_BIND_DELAY"
MAX_BIND_DELAY_US = 500_000
# atoi(): blanks, an optional sign, decimal digits; whatever follows is ignored.
_LEADING_INTEGER = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", re.ASCII)
# How many connections one readiness event may accept before the loop serves others.
ACCEPT_BATCH = 64
# Descriptors a batch leaves free for the handling of what it accepted: a banner file,
# a server's stderr file (or /dev/null), an ident or redirect socket each take one.
BATCH_RESERVE = 16
# Errors that mean "out of descriptors or memory" for now: an accept() that fails so
# pauses the listener rather than spinning, a socket() that fails so is tried again.
SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Errors about one connection only (the peer gave up before we accepted it).
ACCEPT_TRANSIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM,
                                     errno.EINTR})
IPV6_ADDRFORM = getattr(socket, "IPV6_ADDRFORM", 1)


def bind_delay(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """The pause between bind attempts in seconds, from XINETD_BIND_DELAY (µs).

    Read as xinetd reads it (atoi): leading blanks, a sign, then the digits up to the
    first other character (`20000us` is 20000, `1e5` is 1). A value over 500000 (or
    not positive) means no pause at all: xinetd ignores it rather than capping it.
    """
    match = _LEADING_INTEGER.match(environ.get(BIND_DELAY_ENV, ""))
    micros = int(match.group(1)) if match else 0
    if not 0 < micros <= MAX_BIND_DELAY_US:
        return 0.0
    return micros / 1_000_000


def _protocol(service: ServiceConfig) -> int:
    """The socket's protocol, as xinetd asks for it: the `protocol` attribute's number,
    so that `socket_type = stream` with `protocol = sctp` is SCTP, not TCP, and one the
    kernel does not pair with the socket type (stream over icmp) fails to be created,
    which deactivates the service. tcp and udp are the kernel's default (0)."""
    if service.socket_type is SocketType.RAW:
        return service.protocol_number
    return service.protocol_number if service.protocol not in ("tcp", "udp") else 0


def create_socket(service: ServiceConfig, warn: Callable[[str], None] | None = None,
                  quiet: frozenset[int] = frozenset()) -> socket.socket:
    """Create and configure the unbound socket; raises BindError.

    The BindError's text is the line xinetd logs; `warn` gets the IPv6 fallback notice,
    unless the IPv6 socket failed with an errno in `quiet` (a service short of
    descriptors, tried again each second: a notice each time would flood the log).
    """
    family = service.family
    try:
        sock = socket.socket(family, service.socket_type.kernel_type, _protocol(service))
    except OSError as err:
        if family != socket.AF_INET6 or service.bind is not None:
            raise BindError(f"socket creation failed ({strerror(err)}). "
                            f"service = {service.id}") from err
        if warn is not None and err.errno not in quiet:
            warn(f"IPv6 socket creation failed for service {service.id}, trying IPv4")
        family = socket.AF_INET
        try:
            sock = socket.socket(family, service.socket_type.kernel_type, _protocol(service))
        except OSError as err2:
            raise BindError(f"socket creation failed ({strerror(err2)}). "
                            f"service = {service.id}") from err2
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A raw IPv6 socket never sees IPv4 traffic, and Linux refuses IPV6_V6ONLY on
        # it (EINVAL: the socket already has its protocol as local "port").
        if family == socket.AF_INET6 and service.socket_type is not SocketType.RAW:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(service.v6only))
        set_connection_flags(sock, service)
        if answers_datagrams(service) and is_wildcard(service.bind):
            replysource.enable(sock, v6only=family == socket.AF_INET6 and service.v6only)
    except OSError as err:
        sock.close()
        raise BindError(f"setsockopt failed ({strerror(err)}). service = {service.id}") from err
    return sock


def answers_datagrams(service: ServiceConfig) -> bool:
    """Whether the daemon itself sends on the service's datagram socket: the builtins,
    the dgram/nowait relay and INTERCEPT. A dgram/wait server reads and answers on the
    socket itself and gets it without options it did not ask for."""
    return service.socket_type is SocketType.DGRAM and (
        service.is_internal or not service.wait or "INTERCEPT" in service.flags)


def is_wildcard(bind: str | None) -> bool:
    """Whether a service bound to `bind` listens on every address (no `bind`, 0.0.0.0,
    :: or ::ffff:0.0.0.0), so that its replies must name their source
    (pyxinetd.replysource)."""
    if bind is None:
        return True
    try:
        address = ipaddress.ip_address(bind.partition("%")[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_unspecified or (mapped is not None and mapped.is_unspecified)


def set_connection_flags(sock: socket.socket, service: ServiceConfig) -> None:
    """NODELAY and KEEPALIVE on a TCP listener (Linux hands them on to every accepted
    connection). Raises OSError."""
    if service.socket_type is SocketType.STREAM and service.protocol == "tcp":
        if "NODELAY" in service.flags:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if "KEEPALIVE" in service.flags:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def readjust_options(sock: socket.socket, old: ServiceConfig, new: ServiceConfig) -> None:
    """A reload kept the socket of `old` for `new`: the options that follow the
    configuration set as `new` wants them (NODELAY and KEEPALIVE off again when
    dropped; the datagram destinations of pyxinetd.replysource asked for when the
    daemon now answers on the socket, INTERCEPT added, and no longer asked for when a
    server reads it itself). Raises OSError."""
    if new.socket_type is SocketType.STREAM and new.protocol == "tcp":
        for flag, level, option in (("NODELAY", socket.IPPROTO_TCP, socket.TCP_NODELAY),
                                    ("KEEPALIVE", socket.SOL_SOCKET, socket.SO_KEEPALIVE)):
            wanted = flag in new.flags
            if wanted != (flag in old.flags):
                sock.setsockopt(level, option, int(wanted))
    had = answers_datagrams(old) and is_wildcard(old.bind)
    wants = answers_datagrams(new) and is_wildcard(new.bind)
    if wants and not had:
        replysource.enable(sock, v6only=sock.family == socket.AF_INET6 and new.v6only)
    elif had and not wants:
        replysource.disable(sock)


def bind_socket(sock: socket.socket, service: ServiceConfig) -> None:
    """Bind (and listen, for connection-oriented types); raises OSError for a retry."""
    family = sock.family
    host = service.bind or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    port = service.port or 0
    sock.bind(_sockaddr(family, host, port))
    if family == socket.AF_INET and service.bind is not None:
        address = ipaddress.ip_address(service.bind)
        if address.is_multicast:
            mreq = struct.pack("4s4s", address.packed, socket.inet_aton("0.0.0.0"))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    if service.socket_type in (SocketType.STREAM, SocketType.SEQPACKET):
        sock.listen(LISTEN_BACKLOG)


def _sockaddr(family: int, host: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """The address to bind; a zone (`fe80::1%eth0`) becomes the scope id, which a plain
    (host, port) pair would leave 0 (EINVAL for a link-local address). Raises OSError:
    EADDRNOTAVAIL when the zone's interface is gone (a service waiting for its address
    is bound again once it is back)."""
    if family != socket.AF_INET6 or "%" not in host:
        return (host, port)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET6, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL)) from None
    address = infos[0][4]
    if len(address) != 4:
        return (host, port)
    return (str(address[0]), int(address[1]), int(address[2]), int(address[3]))


class Binder:
    """Binds one service's socket, retrying from loop timers; reports once.

    `on_bound(sock)` or `on_failed()` is called exactly once. `log_error(text)`
    receives xinetd's ERROR lines (`bind failed`, `socket creation failed`), and
    `log_notice(text)` its NOTICE lines (`bind retry attempt N`, the IPv6 fallback);
    without `log_notice` those go to `log_error` too. `last_errno` is the errno of the
    last failed socket creation or bind. A failure whose errno is in `quiet` is not
    logged (a service waiting for its address, or for descriptors).
    """

    def __init__(self, loop: Loop, service: ServiceConfig,
                 on_bound: Callable[[socket.socket], None], on_failed: Callable[[], None],
                 log_error: Callable[[str], None], *, retries: int = BIND_RETRIES,
                 delay: float | None = None,
                 log_notice: Callable[[str], None] | None = None,
                 quiet: frozenset[int] = frozenset()) -> None:
        self._loop = loop
        self._service = service
        self._on_bound = on_bound
        self._on_failed = on_failed
        self._log_error = log_error
        self._log_notice = log_notice or log_error
        self._retries = retries
        self._delay = bind_delay() if delay is None else delay
        self._attempt = 0
        self._sock: socket.socket | None = None
        self._timer: Timer | None = None
        self._quiet = quiet
        self.last_errno: int | None = None
        self.done = False

    def start(self) -> None:
        try:
            self._sock = create_socket(self._service, self._log_notice, self._quiet)
        except BindError as err:
            cause = err.__cause__
            self.last_errno = cause.errno if isinstance(cause, OSError) else None
            if self.last_errno not in self._quiet:
                self._log_error(str(err))
            self._finish(None)
            return
        self._try()

    def _try(self) -> None:
        self._timer = None
        assert self._sock is not None
        try:
            bind_socket(self._sock, self._service)
        except OSError as err:
            self.last_errno = err.errno
            if err.errno not in self._quiet:
                self._log_error(f"bind failed ({strerror(err)}). "
                                f"service = {self._service.id}")
            if self._attempt >= self._retries:
                self._sock.close()
                self._finish(None)
                return
            self._attempt += 1
            self._log_notice(f"bind retry attempt {self._attempt}")
            self._timer = self._loop.call_later(self._delay, self._try)
            return
        self._finish(self._sock)

    def _finish(self, sock: socket.socket | None) -> None:
        self.done = True
        if sock is None:
            self._on_failed()
        else:
            self._on_bound(sock)

    def cancel(self) -> None:
        """Abandon a pending retry (shutdown, or a reload that replaced the service);
        the callbacks are not called."""
        if self._timer is not None:
            # Left running, the retry would bind the closed socket (EBADF lines), then
            # report a failure for a service that is no longer there.
            self._timer.cancel()
            self._timer = None
        if not self.done and self._sock is not None:
            self._sock.close()
        self.done = True


def accept_batch(sock: socket.socket, limit: int = ACCEPT_BATCH
                 ) -> Iterator[tuple[socket.socket, tuple[object, ...], str]]:
    """Accept up to `limit` connections; yields (conn, address tuple, peer text).

    Stops quietly on BlockingIOError; lets capacity errors (EMFILE...) propagate so
    the caller can pause the listener. Accepted sockets are blocking and
    close-on-exec; IPv4-mapped peers are turned into plain IPv4 for the server
    (IPV6_ADDRFORM), while the peer text keeps the `::ffff:` form xinetd logs.
    """
    # socket.accept() converts the listener's family and type to enums on every call
    # (about half its cost here); the batch reads them once, as the plain numbers the
    # C socket holds (socket.socket's properties would convert them too), and wraps
    # the descriptor itself. Like socket.accept(), the new socket is blocking (accept4
    # without SOCK_NONBLOCK, default timeout) and close-on-exec.
    raw: _socket.socket = super(socket.socket, sock)  # type: ignore[assignment]
    family, kind, proto = raw.family, raw.type, raw.proto
    for _ in range(limit):
        try:
            fd, addr = sock._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            if err.errno in ACCEPT_TRANSIENT_ERRNOS:
                continue
            raise
        conn = socket.socket(family, kind, proto, fd)
        peer = peer_text(addr)
        if peer.startswith("::ffff:") and "." in peer and family == socket.AF_INET6:
            try:
                conn.setsockopt(socket.IPPROTO_IPV6, IPV6_ADDRFORM, socket.AF_INET)
            except OSError:
                pass
        yield conn, tuple(addr), peer


# One accepted connection: the socket, the address tuple and the peer text.
Accepted = tuple[socket.socket, tuple[object, ...], str]


def accept_queued(sock: socket.socket, limit: int = ACCEPT_BATCH,
                  ceiling: int | None = None
                  ) -> tuple[list[Accepted], OSError | None, bool]:
    """Accept up to `limit` queued connections before any is handled (accept_batch):
    the listen queue is emptied at once, so clients that connect while the batch is
    served (its servers started, its refusals logged) find room in it. Returns them
    with the error that ended the batch (EMFILE...), or None when the queue was empty
    or `limit` was reached, and whether a connection given a descriptor at `ceiling`
    or above ended it (descriptor_ceiling: the descriptors left are kept for the
    handling of the batch; more may be queued)."""
    batch: list[Accepted] = []
    try:
        for accepted in accept_batch(sock, limit):
            batch.append(accepted)
            if ceiling is not None and accepted[0].fileno() >= ceiling:
                return batch, None, True
    except OSError as err:
        return batch, err, False
    return batch, None, False


def descriptor_ceiling() -> int:
    """The descriptor number from which a batch stops accepting. Linux gives the lowest
    free number, so a connection given this one or above leaves fewer than
    BATCH_RESERVE free: accepting on would take the descriptors its handling needs
    (the banners of a batch taken up to EMFILE could not be opened)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 62
    return soft - BATCH_RESERVE


def reset_all(batch: list[Accepted]) -> None:
    """Close accepted connections with a reset (SO_LINGER 0), as the kernel closes the
    ones still queued on a listening socket that is closed."""
    for conn, _, _ in batch:
        reset_on_close(conn)
        conn.close()


def reset_on_close(conn: socket.socket) -> None:
    """Have `conn`'s close send a reset (SO_LINGER 0). Only for a connection no server
    shares: the option is the socket's, and a forked server's own close would reset
    too."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass    # closed all the same


def close_unlingering(conn: socket.socket) -> None:
    """Close a connection whose last reference is the daemon's (its server never
    started), lingering off: a hosts.allow `linger N` set for the server would make
    this close wait up to N seconds for a client that does not read what was sent (a
    banner), the whole daemon with it."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
    except OSError:
        pass
    conn.close()


def peer_text(addr: object) -> str:
    """The numeric peer text xinetd logs (`::ffff:a.b.c.d` for mapped peers), and gives
    servers as REMOTE_HOST: with the zone of a scoped IPv6 peer (`fe80::1%eth0`), as
    xinetd's getnameinfo(NI_NUMERICHOST) writes it. Python's address tuples carry the
    zone apart (the scope id), so it is put back here."""
    if isinstance(addr, tuple) and addr and isinstance(addr[0], str):
        if len(addr) >= 4 and addr[3]:
            try:
                return socket.getnameinfo((addr[0], 0, 0, int(addr[3])),
                                          socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
            except (OSError, ValueError, TypeError):
                return f"{addr[0]}%{addr[3]}"
        return addr[0]
    return "<no address>"
