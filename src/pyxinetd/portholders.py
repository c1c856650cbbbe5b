"""Ports a reload must not bind yet: the terminated wait = yes servers still hold them.

An external `wait = yes` server owns its service's listening socket. A reload that
removes the service, or replaces its socket, terminates the server (SIGTERM, SIGKILL
after the grace period), but the port stays taken until the server is gone: a new
socket bound on it at once fails every bind retry and the service is deactivated.
xinetd kills such servers and pauses before binding, so there the new socket is bound;
here the bind of a service on that (protocol, port) waits for the servers' exit, which
the SIGKILL timer bounds, and the loop serves the other services meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyxinetd.children import Child, ExitStatus
from pyxinetd.service import ServiceRuntime, State

if TYPE_CHECKING:
    from pyxinetd.master import Master

Port = tuple[str, int]


class PortHolders:
    """The terminated servers holding a listening socket, by pid, with its port."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self._holders: dict[int, tuple[Child, Port]] = {}

    def hold(self, children: list[Child]) -> None:
        """Servers just terminated: remember those that hold a listening socket of
        their own (external wait = yes)."""
        table = self.master.children
        for pid, (child, _) in list(self._holders.items()):
            if table.get(pid) is not child:
                del self._holders[pid]     # gone, and no bind waited for it
        for child in children:
            svc = child.service
            if svc.wait and not svc.is_internal and not svc.is_redirect \
                    and svc.port is not None:
                self._holders[child.pid] = (child, (svc.protocol, svc.port))

    def start_when_free(self, rt: ServiceRuntime, settled: Callable[[], None]) -> None:
        """Bind `rt` now, or once the servers holding its port are gone.

        A later reload may have replaced or removed `rt` meanwhile: it is then only
        settled (its replacement waits in turn). Nothing is bound once the daemon
        has begun to exit."""
        m = self.master
        key = (rt.config.protocol, rt.config.port)
        holders = [child for child, port in self._holders.values()
                   if port == key and m.children.get(child.pid) is child]
        if not holders:
            m.activations.start(rt, settled)
            return
        remaining = {child.pid for child in holders}

        def gone(child: Child) -> None:
            remaining.discard(child.pid)
            if remaining or m.stopping:
                return
            if rt.state is State.STARTING and any(other is rt for other in m.services):
                m.activations.start(rt, settled)
            else:
                settled()

        for child in holders:
            self._on_gone(child, gone)

    def _on_gone(self, child: Child, then: Callable[[Child], None]) -> None:
        """Call `then(child)` once the reaper has collected `child`."""
        previous = child.on_reap

        def reaped(reaped_child: Child, status: ExitStatus) -> None:
            self._holders.pop(reaped_child.pid, None)
            if previous is not None:
                previous(reaped_child, status)
            then(reaped_child)

        child.on_reap = reaped
