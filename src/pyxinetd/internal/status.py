"""`servers` and `services`: what the daemon runs, as text lines.

xinetd 2.3.15 dropped these builtins, but Debian still ships /etc/xinetd.d/servers and
/etc/xinetd.d/services (disabled), so they are served again, in a documented line
format (docs/internal-services.md), each line ending in CRLF:

    services:  ID PROTOCOL PORT             (PORT is `-` for services with no port;
                                             an RPC service's is the kernel's choice)
    servers:   PID ID PEER START            (START: local ISO-8601 time with offset)
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import NamedTuple, Protocol

from pyxinetd.config.model import ServiceConfig
from pyxinetd.children import NO_ADDRESS
from pyxinetd.localzone import local_time
from pyxinetd.textbytes import as_written


class ServerInfo(NamedTuple):
    """One running server as the `servers` builtin lists it."""

    pid: int
    service_id: str
    peer: str           # numeric address text, as in the log's from=
    start_time: float   # time.time() when it started


class MasterView(Protocol):
    """The read-only view of the master's state `servers` and `services` need."""

    def active_services(self) -> Sequence[ServiceConfig]: ...

    def port_of(self, svc: ServiceConfig) -> int | None:
        """The port `svc` listens on: its configured port, or for an RPC service the
        one its socket was bound to; None when it has none (TCPMUX clients)."""
        ...

    def running_servers(self) -> Sequence[tuple[int, str, str, float]]: ...

    def datagram_builtin_ports(self) -> Collection[int]:
        """The ports of the active datagram builtins (internal.dgram.loops_back)."""
        ...


def services_text(view: MasterView) -> bytes:
    lines = []
    for svc in view.active_services():
        number = view.port_of(svc)
        port = "-" if number is None else str(number)
        lines.append(f"{svc.id} {svc.protocol} {port}\r\n")
    return as_written("".join(lines))


def servers_text(view: MasterView) -> bytes:
    lines = []
    for pid, service_id, peer, start in view.running_servers():
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z", local_time(start))
        # A wait = yes stream server accepts its clients itself: no peer to show.
        shown = "-" if not peer or peer == NO_ADDRESS else peer
        lines.append(f"{pid} {service_id} {shown} {started}\r\n")
    return as_written("".join(lines))


def report(name: str, view: MasterView) -> bytes:
    """The reply of the `servers` or `services` builtin."""
    return servers_text(view) if name == "servers" else services_text(view)
