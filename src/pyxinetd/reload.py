"""What a reconfiguration changes: the diff between the running and the new configuration.

Pure functions on ServiceConfig objects; no sockets, no processes. The master applies
the resulting Plan (pyxinetd.reconfig).

Services are matched by id, case-insensitively, as xinetd does (reference §6.2). A
running service and a new one with the same id are the *same* service unless they are
"different" in xinetd's sense: UNLISTED/INTERNAL/RPC-ness, `wait`, the protocol, the
RPC program number, or (non-RPC) the socket type or the port changed. A different
pair is a removal plus an addition. A matched pair is kept and "readjusted": the new
attributes replace the old ones for future requests.

Beyond xinetd, a kept service says whether its listening socket can stay open: only
when everything the socket was created and bound with is the same (the bind tuple).
Otherwise the master closes it and binds a new one; xinetd re-creates the socket in
that case too (bind address or IPv4/IPv6 change). The options a kept socket can take
on the fly (NODELAY, KEEPALIVE, the datagram destinations INTERCEPT needs) are set
on it (listener.readjust_options), as xinetd keeps the socket and its servers then.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, fields

from pyxinetd.config.model import Configuration, ServiceConfig, SocketType

# Types whose change makes two services with the same id different (reference §6.2).
IDENTITY_TYPES = frozenset({"UNLISTED", "INTERNAL", "RPC"})


@dataclass(frozen=True)
class ListenerKey:
    """Everything a service's listening socket was created and bound with."""

    family: int
    bind: str | None
    port: int | None
    socket_type: SocketType
    protocol: str
    protocol_number: int
    v6only: bool
    # The dispatcher puts the socket of an external wait=yes service in blocking mode
    # and hands it to the server; a redirect never does. Toggling redirect therefore
    # changes how the socket is used, so such a change gets a fresh socket.
    redirect: bool


@dataclass(frozen=True)
class Change:
    """A running service (`old`) matched with its new configuration (`new`)."""

    old: ServiceConfig
    new: ServiceConfig

    @property
    def keeps_listener(self) -> bool:
        """True when the listening socket can stay open across the reload."""
        return listener_key(self.old) == listener_key(self.new)


@dataclass(frozen=True)
class Plan:
    """The result of diff(): every old and every new service appears exactly once."""

    added: tuple[ServiceConfig, ...]
    removed: tuple[ServiceConfig, ...]
    changed: tuple[Change, ...]
    unchanged: tuple[Change, ...]

    @property
    def kept(self) -> tuple[Change, ...]:
        """Every matched pair (readjusted services), changed or not."""
        return self.changed + self.unchanged


def listener_key(svc: ServiceConfig) -> ListenerKey:
    return ListenerKey(
        family=svc.family,
        bind=svc.bind,
        port=svc.port,
        socket_type=svc.socket_type,
        protocol=svc.protocol,
        protocol_number=svc.protocol_number,
        # IPV6_V6ONLY is only set on AF_INET6 sockets.
        v6only=svc.v6only if svc.family == socket.AF_INET6 else False,
        redirect=svc.redirect is not None,
    )


def is_different(old: ServiceConfig, new: ServiceConfig) -> bool:
    """xinetd's test for two services with the same id that cannot be readjusted."""
    if old.types & IDENTITY_TYPES != new.types & IDENTITY_TYPES:
        return True
    if old.wait != new.wait or old.protocol != new.protocol:
        return True
    if "RPC" in old.types:
        return old.rpc_number != new.rpc_number
    return old.socket_type != new.socket_type or old.port != new.port


# The fields a service's equality compares, but its place in the file.
_ATTRIBUTES = tuple(f.name for f in fields(ServiceConfig) if f.compare and f.name != "origin")


def same_attributes(old: ServiceConfig, new: ServiceConfig) -> bool:
    """True when nothing but the place in the file changed. (Field by field: a copy of
    each kept service to compare took a reload of 10,000 services a tenth of a second
    of the loop.)"""
    return all(getattr(old, name) == getattr(new, name) for name in _ATTRIBUTES)


def rules_replaced(asked: ServiceConfig, now: ServiceConfig) -> bool:
    """Whether the service a request was judged by (`asked`) is replaced by its
    configuration in force (`now`). A reload always makes new objects, but one that
    leaves the service as it was (an unchanged file, a line moved) replaces nothing: a
    verdict still awaited from `asked` holds, and its aclexec command is not run again."""
    return now is not asked and not same_attributes(asked, now)


def diff_services(old: Sequence[ServiceConfig], new: Sequence[ServiceConfig]) -> Plan:
    """Match running services with new ones; see the module docstring.

    Ids may repeat (xinetd accepts the same id on different ports): each old service
    takes the first unmatched new one with its id that is not different, preferring one
    whose listener would be the same.
    """
    # The unmatched new services by id, in the file's order: a reload of 19,000
    # services scanned every new one for each old one (half a minute, the loop stalled).
    by_id: dict[str, list[int]] = {}
    for index, n in enumerate(new):
        by_id.setdefault(n.id.lower(), []).append(index)
    matched: set[int] = set()
    removed: list[ServiceConfig] = []
    changed: list[Change] = []
    unchanged: list[Change] = []
    for svc in old:
        same_id = by_id.get(svc.id.lower(), [])
        candidates = [i for i in same_id if not is_different(svc, new[i])]
        if not candidates:
            removed.append(svc)
            continue
        key = listener_key(svc)
        chosen = next((i for i in candidates if listener_key(new[i]) == key), candidates[0])
        # By position: two new entries may be equal (duplicates) yet distinct.
        same_id.remove(chosen)
        matched.add(chosen)
        match = new[chosen]
        change = Change(svc, match)
        (unchanged if same_attributes(svc, match) else changed).append(change)
    added = tuple(n for index, n in enumerate(new) if index not in matched)
    return Plan(added=added, removed=tuple(removed), changed=tuple(changed),
                unchanged=tuple(unchanged))


def diff(old: Configuration, new: Configuration) -> Plan:
    """The plan that turns the services of `old` into those of `new`."""
    return diff_services(old.services, new.services)
