"""Stream builtins, tcpmux and redirect served in the loop: the in-loop sessions.

Reference §4.3. These requests never fork, yet each holds an instance slot for as long
as its connection lasts, like a server would: the session is counted in the shared
occupancy from its START until its connection closes, and removing its service on a
reload closes it. Kept apart from dispatch.py, which decides *that* a request is served
in the loop (after the same checks as every other request); this module only runs the
session and keeps its record.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pyxinetd import banners, internal, loopshare
from pyxinetd.access import lists
from pyxinetd.children import Occupancy
from pyxinetd.config.model import ServiceConfig
from pyxinetd.internal import tcpmux
from pyxinetd.internal.status import MasterView
from pyxinetd.listener import peer_text, reset_on_close
from pyxinetd.log import ProgramLog
from pyxinetd.servicelog import (
    ServiceLogs, exit_entry, start_entry, traffic_entry, whole_seconds,
)
from pyxinetd.loop import Loop
from pyxinetd.service import ServiceRuntime, State
from pyxinetd.textbytes import as_written

# Builtins xinetd forks (they log EXIT when they end); the others never do.
FORKING_BUILTINS = frozenset({"echo", "discard", "chargen", "tcpmux"})

# Starts an external server on an accepted connection (tcpmux hands its client over).
Launch = Callable[[ServiceConfig, socket.socket, tuple[object, ...], str], None]


@dataclass
class SessionRecord:
    """One in-loop session: the configuration it was started with, its client and
    when it started (loop clock, and wall clock for the logged duration). `session` is
    None only while it is being set up."""

    service: ServiceConfig
    peer: str
    start: float
    started_at: float
    session: internal.Session | None = field(default=None)
    conn: socket.socket | None = field(default=None)    # its client's connection
    # A tcpmux session that became its TCPMUX service's server: its slot went with it.
    handed_over: bool = False


class Sessions:
    """The in-loop sessions, keyed by a private counter (they have no pid)."""

    def __init__(self, loop: Loop, occupancy: Occupancy, program: ProgramLog,
                 logs: ServiceLogs, *, services: Callable[[], Sequence[ServiceRuntime]],
                 view: MasterView, launch: Launch) -> None:
        self.loop = loop
        self.occupancy = occupancy
        self.program = program
        self.logs = logs
        self._services = services
        self._view = view
        self._launch = launch
        self._records: dict[int, SessionRecord] = {}
        self._ids = iter(range(1, 1 << 62))
        # The descriptors the open sessions hold (pyxinetd.loopshare).
        self.descriptors = 0

    def __len__(self) -> int:
        return len(self._records)

    def start(self, svc: ServiceConfig, conn: socket.socket,
              addr: tuple[object, ...], peer: str,
              started: Callable[[ServiceConfig], None] | None = None) -> None:
        """Serve an accepted (and admitted) connection in the loop; takes `conn` over.
        `started(svc)` runs right after the START line (the USERID line goes there: the
        session may end, and log its EXIT, before this returns)."""
        key = next(self._ids)
        record = SessionRecord(svc, peer, self.loop.clock(), time.time(), conn=conn)
        self._records[key] = record
        cost = loopshare.session_cost(svc)
        self.descriptors += cost
        self.occupancy.add(svc.id, peer)
        if svc.log_type is not None:
            self.logs.write(svc, start_entry(svc, 0, peer))
        if started is not None:
            started(svc)
        greeting = b""
        if svc.banner_success:
            greeting = banners.load(svc, banners.Moment.SUCCESS, self._banner_error, peer)
        # A TCPMUXPLUS service served here (a redirect, a builtin) has no launch to send
        # its `+Go`: it leads the greeting, before the banner_success, as in a launch.
        greeting = tcpmux.acknowledgement(svc) + greeting

        def closed(bytes_in: int | None = None, bytes_out: int | None = None) -> None:
            if self._records.pop(key, None) is None:
                return
            self.descriptors -= cost
            if not record.handed_over:
                self.occupancy.remove(svc.id, peer)
            if bytes_in is not None and bytes_out is not None and svc.log_type is not None:
                # TRAFFIC counts what this session relayed under the rules it was
                # started with ...
                self.logs.write(svc, traffic_entry(svc, bytes_in, bytes_out))
            # ... but EXIT goes where the service logs now (rehome()), as xinetd's
            # master logs the EXIT of the forked builtin or redirect it reaps, and as
            # an external server's EXIT is logged.
            now = record.service
            if now.log_type is not None and (svc.is_redirect or svc.name in FORKING_BUILTINS):
                duration = whole_seconds(record.started_at, self.loop.clock() - record.start)
                self.logs.write(now, exit_entry(now, 0, ("status", 0), duration))

        try:
            if svc.is_redirect:
                def unreachable(text: str) -> None:
                    # on_error replaces on_close: release the session here (no TRAFFIC).
                    # xinetd's text names the target only; the client is added.
                    self.program.error("redirect", f"{text} (client {peer})")
                    closed()
                record.session = internal.start_redirect(
                    self.loop, svc, conn, addr, closed, unreachable, greeting=greeting)
            elif svc.name == "tcpmux":
                def hand_over(target: ServiceConfig, conn: socket.socket,
                              addr: tuple[object, ...]) -> None:
                    # The session becomes the TCPMUX service's server, as xinetd's
                    # tcpmux child execs it: one process, one slot. Its own goes back
                    # before that service's checks count the running servers, or
                    # `-limit 1` (N with N-1 running) refused every such client.
                    if self._records.get(key) is record and not record.handed_over:
                        record.handed_over = True
                        self.occupancy.remove(svc.id, peer)
                    self._tcpmux_launch(target, conn, addr)

                record.session = internal.start_tcpmux(
                    self.loop, svc, conn, addr, self._tcpmux_lookup, hand_over,
                    closed, names=lambda: self._tcpmux_names(peer), greeting=greeting,
                    report=lambda text: self.program.error(
                        "tcpmux_handler", f"{text} (client {peer}: no service name line)"))
            else:
                record.session = internal.start_stream(self.loop, svc, conn, addr, closed,
                                                       view=self._view, greeting=greeting)
                if record.session.closed:
                    # Served and closed inside start_stream (the request and its EOF
                    # were already queued): its on_close waits for the end of the loop
                    # turn, but the slot is free now. The client may already be
                    # connecting again, and the accept batch still running would refuse
                    # it for `instances` or `per_source`.
                    closed()
        except (ValueError, OSError) as err:
            self.program.error("internal", f"{svc.id}: {err}")
            conn.close()
            closed()
        except BaseException:
            if record.session is None:
                closed()    # never started: the slot is free, the caller has `conn`
            raise

    def reset(self, conn: socket.socket) -> bool:
        """End the session serving `conn` with a reset, if one does: its teardown stops
        watching the connection before closing it and gives its slot back (closed
        under it, the session would watch a descriptor number the next accept
        reuses). Whether one did."""
        for record in list(self._records.values()):
            if record.conn is conn and record.session is not None:
                reset_on_close(conn)
                _close(record)
                return True
        return False

    def _banner_error(self, text: str) -> None:
        self.program.error("banner", text)

    def _tcpmux_lookup(self, name: str) -> ServiceConfig | None:
        # Compared as bytes, ignoring the case of ASCII letters only: xinetd's
        # strcasecmp() in the C locale (`CAF\xc9` is not `caf\xe9`, nor `\u212a` `k`).
        wanted = as_written(name).lower()
        for rt in self._services():
            svc = rt.config
            if svc.is_tcpmux_client and as_written(svc.name).lower() == wanted \
                    and rt.state is State.ACTIVE:
                return svc
        return None

    def _tcpmux_names(self, peer: str) -> list[str]:
        """`help`'s list for the client `peer`: the TCPMUX services that are up, but
        those whose only_from/no_access turn its address away (their names are
        nobody's business there); one whose verdict needs the client's name is listed."""
        return [rt.config.name for rt in self._services()
                if rt.config.is_tcpmux_client and rt.state is State.ACTIVE
                and (lists.check(rt.config, peer).allowed
                     or lists.depends_on_name(rt.config, peer))]

    def _tcpmux_launch(self, svc: ServiceConfig, conn: socket.socket,
                       addr: tuple[object, ...]) -> None:
        self._launch(svc, conn, addr, peer_text(addr))

    def open(self) -> list[SessionRecord]:
        """The sessions, oldest first."""
        return list(self._records.values())

    def rehome(self, moves: Mapping[int, ServiceConfig]) -> None:
        """A reload kept services (`moves`, ServiceConfig.moved): their sessions now
        belong to the new ones (a later reload or recheck finds them there) and log
        their EXIT with them."""
        for record in self._records.values():
            moved = record.service.moved(moves)
            if moved is not None:
                record.service = moved

    def close_matching(self, selected: Callable[[ServiceConfig], bool]) -> int:
        """Close the sessions whose service `selected` picks; each one releases its
        instance count through its on_close. Returns how many."""
        doomed = [r for r in self._records.values() if selected(r.service)]
        for record in doomed:
            _close(record)
        return len(doomed)

    def close_all(self) -> None:
        for record in list(self._records.values()):
            _close(record)
        self._records.clear()
        self.descriptors = 0


def _close(record: SessionRecord) -> None:
    if record.session is not None and not record.session.closed:
        record.session.close()
