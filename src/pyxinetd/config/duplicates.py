"""Services that would listen on the same socket: the first one read is kept.

Each service is offered to a SocketTable as soon as it was built
(pyxinetd.config.pipeline), in the order xinetd reads the files, as xinetd checks each
one against those kept before it before logging anything more about it; one that fails
the required attributes (or a later check) is tested first too, against the services
with a `bind` (the only ones xinetd's own test looks at). Two services clash when they
share protocol and port (RPC services: protocol, program number and an overlapping version range) and their
sockets cannot coexist: both bound to the same address of the same family, or one of
them bound to no particular address, on the same family or as an IPv6 socket that takes
IPv4 traffic (dual-stack, bound to `::` or an IPv4-mapped address) beside an IPv4 one.
TCPMUX services have no socket of their own and never clash.
A pair whose sockets coexist, but that xinetd's own test would split (an earlier service
with a `bind`, a later one without), is kept with a warning in xinetd's words. That test
compares a TCPMUX service's `port` line too (confparse.c check_entry), on either side
of the pair: one kept warns the same way, one rejected by a later check is named a
duplicate first, as by xinetd.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, replace

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.model import Origin, ServiceConfig
from pyxinetd.config.checks import DISABLING


@dataclass(frozen=True)
class SocketClaim:
    """The socket a service would listen on, as the uniqueness test compares it."""

    id: str
    name: str
    origin: Origin
    protocol: str
    port: int | None
    rpc_number: int | None
    rpc_version: tuple[int, int] | None
    bind: str | None
    family: int
    v6only: bool
    tcpmux_client: bool

    @classmethod
    def of(cls, service: ServiceConfig) -> SocketClaim:
        return cls(service.id, service.name, service.origin, service.protocol, service.port,
                   service.rpc_number, service.rpc_version, service.bind, service.family,
                   service.v6only, service.is_tcpmux_client)


def _conflict(a: SocketClaim, b: SocketClaim) -> bool:
    """Would b's listening socket clash with a's? (A TCPMUX service has none.)"""
    if a.tcpmux_client or b.tcpmux_client:
        return False
    if a.rpc_number is not None or b.rpc_number is not None:
        if a.rpc_number != b.rpc_number or a.protocol != b.protocol:
            return False
        if a.rpc_version is None or b.rpc_version is None:
            return False
        return a.rpc_version[0] <= b.rpc_version[1] and b.rpc_version[0] <= a.rpc_version[1]
    if a.port is None or a.port != b.port or a.protocol != b.protocol:
        return False
    if a.bind is not None and b.bind is not None:
        return a.bind == b.bind and a.family == b.family
    if a.family != b.family:
        return _takes_ipv4(a if a.family == socket.AF_INET6 else b)
    return True


def _xinetd_refuses(a: SocketClaim, b: SocketClaim) -> bool:
    """Would xinetd's own uniqueness test drop b after a? Only an earlier service with a
    `bind` is looked at; b clashes with it when it has no `bind`, or the same one."""
    if a.bind is None or a.rpc_number is not None or b.rpc_number is not None:
        return False
    if a.port is None or a.port != b.port or a.protocol != b.protocol:
        return False
    return b.bind is None or (b.bind == a.bind and b.family == a.family)


def _xinetd_words(claim: SocketClaim, earlier: SocketClaim) -> str:
    """How xinetd says that it drops `claim` after `earlier` ("its" included): a
    service of the same id (compared ignoring case) is "not unique"."""
    if earlier.id.lower() == claim.id.lower():
        return "not unique or is a duplicate"
    return f"is unique but its identical to service: {earlier.name} id: {earlier.id}"


def _takes_ipv4(six: SocketClaim) -> bool:
    """Does this IPv6 socket take IPv4 traffic, and so clash with an IPv4 socket on its
    port? Only a dual-stack one bound to every address (`::`, or no `bind`) or to an
    IPv4-mapped one: a v6-only socket, or one bound to a plain IPv6 address, can share
    the port with any IPv4 socket."""
    if six.v6only:
        return False
    if six.bind is None:
        return True
    try:
        address = ipaddress.IPv6Address(six.bind.partition("%")[0])
    except ValueError:
        return True
    return address.is_unspecified or address.ipv4_mapped is not None


def _socket_key(claim: SocketClaim) -> tuple[str, int | None, int | None]:
    """Services that can clash share this key (RPC: program number; others: port)."""
    if claim.rpc_number is not None:
        return claim.protocol, None, claim.rpc_number
    return claim.protocol, claim.port, None


_NO_SOCKET = "a TCPMUX service has no socket of its own"


def _tcpmux_why(bound: SocketClaim) -> tuple[str, ...]:
    """Why a service xinetd's test would drop after `bound` is kept, when `bound` is a
    TCPMUX service (the default reason otherwise)."""
    return (_NO_SOCKET,) if bound.tcpmux_client else ()


class SocketTable:
    """The services kept so far, by the socket key they would listen under."""

    def __init__(self, sink: DiagnosticSink) -> None:
        self._sink = sink
        self._by_key: dict[tuple[str, int | None, int | None], list[SocketClaim]] = {}

    def admit(self, service: ServiceConfig, port_line: int | None = None) -> str | None:
        """Keep `service`, or log and return why it is dropped (an earlier one clashes).
        `port_line`: a TCPMUX service's port as written (it listens on none)."""
        claim = SocketClaim.of(service)
        if claim.tcpmux_client:
            if port_line is not None:
                self._keep_tcpmux_service(replace(claim, port=port_line))
            return None
        same_socket = self._by_key.setdefault(_socket_key(claim), [])
        earlier = next((k for k in same_socket if _conflict(k, claim)), None)
        if earlier is None:
            bound = next((k for k in same_socket if _xinetd_refuses(k, claim)), None)
            if bound is not None:
                self._keep_beside(claim, bound, *_tcpmux_why(bound))
            same_socket.append(claim)
            return None
        return self._refuse(claim, earlier)

    def passes_xinetds_test(self, service: ServiceConfig, port_line: int | None = None
                            ) -> bool:
        """Would xinetd's own uniqueness test (an earlier service with a `bind`) keep
        `service`? It then logs the lines of its later checks, even for a service
        pyxinetd drops because its socket cannot bind beside an earlier one."""
        claim = SocketClaim.of(service)
        if claim.tcpmux_client:
            if port_line is None:
                return True
            claim = replace(claim, port=port_line)
        return not any(k.bind is not None and (_conflict(k, claim) or _xinetd_refuses(k, claim))
                       for k in self._by_key.get(_socket_key(claim), []))

    def _keep_beside(self, claim: SocketClaim, earlier: SocketClaim,
                     why: str = "their sockets coexist (one IPv4, one IPv6 taking no IPv4 "
                                "traffic)") -> None:
        """Say that a service xinetd's own test would drop is kept: its socket is of the
        other family and one of the two takes no IPv4 traffic, so both can listen (or it
        has no socket, `why`)."""
        self._sink.warning(
            claim.origin.file, claim.origin.line,
            f"service: {claim.name} id: {claim.id} is kept beside service: {earlier.name} "
            f"id: {earlier.id} ({earlier.origin}): same port/protocol, but {why} (xinetd "
            f"2.3.15.3 would disable it: {_xinetd_words(claim, earlier)}{DISABLING})")

    def _bound_by_xinetds_test(self, claim: SocketClaim) -> SocketClaim | None:
        """The earlier service xinetd's own test finds `claim` a duplicate of, if any."""
        return next((k for k in self._by_key.get(_socket_key(claim), [])
                     if _xinetd_refuses(k, claim)), None)

    def _keep_tcpmux_service(self, claim: SocketClaim) -> None:
        """A TCPMUX service, whose `port` line (`claim.port`) xinetd's test compares
        though it listens on no such port: kept, with a warning where xinetd drops it."""
        bound = self._bound_by_xinetds_test(claim)
        if bound is not None:
            self._keep_beside(claim, bound, _NO_SOCKET)
        if claim.bind is not None:
            # It never clashes (_conflict), but xinetd's test drops the services after
            # it with its port line and no bind, or the same bind.
            self._by_key.setdefault(_socket_key(claim), []).append(claim)

    def duplicate_of_bound(self, claim: SocketClaim) -> str | None:
        """For a service that fails a later check: log and return why it is a duplicate
        when xinetd's own test (an earlier service with a `bind`) finds it one first.
        A TCPMUX service's `port` line counts there, as in xinetd: it is rejected either
        way, and this names xinetd's reason."""
        if claim.tcpmux_client:
            earlier = self._bound_by_xinetds_test(claim) if claim.port is not None else None
        else:
            earlier = next((k for k in self._by_key.get(_socket_key(claim), [])
                            if k.bind is not None and (_conflict(k, claim) or (
                                k.tcpmux_client and _xinetd_refuses(k, claim)))), None)
        return None if earlier is None else self._refuse(claim, earlier)

    def _refuse(self, claim: SocketClaim, earlier: SocketClaim) -> str:
        # xinetd's words, then where the first one is.
        reason = (f"service: {claim.name} id: {claim.id} {_xinetd_words(claim, earlier)}"
                  f"{DISABLING} (same port/protocol as {earlier.origin})")
        where = (claim.origin.file, claim.origin.line)
        if earlier.bind is not None:
            self._sink.error(*where, reason)
        else:
            # Datagram sockets with SO_REUSEADDR bind one port side by side.
            outcome = (", the two sockets sharing the port" if claim.protocol == "udp"
                       else " and fail to bind the second")
            self._sink.warning(*where, f"{reason} (xinetd 2.3.15.3 would keep both{outcome})")
        return reason
