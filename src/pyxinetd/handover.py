"""Listening sockets handed over by the service manager (systemd's socket activation).

With a `.socket` unit, systemd binds the ports itself and starts the daemon with the
sockets on descriptors 3 and up: `$LISTEN_FDS` of them, for the process `$LISTEN_PID`
names (`$LISTEN_FDNAMES` gives their names). A service whose socket matches one (same
socket type and protocol, same port, and its `bind` address or, without one, a wildcard
address: the one of its own family and IPV6_V6ONLY first, never one that cannot reach its
clients) serves on it instead of binding its own. The ports can then be privileged while
the daemon need not bind them, and the sockets outlive a restart of the daemon: clients
queue meanwhile instead of being refused.

- The variables are removed from the environment as soon as they are read and the
  descriptors made close-on-exec, so servers inherit neither (xinetd's never had them).
- A handed-over socket is never closed here: when its service stops using it (a reload
  removes the service, cps deactivates it) it goes back to the pool and its service, or
  a later one, claims it again. systemd keeps its own copy bound, so binding the port
  anew would fail.
- A socket in the pool is still read: its clients are turned away (a connection is
  accepted and closed, a datagram dropped), as they would be by a closed port, instead
  of waiting in its queue for a service that is not there.
- A socket that no service claims at start-up is reported (WARNING) and kept for a
  service a reload may add.

Only a daemon that stays in the foreground (`-dontfork` or `-d`, as a unit for socket
activation runs it) uses the sockets; a detaching one only removes the variables (its
serving process is not the one they were passed to).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, MutableMapping

from pyxinetd.config.model import ServiceConfig
from pyxinetd.listener import SHORTAGE_ERRNOS, set_connection_flags
from pyxinetd.log import strerror
from pyxinetd.loop import READ, Loop

LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
FIRST_DESCRIPTOR = 3  # SD_LISTEN_FDS_START
# Clients turned away per readiness event of a socket in the pool.
TURN_AWAY_BATCH = 64
# How long a pooled socket is not watched after running out of descriptors.
TURN_AWAY_RETRY = 1.0


def _zone_index(address: str) -> int | None:
    """The interface index of a scoped address's zone (`fe80::1%eth0` or `%2`)."""
    if "%" not in address:
        return None
    zone = address.split("%", 1)[1]
    if zone.isdigit():
        return int(zone)
    try:
        return socket.if_nametoindex(zone)
    except OSError:
        return -1       # names no interface: equal to no other zone


def _same_address(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b
    # The same link-local address on two links is two addresses.
    zone_a, zone_b = _zone_index(a), _zone_index(b)
    if zone_a is not None and zone_b is not None and zone_a != zone_b:
        return False
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y


def describe(sock: socket.socket) -> str:
    """`descriptor N (HOST port P, stream)` for the log."""
    try:
        local = sock.getsockname()
        where = f"{local[0]} port {local[1]}" if isinstance(local, tuple) else str(local)
    except OSError:
        where = "not bound"
    kind = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram",
            socket.SOCK_SEQPACKET: "seqpacket", socket.SOCK_RAW: "raw"}.get(sock.type, "?")
    return f"descriptor {sock.fileno()} ({where}, {kind})"


def _v6only(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    except OSError:
        return False


def fit(sock: socket.socket, service: ServiceConfig) -> int:
    """How well `sock` fits `service`: 0 not at all; 1 it serves the service's clients
    (a dual-stack `::` socket for an IPv4 service, a `0.0.0.0` one for a dual-stack
    service); 2 it is the socket the service would have bound itself (same family, and
    for IPv6 the same IPV6_V6ONLY)."""
    if service.port is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0
    if sock.type != service.socket_type.kernel_type:
        return 0
    if sock.proto not in (0, service.protocol_number):
        return 0
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return 0
    if port != service.port:
        return 0
    if service.bind is not None:
        return 2 if _same_address(str(host), service.bind) else 0
    if host not in ("0.0.0.0", "::"):
        return 0
    v6only = sock.family == socket.AF_INET6 and _v6only(sock)
    if sock.family == service.family and (sock.family == socket.AF_INET
                                          or v6only == service.v6only):
        return 2
    if service.family == socket.AF_INET:
        # `::` without IPV6_V6ONLY (systemd's default for `ListenStream=PORT`) takes
        # IPv4 clients too; a v6-only one never sees them.
        return 0 if v6only else 1
    # An IPv6 service on `0.0.0.0` (or a dual-stack one on a v6-only `::`) reaches
    # part of its clients; a v6-only service on `0.0.0.0` none of them.
    return 0 if service.v6only and sock.family == socket.AF_INET else 1


def matches(sock: socket.socket, service: ServiceConfig) -> bool:
    """Whether `sock` serves the clients `service` would have had on its own socket."""
    return fit(sock, service) > 0


def _turn_away(sock: socket.socket) -> OSError | None:
    """Accept and close what waits on `sock` (drop, for datagrams), never blocking.
    Returns the error when accept() ran out of a resource (EMFILE...): the clients are
    still queued."""
    for _ in range(TURN_AWAY_BATCH):
        try:
            if sock.type == socket.SOCK_STREAM or sock.type == socket.SOCK_SEQPACKET:
                conn, _ = sock.accept()
                conn.close()
            else:
                sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as err:
            if err.errno in SHORTAGE_ERRNOS:
                return err
            continue    # the client reset meanwhile, or a queued ICMP error
    return None


class HandedOver:
    """The sockets the service manager passed, and which of them no service uses now."""

    def __init__(self, sockets: list[socket.socket] | None = None,
                 problems: list[str] | None = None) -> None:
        self._all = {sock.fileno(): sock for sock in sockets or []}
        self._free = list(sockets or [])
        self._loop: Loop | None = None
        self._report: Callable[[str], None] | None = None
        # Free sockets whose clients could not be turned away for want of a descriptor,
        # and have not been since: reported once, not at every retry.
        self._short: set[socket.socket] = set()
        # What could not be taken over (the daemon logs it once it has a log).
        self.problems = problems or []

    def __bool__(self) -> bool:
        return bool(self._all)

    def descriptors(self) -> list[int]:
        """The descriptors of every socket taken over (in use or in the pool)."""
        return list(self._all)

    def attach(self, loop: Loop, report: Callable[[str], None] | None = None) -> None:
        """Turn away the clients of every socket in the pool from now on; `report`
        gets the errors that pause it."""
        self._loop = loop
        self._report = report
        for sock in self._free:
            self._watch(sock)

    def _watch(self, sock: socket.socket) -> None:
        if self._loop is not None:
            self._loop.register(sock, READ, lambda mask: self._turn_away(sock))

    def _turn_away(self, sock: socket.socket) -> None:
        err = _turn_away(sock)
        loop = self._loop
        if err is None:
            self._short.discard(sock)
        if err is None or loop is None:
            return
        # Out of descriptors: the clients stay queued and the socket readable; look
        # again in a while rather than on every loop turn.
        loop.unregister(sock)
        if self._report is not None and sock not in self._short:
            self._short.add(sock)
            self._report(f"cannot turn away the clients of {describe(sock)}: "
                         f"{strerror(err)}; retrying in {TURN_AWAY_RETRY:g} seconds")

        def again() -> None:
            if sock in self._free and not loop.is_registered(sock):
                self._watch(sock)
        loop.call_later(TURN_AWAY_RETRY, again)

    def claim(self, service: ServiceConfig) -> socket.socket | None:
        """The free handed-over socket that fits `service` best (the first of the best),
        now its own; None if none serves its clients."""
        best, chosen = 0, None
        for sock in self._free:
            rank = fit(sock, service)
            if rank > best:
                best, chosen = rank, sock
        if chosen is None:
            return None
        self._free.remove(chosen)
        self._short.discard(chosen)
        if self._loop is not None:
            self._loop.unregister(chosen)
        try:
            # The flags a socket of our own would have got.
            set_connection_flags(chosen, service)
        except OSError:
            pass    # the socket serves without them, as systemd set it up
        return chosen

    def give_back(self, sock: socket.socket) -> bool:
        """True if `sock` is a handed-over socket: it is kept open, free again."""
        if self._all.get(sock.fileno()) is not sock:
            return False
        sock.setblocking(False)
        if sock not in self._free:
            self._free.append(sock)
            self._watch(sock)
        return True

    def unclaimed(self) -> list[str]:
        return [describe(sock) for sock in self._free]

    def close(self) -> None:
        """Shutdown: the daemon's copies go (systemd keeps its own)."""
        for sock in self._all.values():
            if self._loop is not None:
                self._loop.unregister(sock)
            sock.close()
        self._all.clear()
        self._free.clear()


def take_from_environment(environ: MutableMapping[str, str],
                          pid: int | None = None) -> HandedOver:
    """Read and remove $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES; the sockets they
    pass to this process (`pid`, default this one), made close-on-exec and
    non-blocking. Descriptors that are not sockets are left alone and reported."""
    values = {name: environ.pop(name, None) for name in LISTEN_VARIABLES}
    if values["LISTEN_PID"] != str(os.getpid() if pid is None else pid):
        return HandedOver()
    try:
        count = int(values["LISTEN_FDS"] or "0")
    except ValueError:
        return HandedOver(problems=[f"LISTEN_FDS={values['LISTEN_FDS']!r} is not a number: "
                                    "no socket taken over"])
    sockets: list[socket.socket] = []
    problems: list[str] = []
    for fd in range(FIRST_DESCRIPTOR, FIRST_DESCRIPTOR + max(count, 0)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as err:
            problems.append(f"descriptor {fd} passed by the service manager is not a "
                            f"usable socket: {strerror(err)}")
            continue
        try:
            os.set_inheritable(fd, False)
            sock.setblocking(False)
        except OSError as err:
            sock.detach()
            problems.append(f"descriptor {fd} passed by the service manager: {strerror(err)}")
            continue
        sockets.append(sock)
    return HandedOver(sockets, problems)
