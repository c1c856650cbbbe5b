"""Services that would listen on the same socket: the first one read is kept.

Each service is offered to a SocketTable as soon as it was built
(pyxinetd.config.pipeline), in the order xinetd reads the files, as xinetd checks each
one against those kept before it before logging anything more about it; one that fails
the required attributes (or a later check) is tested first too, against the services
with a `bind` (the only ones xinetd's own test looks at). Two services clash when they
share protocol and port (an RPC service's `port`, where it listens) and their sockets
cannot coexist: both bound to the same address of the same family, or one of them bound
to no particular address, on the same family or as an IPv6 socket that takes IPv4
traffic (dual-stack, bound to `::` or an IPv4-mapped address) beside an IPv4 one. Two
RPC services of one protocol, program number and an overlapping version range clash
only where xinetd's own test says so; otherwise the later one is kept, with a warning
naming the versions the portmapper gives the earlier one at start-up (it registers
each once, for the first SET: pyxinetd.rpc; at a reload, a running service that holds
one keeps it), and is served at the others, or fails to start with none left.
TCPMUX services have no socket of their own and never clash. xinetd's test compares an
RPC service's `port` line (0 without one), and then, for two RPC services, the program
and version ranges.
A pair whose sockets coexist, but that xinetd's own test would split (an earlier service
with a `bind`, a later one without), is kept with a warning in xinetd's words. That test
compares a TCPMUX service's `port` line too (confparse.c check_entry; 0 without one),
on either side of the pair: one kept warns the same way, one rejected by a later check is named a
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
    """Would b's listening socket clash with a's, or its registration be one xinetd's
    own test refuses? (A TCPMUX service has no socket.) An RPC service with a `port`
    listens on it. Other overlapping RPC services are both kept: the portmapper takes
    the shared versions from the first one (SocketTable._note_shared_versions)."""
    if a.tcpmux_client or b.tcpmux_client:
        return False
    return _same_socket(a, b) or (_same_registration(a, b) and _xinetd_refuses(a, b))


def _same_registration(a: SocketClaim, b: SocketClaim) -> bool:
    """Two RPC services of one program and protocol with overlapping version ranges: the
    portmapper registers each shared version once, for the first one."""
    if a.rpc_number is None or a.rpc_number != b.rpc_number or a.protocol != b.protocol:
        return False
    if a.rpc_version is None or b.rpc_version is None:
        return False
    return a.rpc_version[0] <= b.rpc_version[1] and b.rpc_version[0] <= a.rpc_version[1]


def _same_socket(a: SocketClaim, b: SocketClaim) -> bool:
    """Two sockets on one port and protocol that cannot coexist (port 0 is none: the
    kernel picks a free one for each)."""
    if not a.port or a.port != b.port or a.protocol != b.protocol:
        return False
    if a.bind is not None and b.bind is not None:
        return a.bind == b.bind and a.family == b.family
    if a.family != b.family:
        return _takes_ipv4(a if a.family == socket.AF_INET6 else b)
    return True


def _versions_within(b: SocketClaim, a: SocketClaim) -> bool:
    """Is each of b's RPC versions one of a's?"""
    if a.rpc_version is None or b.rpc_version is None:
        return False
    return a.rpc_version[0] <= b.rpc_version[0] and b.rpc_version[1] <= a.rpc_version[1]


def _shared_versions(claim: SocketClaim, earlier: list[SocketClaim]) -> list[int]:
    """The versions of `claim` that one of the `earlier` services of its program and
    protocol registers first."""
    if claim.rpc_version is None:
        return []
    low, high = claim.rpc_version
    spans = [(max(low, k.rpc_version[0]), min(high, k.rpc_version[1]))
             for k in earlier if _same_registration(k, claim) and k.rpc_version is not None]
    return sorted({v for first, last in spans for v in range(first, last + 1)})


def _version_text(numbers: list[int]) -> str:
    """Sorted versions as ranges: `1, 3-5`."""
    spans: list[list[int]] = []
    for v in numbers:
        if spans and v == spans[-1][1] + 1:
            spans[-1][1] = v
        else:
            spans.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _xinetd_port(claim: SocketClaim) -> int | None:
    """The port xinetd's test compares: the `port` line, 0 for an RPC or TCPMUX service
    without one (xinetd looks up no port for either: the RPC one is bound to the
    kernel's choice anyway, the TCPMUX one listens on none)."""
    if claim.port is None and (claim.rpc_number is not None or claim.tcpmux_client):
        return 0
    return claim.port


def _xinetd_refuses(a: SocketClaim, b: SocketClaim) -> bool:
    """Would xinetd's own uniqueness test drop b after a? Only an earlier service with a
    `bind` is looked at; b clashes with it on the same port line and protocol, when it
    has no `bind`, or the same one. Two RPC services must also share the program and a
    version (an RPC service and another one need not)."""
    if a.bind is None:
        return False
    port = _xinetd_port(a)
    if port is None or port != _xinetd_port(b) or a.protocol != b.protocol:
        return False
    if b.bind is not None and (b.bind != a.bind or b.family != a.family):
        return False
    if a.rpc_number is not None and b.rpc_number is not None:
        return _same_registration(a, b)
    return True


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


_Key = tuple[str, str, int]


def _keys(claim: SocketClaim) -> tuple[_Key, ...]:
    """Services that can clash share one of these keys: the port xinetd's test compares
    (which is the listening port, when there is one) and an RPC program."""
    port = _xinetd_port(claim)
    by_port = () if port is None else (("port", claim.protocol, port),)
    by_program = (() if claim.rpc_number is None
                  else (("rpc", claim.protocol, claim.rpc_number),))
    return by_port + by_program


_NO_SOCKET = "a TCPMUX service has no socket of its own"


def _why_kept(claim: SocketClaim, bound: SocketClaim) -> tuple[str, ...]:
    """Why a service xinetd's test would drop after `bound` is kept: `bound` is a TCPMUX
    service, or the port line is 0 (an RPC service without one), so each socket gets a
    free port of the kernel's choice (the default reason otherwise)."""
    if bound.tcpmux_client:
        return (_NO_SOCKET,)
    if not claim.port or not bound.port:
        return ("port 0 is no port: each socket gets one of the kernel's choice",)
    return ()


def _xinetd_outcome(claim: SocketClaim, earlier: SocketClaim) -> str:
    """What xinetd 2.3.15.3 does with a pair its uniqueness test keeps but pyxinetd
    cannot serve side by side."""
    if _same_registration(earlier, claim):
        if _versions_within(claim, earlier):
            return " and fail to register the second with the portmapper"
        # Its pmap_set fails for the shared versions only, and it serves the others
        # (service.c activate_rpc gives up only when no version is registered).
        return (", the portmapper taking the second only for the versions the first "
                "does not have")
    if claim.rpc_number is not None or earlier.rpc_number is not None:
        # It binds an RPC service to a port of the kernel's choice, whatever its `port`.
        return ", binding an RPC service to a port of the kernel's choice"
    if claim.protocol == "udp":
        # Datagram sockets with SO_REUSEADDR bind one port side by side.
        return ", the two sockets sharing the port"
    return " and fail to bind the second"


def _named_duplicate(bound: SocketClaim, claim: SocketClaim) -> bool:
    """Does xinetd's test name `claim`, rejected by a later check, a duplicate of the
    earlier `bound`?"""
    if bound.rpc_number is not None or claim.rpc_number is not None or bound.tcpmux_client:
        return _xinetd_refuses(bound, claim)
    return bound.bind is not None and _conflict(bound, claim)


class SocketTable:
    """The services kept so far, under each key they could clash by, in reading order."""

    def __init__(self, sink: DiagnosticSink) -> None:
        self._sink = sink
        self._by_key: dict[_Key, list[tuple[int, SocketClaim]]] = {}
        self._kept = 0

    def _earlier(self, claim: SocketClaim) -> list[SocketClaim]:
        """The services kept before that share a key with `claim`, first read first."""
        found = {n: k for key in _keys(claim) for n, k in self._by_key.get(key, [])}
        return [found[n] for n in sorted(found)]

    def _keep(self, claim: SocketClaim) -> None:
        for key in _keys(claim):
            self._by_key.setdefault(key, []).append((self._kept, claim))
        self._kept += 1

    def admit(self, service: ServiceConfig, port_line: int | None = None) -> str | None:
        """Keep `service`, or log and return why it is dropped (an earlier one clashes).
        `port_line`: a TCPMUX service's port as written (it listens on none), None
        without a `port` line."""
        claim = SocketClaim.of(service)
        if claim.tcpmux_client:
            self._keep_tcpmux_service(replace(claim, port=port_line))
            return None
        earlier_ones = self._earlier(claim)
        earlier = next((k for k in earlier_ones if _conflict(k, claim)), None)
        if earlier is None:
            bound = next((k for k in earlier_ones if _xinetd_refuses(k, claim)), None)
            if bound is not None:
                self._keep_beside(claim, bound, *_why_kept(claim, bound))
            self._note_shared_versions(claim, earlier_ones)
            self._keep(claim)
            return None
        return self._refuse(claim, earlier)

    def passes_xinetds_test(self, service: ServiceConfig, port_line: int | None = None
                            ) -> bool:
        """Would xinetd's own uniqueness test (an earlier service with a `bind`) keep
        `service`? It then logs the lines of its later checks, even for a service
        pyxinetd drops because its socket cannot bind beside an earlier one."""
        claim = SocketClaim.of(service)
        if claim.tcpmux_client:
            claim = replace(claim, port=port_line)
        return self._bound_by_xinetds_test(claim) is None

    def _note_shared_versions(self, claim: SocketClaim, earlier: list[SocketClaim]) -> None:
        """Warn that the versions an earlier RPC service of the same program and
        protocol registers first at start-up are not served by `claim` (xinetd logs
        `pmap_set failed` for each, and deactivates a service left with none)."""
        shared = _shared_versions(claim, earlier)
        if not shared or claim.rpc_version is None:
            return
        holders = ", ".join(f"service: {k.name} id: {k.id} ({k.origin})"
                            for k in earlier if _same_registration(k, claim))
        low, high = claim.rpc_version
        rest = [v for v in range(low, high + 1) if v not in set(shared)]
        served = (f"it is served at version {_version_text(rest)} only" if rest
                  else "it registers none and fails to start")
        # Which one registers a shared version is decided when the SETs are answered:
        # at a reload, a running service that holds it keeps it (pyxinetd.rpc), so the
        # words name start-up's outcome without promising it for a reload.
        self._sink.warning(
            claim.origin.file, claim.origin.line,
            f"service: {claim.name} id: {claim.id}: RPC program {claim.rpc_number} "
            f"version {_version_text(shared)} ({claim.protocol}) is also in the range "
            f"of {holders}, and the portmapper holds one registration of each, for the "
            f"service that registers it first (at a reload, a running one that holds it "
            f"already); at start-up the earlier one: {served} (as in xinetd 2.3.15.3)")

    def _keep_beside(self, claim: SocketClaim, earlier: SocketClaim,
                     why: str = "their sockets coexist (one IPv4, one IPv6 taking no IPv4 "
                                "traffic)") -> None:
        """Say that a service xinetd's own test would drop is kept: its socket is of the
        other family and one of the two takes no IPv4 traffic, so both can listen (or it
        has no socket, or none on that port: `why`)."""
        self._sink.warning(
            claim.origin.file, claim.origin.line,
            f"service: {claim.name} id: {claim.id} is kept beside service: {earlier.name} "
            f"id: {earlier.id} ({earlier.origin}): same port/protocol, but {why} (xinetd "
            f"2.3.15.3 would disable it: {_xinetd_words(claim, earlier)}{DISABLING})")

    def _bound_by_xinetds_test(self, claim: SocketClaim) -> SocketClaim | None:
        """The earlier service xinetd's own test finds `claim` a duplicate of, if any."""
        return next((k for k in self._earlier(claim) if _xinetd_refuses(k, claim)), None)

    def _keep_tcpmux_service(self, claim: SocketClaim) -> None:
        """A TCPMUX service, whose `port` line (`claim.port`) xinetd's test compares
        though it listens on no such port: kept, with a warning where xinetd drops it."""
        bound = self._bound_by_xinetds_test(claim)
        if bound is not None:
            self._keep_beside(claim, bound, _NO_SOCKET)
        if claim.bind is not None:
            # It never clashes (_conflict), but xinetd's test drops the services after
            # it with its port line and no bind, or the same bind.
            self._keep(claim)

    def duplicate_of_bound(self, claim: SocketClaim) -> str | None:
        """For a service that fails a later check: log and return why it is a duplicate
        when xinetd's own test (an earlier service with a `bind`) finds it one first.
        A TCPMUX service's `port` line counts there, as in xinetd: it is rejected either
        way, and this names xinetd's reason."""
        if claim.tcpmux_client:
            earlier = self._bound_by_xinetds_test(claim)
        else:
            earlier = next((k for k in self._earlier(claim) if _named_duplicate(k, claim)),
                           None)
        return None if earlier is None else self._refuse(claim, earlier)

    def _refuse(self, claim: SocketClaim, earlier: SocketClaim) -> str:
        # xinetd's words, then where the first one is.
        reason = (f"service: {claim.name} id: {claim.id} {_xinetd_words(claim, earlier)}"
                  f"{DISABLING} (same port/protocol as {earlier.origin})")
        where = (claim.origin.file, claim.origin.line)
        if _xinetd_refuses(earlier, claim):
            self._sink.error(*where, reason)
        else:
            self._sink.warning(*where, f"{reason} (xinetd 2.3.15.3 would keep both"
                                       f"{_xinetd_outcome(claim, earlier)})")
        return reason
