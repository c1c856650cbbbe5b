"""Checking the running servers of kept services again after a reload.

xinetd's manual promises it: once a reload has applied, every running server and
in-loop session of a kept service is checked against the service's new access_times,
only_from/no_access and instances, and the clients of an intercepted server each with
its own address (pyxinetd.recheck decides). Those that fail are ended: a server is
terminated like the servers of a removed service (pyxinetd.terminations), a session or
an intercepted client is closed, each with a WARNING naming it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyxinetd.access.lists import tie_text
from pyxinetd.children import NO_ADDRESS, Child
from pyxinetd.config.model import ServiceConfig
from pyxinetd.intercept import Client
from pyxinetd.recheck import Name, Recheck, Running, resolver_lookup
from pyxinetd.reload import Change
from pyxinetd.terminations import Terminations

if TYPE_CHECKING:
    from pyxinetd.master import Master
    from pyxinetd.sessions import SessionRecord


class Rechecks:
    """The rechecks of the last reload (name lookups may still be pending)."""

    def __init__(self, master: Master, terminations: Terminations) -> None:
        self.master = master
        self.terminations = terminations
        self._jobs: list[Recheck] = []

    def start(self, kept: tuple[Change, ...]) -> None:
        """Check the running servers, sessions and intercepted clients of the services a
        reload kept against their new attributes; the rechecks of an earlier reload
        still waiting for a name are cancelled."""
        m = self.master
        for job in self._jobs:
            job.cancel()
        self._jobs = []
        shared = Counter(change.old.id.lower() for change in kept)
        # The servers and sessions by id, in their order: each kept service looks at
        # its own (scanning them all for each took minutes with thousands of both).
        children: dict[str, list[Child]] = {}
        for c in m.children:
            if not self.terminations.is_terminating(c):
                children.setdefault(c.service.id.lower(), []).append(c)
        sessions: dict[str, list[SessionRecord]] = {}
        for r in m.dispatcher.open_sessions():
            sessions.setdefault(r.service.id.lower(), []).append(r)
        intercepted = m.dispatcher.intercept.servers()
        for change in kept:
            svc = change.new
            if svc.access_times or svc.only_from is not None or svc.no_access:
                self._recheck_clients(svc)
            if not (svc.access_times or svc.only_from is not None or svc.no_access
                    or svc.instances is not None):
                continue
            wanted = change.old.id.lower()
            if shared[wanted] > 1:
                # Duplicate ids: only what belongs to this very service (rehomed).
                def picked(other: ServiceConfig) -> bool:
                    return other.belongs_to(svc)
            else:
                def picked(other: ServiceConfig) -> bool:
                    return other.id.lower() == wanted
            servers = [self._running_child(svc, c, c.pid in intercepted)
                       for c in children.get(wanted, ()) if picked(c.service)]
            servers += [self._running_session(svc, r) for r in sessions.get(wanted, ())
                        if picked(r.service)]
            if not servers:
                continue
            self._run(svc, servers)

    def _recheck_clients(self, svc: ServiceConfig) -> None:
        """The clients of svc's intercepted server, each checked with its address."""
        m = self.master
        for rt in m.services:
            if rt.config is not svc:
                continue
            clients = [self._intercepted_client(svc, c)
                       for c in m.dispatcher.intercept.clients(rt)]
            if clients:
                self._run(svc, clients, instances=False)

    def _run(self, svc: ServiceConfig, servers: list[Running], *,
             instances: bool = True) -> None:
        """Start one recheck; it is kept (for a newer reload to cancel) only while its
        name lookups are out. Kept once done, it held the servers, sessions and
        clients it checked, the ones long gone too, until the next reload."""
        def finished() -> None:
            if job in self._jobs:
                self._jobs.remove(job)

        job = Recheck(svc, servers, self._lookup_name, on_tie=self._tie_reporter(svc),
                      instances=instances, on_done=finished)
        self._jobs.append(job)
        job.start()

    def _intercepted_client(self, svc: ServiceConfig, client: Client) -> Running:
        def end(reason: str) -> None:
            if not client.alive():
                return
            server = f"server {client.server}" if client.server else "the next server"
            self.master.program.warning(
                "recheck_servers", f"service {svc.id} client {client.peer} of {server} "
                                   f"no longer allowed (reason={reason}); disconnecting")
            client.end()

        return Running(client.peer, 0.0, end, client.alive)

    def _running_child(self, svc: ServiceConfig, child: Child,
                       intercepted: bool = False) -> Running:
        """`intercepted`: its clients are checked one by one (_recheck_clients), not
        by the address of the first one, which other clients do not share."""
        m = self.master

        def alive() -> bool:
            return (m.children.get(child.pid) is child
                    and not self.terminations.is_terminating(child))

        def end(reason: str) -> None:
            if not alive():
                return
            m.program.warning("recheck_servers",
                              f"service {svc.id} server {child.pid} from {child.peer} no "
                              f"longer allowed (reason={reason}); terminating")
            self.terminations.terminate([child])

        peer = NO_ADDRESS if intercepted else child.peer
        return Running(peer, child.start_time, end, alive)

    def _running_session(self, svc: ServiceConfig, record: SessionRecord) -> Running:
        def alive() -> bool:
            return record.session is not None and not record.session.closed

        def end(reason: str) -> None:
            if record.session is None or record.session.closed:
                return
            self.master.program.warning(
                "recheck_servers", f"service {svc.id} session from {record.peer} no "
                                   f"longer allowed (reason={reason}); closing")
            record.session.close()

        return Running(record.peer, record.start, end, alive)

    def _tie_reporter(self, svc: ServiceConfig) -> Callable[[str], None]:
        def report(peer: str) -> None:
            self.master.program.error("check_access", tie_text(svc, peer))
        return report

    def _lookup_name(self, peer: str, done: Callable[[Name], None]) -> None:
        resolver_lookup(self.master.dispatcher.access.resolver)(peer, done)
