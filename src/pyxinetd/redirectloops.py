"""Redirect services whose target leads back to themselves.

`redirect = 127.0.0.1 P` on a service listening on port P (or two redirect services
pointing at each other) makes every client connection a chain: the relay connects to
this daemon, whose service accepts and relays again, each link holding two
descriptors, until the daemon has none left and no service of it answers any more.
xinetd forks a relaying child per link instead, without bound. Such a loop is found
when the targets are resolved (configuration load and reload), by following each
target through this configuration's own services while it is an address of this host;
its connections are then closed at once, with an error line, instead of relayed
(pyxinetd.redirect).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence

from pyxinetd.access.hostspatterns import normalize_address
from pyxinetd.config.model import ServiceConfig, SocketType

Target = tuple[int, tuple[object, ...]]   # (family, sockaddr), as pyxinetd.redirect has it


def is_local_address(family: int, host: str) -> bool:
    """Whether `host` is an address of this host (a bind to it succeeds)."""
    try:
        if ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
            return True
    except ValueError:
        return False
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def _listener_for(services: Sequence[ServiceConfig], family: int, host: str,
                  port: int) -> ServiceConfig | None:
    """The service of this configuration a TCP connection to host:port reaches: one
    bound to that very address first, else one on the wildcard of a family that takes
    it (the kernel's choice)."""
    wildcard: ServiceConfig | None = None
    for svc in services:
        if svc.socket_type is not SocketType.STREAM or svc.port != port:
            continue
        if svc.bind is not None:
            if normalize_address(svc.bind) == normalize_address(host):
                return svc
            continue
        ipv4_host = family == socket.AF_INET
        if svc.family == socket.AF_INET and not ipv4_host:
            continue
        if svc.family == socket.AF_INET6 and svc.v6only and ipv4_host:
            continue
        wildcard = wildcard or svc
    return wildcard


def find_loops(services: Sequence[ServiceConfig], targets: Mapping[tuple[str, int], Target],
               is_local: Callable[[int, str], bool] = is_local_address) -> dict[str, str]:
    """{service id: the chain, `a -> b -> a`} for every redirect service whose target,
    followed through the redirect services of `services` (targets resolved in
    `targets`), comes back to a service already on the way."""
    loops: dict[str, str] = {}
    for start in services:
        chain = [start]
        svc = start
        while svc.redirect is not None:
            target = targets.get(svc.redirect)
            if target is None:
                break
            family, sockaddr = target
            host, port = str(sockaddr[0]), int(sockaddr[1])  # type: ignore[call-overload]
            if not is_local(family, host):
                break
            reached = _listener_for(services, family, host, port)
            if reached is None:
                break
            if any(reached is seen for seen in chain):
                if reached is start:
                    loops[start.id] = " -> ".join(s.id for s in [*chain, start])
                break
            chain.append(reached)
            svc = reached
    return loops
