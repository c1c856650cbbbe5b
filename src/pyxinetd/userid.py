"""USERID and IDONLY: naming the user behind a connection in the service log (§4.11).

xinetd looks the user up with ident (RFC 1413) in the child it forked for the
connection, after the access checks and before exec, so the server starts only once
the lookup has ended; START is logged at fork time, USERID (or NOID) by the child
afterwards. pyxinetd does the lookup in the loop (pyxinetd.ident) and holds the
accepted connection meanwhile, counted as a running instance of its service (as
xinetd's child is counted), then starts the server, logs START, then USERID.

  log_on_success USERID   stream, wait = no services that log at all (log_type) and
                          that xinetd would fork for: external servers, redirects, the
                          echo/discard/chargen/tcpmux builtins. A failed lookup is not
                          logged in the service log and the server starts anyway.
  + flags IDONLY          a failed lookup logs `NOID: ID A REASON` instead and drops
                          the connection; nothing is started.
  log_on_failure USERID   after a refusal the connection is kept open while its user is
                          looked up (the client's identd needs it to exist), then
                          `USERID` is logged and the connection closed. xinetd runs
                          these in helper processes, at most -logprocs of them; here at
                          most `logprocs` such lookups run at once, others are skipped.

Every lookup has a deadline: IDENT_TIMEOUT (xinetd's 30 s), and IDONLY_TIMEOUT with
IDONLY, where xinetd waits forever (docs/compatibility.md). $PYXINETD_IDENT_TIMEOUT
(seconds) overrides both; it is read once, when the daemon starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyxinetd.children import Occupancy
from pyxinetd.config.model import ServiceConfig, SocketType
from pyxinetd.ident import IdentQuery, IdentResult, Outcome, endpoints_of
from pyxinetd.internal.session import discard_input
from pyxinetd.log import ProgramLog, strerror
from pyxinetd.servicelog import ServiceLogs, noid_entry, userid_entry
from pyxinetd.loop import Loop

IDENT_TIMEOUT = 30.0
IDONLY_TIMEOUT = 120.0
TIMEOUT_ENV = "PYXINETD_IDENT_TIMEOUT"
DEFAULT_LOGPROCS = 15

# What starts a client's server once it is identified: it is given what logs the
# USERID line, to call with the configuration the server or session started as, once
# it has (its log and log_on_success decide).
Start = Callable[[Callable[[ServiceConfig], None]], None]


@dataclass
class _Held:
    """A connection whose client is being identified."""

    service: ServiceConfig
    conn: socket.socket
    peer: str
    query: IdentQuery
    start: Start | None     # None: a refused connection (log_on_failure)


def timeout_override(environ: dict[str, str] | os._Environ[str] = os.environ
                     ) -> float | None:
    text = environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


class UserIds:
    """The lookups in progress, for the dispatcher. Never blocks."""

    def __init__(self, loop: Loop, program: ProgramLog, logs: ServiceLogs,
                 occupancy: Occupancy, forks: Callable[[ServiceConfig], bool], *,
                 logprocs: int = DEFAULT_LOGPROCS, timeout: float | None = None) -> None:
        self._loop = loop
        self._program = program
        self._logs = logs
        self._occupancy = occupancy
        self._forks = forks
        # -logprocs: the most lookups for refused connections at once.
        self.logprocs = logprocs
        override = timeout if timeout is not None else timeout_override()
        self._timeout = override or IDENT_TIMEOUT
        self._idonly_timeout = override or IDONLY_TIMEOUT
        self._held: dict[int, _Held] = {}
        self._keys = itertools.count(1)
        self._refused = 0

    # -- before a server starts (log_on_success) ------------------------------
    def wanted(self, svc: ServiceConfig) -> bool:
        """True when `svc` must identify its client before its server starts."""
        return (svc.log_type is not None and "USERID" in svc.log_on_success
                and svc.socket_type is SocketType.STREAM and not svc.wait
                and self._forks(svc))

    def before_start(self, svc: ServiceConfig, conn: socket.socket, peer: str,
                     start: Start) -> None:
        """Identify the client, then call `start(identified)`, which owns `conn` from
        then on and calls `identified()` (the USERID line) once it has started the
        server or session: not for a client the rules of a reload that came meanwhile
        refuse. With IDONLY a failed lookup logs NOID and closes `conn`."""
        self._hold(svc, conn, peer, start)

    def holds(self, conn: socket.socket) -> bool:
        """Whether `conn` is held for a lookup (before its server starts, or after its
        refusal): the lookup's, whatever fails after it was handed here."""
        return any(held.conn is conn for held in self._held.values())

    def descriptors(self) -> int:
        """The descriptors the lookups under way hold: each its client's connection and
        its socket to the identity server (pyxinetd.loopshare)."""
        return 2 * len(self._held)

    def running(self) -> int:
        """Connections held for a lookup before their server starts (they count as
        running instances)."""
        return sum(1 for held in self._held.values() if held.start is not None)

    # -- after a refusal (log_on_failure) -------------------------------------
    def after_refusal(self, svc: ServiceConfig, conn: socket.socket, peer: str) -> bool:
        """Look a refused client up when the service logs USERID on failure. True:
        `conn` now belongs here (closed when the lookup ends); False: close it."""
        if svc.log_type is None or "USERID" not in svc.log_on_failure \
                or svc.socket_type is not SocketType.STREAM or svc.wait:
            return False
        if self._refused >= self.logprocs:
            self._program.debug("userid", f"{svc.id}: -logprocs limit reached; "
                                          f"{peer} not identified")
            return False
        if self._hold(svc, conn, peer, None) is None:
            return False
        self._refused += 1
        return True

    # -- reload and shutdown ----------------------------------------------------
    def rehome(self, moves: Mapping[int, ServiceConfig]) -> None:
        """A reload kept services (`moves`, ServiceConfig.moved): their lookups belong
        to the new ones (a later reload that removes them finds them)."""
        for held in self._held.values():
            moved = held.service.moved(moves)
            if moved is not None:
                held.service = moved

    def cancel(self, selected: Callable[[ServiceConfig], bool]) -> int:
        """Drop the lookups of the services `selected` picks (a reload removed them):
        their connections are closed, nothing is started. Returns how many."""
        doomed = [key for key, held in self._held.items() if selected(held.service)]
        for key in doomed:
            held = self._release(key)
            if held is not None:
                held.query.cancel()
                held.conn.close()
        return len(doomed)

    def close(self) -> None:
        self.cancel(lambda svc: True)

    # -- the lookups --------------------------------------------------------------
    def _hold(self, svc: ServiceConfig, conn: socket.socket, peer: str,
              start: Start | None) -> _Held | None:
        try:
            where = dataclasses.replace(endpoints_of(conn), peer_name=peer)
        except OSError as err:
            # The client is already gone (ENOTCONN): xinetd's `system error`.
            self._program.error("log_remote_user",
                                f"getpeername: {strerror(err)} (client {peer})")
            if start is not None:
                self._ended(svc, conn, peer, start, IdentResult(Outcome.ERROR))
            return None
        key = next(self._keys)
        timeout = self._idonly_timeout if start is not None and "IDONLY" in svc.flags \
            else self._timeout
        query = IdentQuery(self._loop, where, timeout,
                           lambda result: self._looked_up(key, result),
                           self._program.error)
        held = _Held(svc, conn, peer, query, start)
        self._held[key] = held
        if start is not None:
            self._occupancy.add(svc.id, peer)
        query.start()
        return held

    def _release(self, key: int) -> _Held | None:
        held = self._held.pop(key, None)
        if held is None:
            return None
        if held.start is not None:
            self._occupancy.remove(held.service.id, held.peer)
        else:
            self._refused -= 1
        return held

    def _looked_up(self, key: int, result: IdentResult) -> None:
        held = self._release(key)
        if held is None:
            return
        if held.start is None:
            self._refusal_ended(held, result)
        else:
            self._ended(held.service, held.conn, held.peer, held.start, result)

    def _ended(self, svc: ServiceConfig, conn: socket.socket, peer: str,
               start: Start, result: IdentResult) -> None:
        if result.outcome is not Outcome.OK and "IDONLY" in svc.flags:
            self._logs.write(svc, noid_entry(svc, peer, result.outcome.reason))
            conn.close()
            return
        def identified(started: ServiceConfig) -> None:
            # `started`: the configuration the server started as (a reload may have
            # dropped USERID from log_on_success, or moved the log, meanwhile).
            if (result.userid is not None and started.log_type is not None
                    and "USERID" in started.log_on_success):
                self._logs.write(started, userid_entry(started, result.userid))
        start(identified)

    def _refusal_ended(self, held: _Held, result: IdentResult) -> None:
        if result.userid is not None:
            self._logs.write(held.service, userid_entry(held.service, result.userid))
        elif result.outcome is not Outcome.NO_SERVER:
            self._program.error("stream_logging",
                                f"Failed to contact identity server at {held.peer}: "
                                f"{result.outcome.reason}")
        discard_input(held.conn)    # as for any refusal (Dispatcher.refuse)
        held.conn.close()
