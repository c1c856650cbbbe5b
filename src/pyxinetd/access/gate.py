"""The access checks dispatch runs after the parent checks (reference §4.4, §4.14).

Order, as in xinetd's child: only_from/no_access (FAIL reason `address`), then TCP
Wrappers unless the service has NOLIBWRAP (reason `libwrap`). pyxinetd runs both in the
master, before any process is created.

Cost per request: a service without address lists, whose hosts tables are empty (or
that has NOLIBWRAP), gets one cached plan lookup and one boolean test. The connection's
endpoints (getsockname/getpeername) are read only when a rule can use them (`daemon@host`
patterns, `%A %H %N %R %r %s`, banners). A datagram request has no connection: its
dispatcher passes a `Datagram` (the service socket and the sender's address) instead. A request is decided at once unless it needs
something the loop must not wait for; then `check` answers None and `wait` parks it:
- host names (the client's, or the server's for `daemon@host` patterns and `%N`, also
  when a banner file of the matched rule, or of a rule a failed aclexec hands over to,
  asks for them), looked up by the resolver
  helper (pyxinetd.access.resolver) with a deadline each;
- an `aclexec` check of the matched rule: the helper runs the commands and the exit
  status decides, within `aclexec_timeout` seconds (then the check is killed and counts
  as failed: the rule does not apply, exactly as a non-zero status).
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from pyxinetd.access import lists
from pyxinetd.access.hostsbanners import send_banner
from pyxinetd.access.hostsaccess import NO_SETUP, Decision, evaluate
from pyxinetd.access.hostsoptions import unasked_reader
from pyxinetd.access.hostspatterns import (
    Endpoint, Lookups, NameNeverAsked, NameNotLookedUp, Request, files_need_names, normalize_address,
    wrap_address,
)
from pyxinetd.access.hoststables import DEFAULT_ALLOW, DEFAULT_DENY, HostsTables, TablesView
from pyxinetd.access.resolver import NameInfo, NotRun, Resolver
from pyxinetd.access.serviceplan import ServicePlan, command_context, plan_for
from pyxinetd.config.model import ServiceConfig
from pyxinetd.listener import peer_text
from pyxinetd.log import Level, ProgramLog
from pyxinetd.loop import Loop
from pyxinetd.peerenv import PEERENV_FLAG
from pyxinetd.spawnrequest import TWIST_FLAG

REASON_ADDRESS = "address"
REASON_LIBWRAP = "libwrap"
REASON_FORK = "fork"
# Environment variables that point the daemon at other tables (tests, chroots).
ALLOW_ENV = "PYXINETD_HOSTS_ALLOW"
DENY_ENV = "PYXINETD_HOSTS_DENY"
# How long an aclexec check may run (libwrap waits for ever; the request is parked).
ACLEXEC_TIMEOUT = 10.0
# `severity` level -> the program-log level of the refusal line (default INFO).
SEVERITY_LEVELS = {"emerg": Level.CRITICAL, "alert": Level.CRITICAL, "crit": Level.CRITICAL,
                   "err": Level.ERROR, "warning": Level.WARNING, "notice": Level.NOTICE,
                   "info": Level.INFO, "debug": Level.DEBUG}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str | None = None            # FAIL reason when refused
    decision: Decision | None = None     # what hosts_access asked for


PASS = Verdict(True)
# A name the rules need could not be looked up: no process for the resolver helper.
NO_PROCESS = Verdict(False, REASON_FORK)
# What `AccessGate.wait` answers when a reload replaced the service's rules before they
# were applied: nothing was decided or run (see `wait`'s `replaced`); ask again.
RULES_REPLACED = Verdict(False, "rules replaced")


@dataclass(frozen=True)
class Endpoints:
    """What the rules may read of the connection besides the client address."""

    client_port: int = 0
    server: str | None = None
    server_port: int = 0


NO_ENDPOINTS = Endpoints()


@dataclass(frozen=True)
class Datagram:
    """A datagram request: the service socket it came in on and its sender's address
    (what recvfrom gave). Socket options never apply to it; a banner is read (libwrap
    warns about it) but not sent, and its `%n`/`%N` look nothing up."""

    sock: socket.socket
    sender: tuple[object, ...]


def endpoints(svc: ServiceConfig, conn: socket.socket | None,
              datagram: Datagram | None = None) -> Endpoints:
    """The accepted connection's ports and local address; for a datagram, the sender's
    port and the service socket's address (a wildcard bind reads as 0.0.0.0 or ::, which
    is what getsockname gives libwrap on such a socket). Without either, the service's
    configured address and port."""
    if conn is not None:
        try:
            local, remote = conn.getsockname(), conn.getpeername()
        except OSError:
            pass
        else:
            if isinstance(local, tuple) and isinstance(remote, tuple):
                return Endpoints(int(remote[1]), wrap_address(peer_text(local)),
                                 int(local[1]))
    wildcard = "::" if svc.family == socket.AF_INET6 else "0.0.0.0"
    fallback = Endpoints(0, normalize_address(svc.bind or wildcard), svc.port or 0)
    if datagram is None:
        return fallback
    sender = datagram.sender
    client_port = sender[1] if len(sender) >= 2 and isinstance(sender[1], int) else 0
    try:
        local = datagram.sock.getsockname()
    except OSError:
        # Closed meanwhile (a reload): the configured address is the best we know.
        return replace(fallback, client_port=client_port)
    if not isinstance(local, tuple):
        return replace(fallback, client_port=client_port)
    return Endpoints(client_port, wrap_address(peer_text(local)), int(local[1]))


# libwrap keeps a host name in a buffer of this many bytes, the final NUL included: a
# longer name is cut, and the forward lookup of what is left fails (PARANOID).
WRAP_NAME_BUFFER = 128


def _endpoint(address: str | None, info: NameInfo | None, port: int, *,
              pending: bool = False) -> Endpoint:
    """A confirmed name is the host's name; an unconfirmed one makes it PARANOID, and so
    does one too long for libwrap's buffer. No `info`: the name was never asked for
    (`_wants` judged no rule reads it), and reading it is a bug (Endpoint.unasked);
    unless `pending`, its lookup not yet answered. An endpoint without an address has
    no name to ask for: it is `unknown`."""
    if info is not None and info.not_looked_up:
        return Endpoint(address, port=port, lazy=True, not_looked_up=info.not_looked_up)
    if info is None:
        return Endpoint(address, port=port, lazy=True,
                        unasked=address is not None and not pending)
    if info.name is None:
        return Endpoint(address, port=port, lazy=True)
    if info.confirmed and len(os.fsencode(info.name)) < WRAP_NAME_BUFFER:
        return Endpoint(address, name=info.name, port=port, lazy=True)
    return Endpoint(address, paranoid=True, port=port, lazy=True, mismatch=info.mismatch)


class AccessGate:
    def __init__(self, loop: Loop, program: ProgramLog, *, tables: HostsTables | None = None,
                 resolver: Resolver | None = None, lookups: Lookups | None = None,
                 aclexec_timeout: float = ACLEXEC_TIMEOUT) -> None:
        self.loop = loop
        self.program = program
        self.tables = tables or HostsTables(
            os.environ.get(ALLOW_ENV, DEFAULT_ALLOW), os.environ.get(DENY_ENV, DEFAULT_DENY),
            clock=loop.clock,
            on_warning=lambda text: program.warning("hosts_access", text))
        self.resolver = resolver or Resolver(
            loop, on_error=lambda text: program.error("resolver", text))
        self.lookups = lookups or Lookups(
            on_warning=lambda text: program.warning("hosts_access", text))
        self.aclexec_timeout = aclexec_timeout
        # One plan per service id, for the configuration it was worked out for: a
        # reload's new configuration replaces it, so the table never holds more than
        # the services there are (keyed by the object, it kept every configuration of
        # every service since the start, one more set per reload).
        self._plans: dict[str, tuple[ServiceConfig, ServicePlan]] = {}
        # Connections parked in `wait` until their verdict is given: the wait's,
        # whatever fails after they were parked.
        self._parked: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def _plan(self, svc: ServiceConfig) -> ServicePlan:
        cached = self._plans.get(svc.id)
        if cached is not None and cached[0] is svc:
            return cached[1]
        plan = plan_for(svc)
        self._plans[svc.id] = (svc, plan)
        return plan

    def keep_plans(self, service_ids: set[str]) -> None:
        """Forget the plans of the ids a reload removed: keyed by id, the table would
        otherwise keep one configuration of every id the daemon ever served."""
        self._plans = {sid: plan for sid, plan in self._plans.items() if sid in service_ids}

    @staticmethod
    def _wrap(plan: ServicePlan, tables: TablesView) -> bool:
        return plan.wrap and not tables.empty

    @staticmethod
    def _ends(svc: ServiceConfig, wrap: bool, tables: TablesView, peer: str,
              conn: socket.socket | None, datagram: Datagram | None) -> Endpoints:
        if not (wrap and tables.endpoints):
            return NO_ENDPOINTS
        if conn is None and datagram is None and lists.parse_peer(peer) is None:
            # A stream wait = yes request: libwrap, handed the listening socket, finds
            # no client address (getpeername fails) and stops there, so the server's
            # address and ports are `unknown` too (sock_host).
            return NO_ENDPOINTS
        return endpoints(svc, conn, datagram)

    @staticmethod
    def _wants(svc: ServiceConfig, plan: ServicePlan, wrap: bool, peer: str, ends: Endpoints,
               tables: TablesView, lookups: Lookups) -> tuple[bool, bool]:
        """Which names the request must wait for: (the client's, the server's). A
        `/file` list needs one only when a word of it does, as read through the
        request's `lookups` (Lookups.for_request), which then judge it, as the same
        `tables` do (rewritten meanwhile, they may need a name never looked up)."""
        client_files, server_files = tables.files(plan.daemon) if wrap else ((), ())
        client_names, server_names = tables.names(plan.daemon) if wrap else (False, False)
        # The lists want the client's name only when a name can change their verdict
        # (xinetd looks a name up only when its scan reaches a name entry): a client
        # a numeric entry decides is not held for a lookup.
        client = lists.parse_peer(peer) is not None and (
            (plan.list_names and lists.depends_on_name(svc, peer)) or (wrap and (
                client_names
                or files_need_names(list(client_files), lookups))))
        server = wrap and ends.server is not None and (
            server_names
            or files_need_names(list(server_files), lookups))
        return client, server

    def check(self, svc: ServiceConfig, peer: str, conn: socket.socket | None = None,
              datagram: Datagram | None = None) -> Verdict | None:
        """The verdict now, or None when it must wait (names, aclexec): then call
        `wait`. `conn`: the accepted connection, when there is one; `datagram`: the
        service socket and sender of a datagram request."""
        # Every request passes here: the plan lookup and the TCP Wrappers test are
        # written out (`_plan`, `_wrap`), since most requests end at PASS.
        cached = self._plans.get(svc.id)
        plan = cached[1] if cached is not None and cached[0] is svc else self._plan(svc)
        tables = self.tables.view()
        wrap = plan.wrap and not tables.empty
        if not plan.lists and not wrap:
            return PASS
        ends = self._ends(svc, wrap, tables, peer, conn, datagram)
        lookups = self.lookups.for_request(svc)
        if any(self._wants(svc, plan, wrap, peer, ends, tables, lookups)):
            return None
        outcome = self._judge(svc, plan, peer, ends, None, None, tables, lookups)
        if isinstance(outcome, Verdict):
            return outcome
        decision = outcome
        if decision.aclexec or conn is not None and any(
                self._banner_wants(plan, decision, peer, ends, lookups)):
            return None
        self._start(plan, decision, conn, svc.id, peer, lookups)
        return self._verdict(svc, plan, peer, decision)

    def holds(self, conn: socket.socket) -> bool:
        """Whether `conn` is parked in a `wait` whose verdict is not given yet."""
        return conn in self._parked

    def wait(self, svc: ServiceConfig, peer: str, done: Callable[[Verdict], None],
             conn: socket.socket | None = None, datagram: Datagram | None = None, *,
             replaced: Callable[[], bool] | None = None) -> None:
        """Look the names up and run the aclexec check without blocking, then call
        `done` (never before returning) with the verdict. `replaced`: whether a reload
        has since replaced `svc`'s rules; asked when the rules are about to be applied
        (the names are in, or a failed aclexec hands over to the next rule), and if so
        nothing is decided, sent or run (no banner, spawn or twist of the old rules)
        and `done` gets RULES_REPLACED. `conn` is parked here (`holds`) until then."""
        if conn is None:
            self._wait(svc, peer, done, conn, datagram, replaced)
            return
        try:
            self._wait(svc, peer, self._parking(conn, done), conn, datagram, replaced)
        except BaseException:
            self._parked.discard(conn)  # nothing waits: the caller has it
            raise

    def _wait(self, svc: ServiceConfig, peer: str, done: Callable[[Verdict], None],
              conn: socket.socket | None, datagram: Datagram | None,
              replaced: Callable[[], bool] | None) -> None:
        plan = self._plan(svc)
        tables = self.tables.view()
        wrap = self._wrap(plan, tables)
        ends = self._ends(svc, wrap, tables, peer, conn, datagram)
        lookups = self.lookups.for_request(svc)
        want_client, want_server = self._wants(svc, plan, wrap, peer, ends, tables, lookups)
        if wrap and conn is not None and tables.endpoints \
                and not (want_client and want_server):
            # A banner file's %n/%N looks the name up in libwrap: known only once the
            # rule that sends it has been found (rare: banners with those letters). A
            # failed aclexec hands over to the next matching rule, whose banners may
            # ask for a name too: every rule of the chain may end up sending its own.
            # Names asked for here count as unknown until they come.
            decision: Decision | None = self._preview(plan, peer, ends, tables, lookups,
                                                      (want_client, want_server))
            while decision is not None:
                banner_client, banner_server = self._banner_wants(plan, decision, peer,
                                                                  ends, lookups)
                want_client, want_server = (want_client or banner_client,
                                            want_server or banner_server)
                decision = decision.otherwise
        names: dict[str, NameInfo] = {}
        missing = int(want_client) + int(want_server)
        banners_seen = not (wrap and conn is not None and tables.endpoints)

        def proceed() -> None:
            nonlocal banners_seen, missing
            if replaced is not None and replaced():
                done(RULES_REPLACED)
                return
            if any(info.unavailable for info in names.values()):
                # No process for the lookup: xinetd's child, which would have checked,
                # could not be forked either; given up as its retry gives up.
                done(NO_PROCESS)
                return
            if not banners_seen:
                # The names that came in may match a rule the preview (which read them
                # as unknown) did not: its banners may ask for the other name.
                banners_seen = True
                more = [side for side in self._banner_names(plan, peer, ends, tables,
                                                            lookups, names)
                        if side not in names]
                if more:
                    missing = len(more)
                    for side in more:
                        look_up(side)
                    return
            outcome = self._judge(svc, plan, peer, ends, names.get("client"),
                                  names.get("server"), tables, lookups)
            if isinstance(outcome, Verdict):
                done(outcome)
            elif conn is not None and self._banners_unasked(svc, plan, peer, outcome,
                                                            lookups):
                done(Verdict(False, REASON_LIBWRAP))
            else:
                self._settle(svc, plan, peer, outcome, conn, done, lookups, replaced)

        def arrived(side: str, info: NameInfo) -> None:
            nonlocal missing
            names[side] = info
            missing -= 1
            if missing == 0:
                proceed()

        def look_up(side: str) -> None:
            address = peer if side == "client" else ends.server
            assert address is not None
            self.resolver.lookup(normalize_address(address), lambda i: arrived(side, i))

        if want_client:
            look_up("client")
        if want_server and ends.server is not None:
            look_up("server")
        if missing == 0:
            self.loop.call_soon(proceed)

    def _parking(self, conn: socket.socket, done: Callable[[Verdict], None]
                 ) -> Callable[[Verdict], None]:
        """`done`, once `conn` is no longer parked: the verdict's callback has it."""
        self._parked.add(conn)

        def given(verdict: Verdict) -> None:
            self._parked.discard(conn)
            done(verdict)
        return given

    def _judge(self, svc: ServiceConfig, plan: ServicePlan, peer: str, ends: Endpoints,
               client: NameInfo | None, server: NameInfo | None, tables: TablesView,
               lookups: Lookups) -> Verdict | Decision:
        """The address lists' verdict, or what hosts_access decided (nothing run yet)."""
        if plan.lists:
            if client is not None and client.not_looked_up \
                    and lists.depends_on_name(svc, peer):
                self._not_looked_up(svc, peer, peer, client.not_looked_up)
                return Verdict(False, REASON_ADDRESS)
            if client is None and plan.list_names and lists.depends_on_name(svc, peer):
                self._never_asked(svc, peer, peer, "the only_from/no_access names")
                return Verdict(False, REASON_ADDRESS)
            result = lists.check(svc, peer, client.name if client is not None else None)
            if result.tie:
                self.program.error("check_access", lists.tie_text(svc, peer))
            if not result.allowed:
                return Verdict(False, REASON_ADDRESS)
        if not self._wrap(plan, tables):
            return PASS
        request = self._request(plan, peer, ends, client, server)
        try:
            decision = evaluate(tables.allow, tables.deny, request, lookups)
        except NameNeverAsked:
            pass    # noted in the endpoint's trips: said below
        except NameNotLookedUp as missing:
            address, why = missing.args[:2]
            self._not_looked_up(svc, peer, str(address), str(why))
            return Verdict(False, REASON_LIBWRAP)
        else:
            if not (request.client.trips or request.server.trips):
                return decision
        # Even when a later list item decided without it (the list swallowed the
        # error), a name read but never asked for shows a wrong choice of names.
        for end in (request.client, request.server):
            if end.trips:
                self._never_asked(svc, peer, end.addr_text, end.trips[0])
        return Verdict(False, REASON_LIBWRAP)

    def _never_asked(self, svc: ServiceConfig, peer: str, address: str, reader: str
                     ) -> None:
        """The line of a request refused because `reader` (a pattern, a `%` letter, an
        address list) read a name no lookup was asked for: a bug, shown, never judged
        as `unknown` (a deny by name would have been skipped)."""
        self.program.error("internal_error",
                           f"internal error in access checks: {reader} read the name "
                           f"of {address}, never asked for: {svc.id} from {peer} refused")

    def _not_looked_up(self, svc: ServiceConfig, peer: str, address: str, why: str
                       ) -> None:
        """The line of a request refused because a name its verdict needed was never
        looked up (`address`: the client's, or the server's for `daemon@host`)."""
        self.program.warning("check_access", f"the name of {address} was not looked up "
                                             f"({why}): {svc.id} from {peer} refused")

    @staticmethod
    def _request(plan: ServicePlan, peer: str, ends: Endpoints, client: NameInfo | None,
                 server: NameInfo | None, pending: tuple[bool, bool] = (False, False)
                 ) -> Request:
        """The request hosts_access judges; a name without its NameInfo was never asked
        for, unless `pending` says its lookup is (client, server)."""
        address = wrap_address(peer) if lists.parse_peer(peer) is not None else None
        return Request(plan.daemon,
                       _endpoint(address, client, ends.client_port, pending=pending[0]),
                       _endpoint(ends.server, server, ends.server_port, pending=pending[1]),
                       pid=os.getpid(), resident=plan.resident)

    def _preview(self, plan: ServicePlan, peer: str, ends: Endpoints, tables: TablesView,
                 lookups: Lookups, pending: tuple[bool, bool]) -> Decision | None:
        """What hosts_access decides before any name is in (those `pending` unknown):
        to find the banners that ask for names. None when it reads a name never asked
        for: the judging refuses it, and says so."""
        try:
            return evaluate(tables.allow, tables.deny,
                            self._request(plan, peer, ends, None, None, pending), lookups)
        except NameNeverAsked:
            return None

    def _banner_names(self, plan: ServicePlan, peer: str, ends: Endpoints,
                      tables: TablesView, lookups: Lookups, names: dict[str, NameInfo]
                      ) -> list[str]:
        """The names ("client", "server") the banner files of the rules that decide
        with `names` ask for (those of the rules a failed aclexec hands over to
        included); none when the rules read a name never asked for (the judging
        refuses it, and says so)."""
        try:
            decision: Decision | None = evaluate(
                tables.allow, tables.deny,
                self._request(plan, peer, ends, names.get("client"), names.get("server")),
                lookups)
        except NameNotLookedUp:
            return []
        client = server = False
        while decision is not None:
            banner_client, banner_server = self._banner_wants(plan, decision, peer, ends,
                                                              lookups)
            client, server = client or banner_client, server or banner_server
            decision = decision.otherwise
        return [side for side, wanted in (("client", client), ("server", server)) if wanted]

    @staticmethod
    def _banner_wants(plan: ServicePlan, decision: Decision, peer: str, ends: Endpoints,
                      lookups: Lookups) -> tuple[bool, bool]:
        """Which names the decision's banner files ask for with %n/%N (client, server)
        that no lookup was planned for, as the request's `lookups` read them (those the
        rules were judged with)."""
        client = server = False
        for banner in decision.banners:
            letters = lookups.banner_letters(os.path.join(banner.folder, plan.daemon))
            request = banner.request
            client = client or ("n" in letters and lists.parse_peer(peer) is not None
                                and request.client.name is None)
            server = server or ("N" in letters and ends.server is not None
                                and request.server.name is None)
        return client, server

    def _banners_unasked(self, svc: ServiceConfig, plan: ServicePlan, peer: str,
                         decision: Decision, lookups: Lookups) -> bool:
        """Whether a banner file the decision (or a rule a failed aclexec hands over
        to) would send reads a name never asked for: then said, as `_judge` does."""
        chain: Decision | None = decision
        while chain is not None:
            for banner in chain.banners:
                path = os.path.join(banner.folder, plan.daemon)
                unasked = unasked_reader(lookups.banner_letters(path), banner.request)
                if unasked is not None:
                    end, letter = unasked
                    self._never_asked(svc, peer, end.addr_text, f"{letter} in {path}")
                    return True
            chain = chain.otherwise
        return False

    def _start(self, plan: ServicePlan, decision: Decision, conn: socket.socket | None,
               service_id: str, peer: str, lookups: Lookups) -> None:
        """What the matched rule does whatever the verdict, and whatever its aclexec
        check will say: banners sent (libwrap sends them as it processes the options:
        a refusing rule's reach the client too, before banner_fail), errors logged,
        spawns run. Messages in libwrap's order: each banner's after the options
        before it."""
        banners = list(decision.banners)
        for note in decision.notes:
            self.program.warning("hosts_access", note)
        for step, line in enumerate((*decision.trace, "")):
            while banners and banners[0].step <= step:
                # As the request read it when its names were decided: read again, a
                # rewrite meanwhile could ask for a name never looked up.
                banner = banners.pop(0)
                send_banner(banner,
                            lookups.banner_text(os.path.join(banner.folder, plan.daemon)),
                            conn, lambda text: self.program.warning("hosts_access", text))
            if line.startswith("error:"):
                self.program.error("hosts_access", line[len("error: "):])
            elif line.startswith("warning:"):
                self.program.warning("hosts_access", line[len("warning: "):])
        setups = decision.spawn_setup or (NO_SETUP,) * len(decision.spawn)
        for command, setup in zip(decision.spawn, setups):
            self.resolver.run_shell(command, command_context(plan, setup),
                                    about=f"for {service_id} from {peer}")

    def _settle(self, svc: ServiceConfig, plan: ServicePlan, peer: str, decision: Decision,
                conn: socket.socket | None, done: Callable[[Verdict], None],
                lookups: Lookups, replaced: Callable[[], bool] | None = None) -> None:
        """Run the decision's aclexec check, if any, then call `done`. `lookups`: the
        request's, whose banner files were read when its names were decided."""
        self._start(plan, decision, conn, svc.id, peer, lookups)
        if not decision.aclexec:
            done(self._verdict(svc, plan, peer, decision))
            return

        def finished(status: int | None | NotRun) -> None:
            if status == 0:
                done(self._verdict(svc, plan, peer, decision))
                return
            if isinstance(status, NotRun):
                # Never run: not a failed check, whose rule would not apply (a denying
                # one skipped would let the client in). For want of a process, the
                # request is given up as a failed fork; otherwise refused by the rule
                # the check was to decide.
                if self.resolver.no_process:
                    done(NO_PROCESS)
                    return
                self.program.warning("libwrap", f"aclexec not run ({status.why}) "
                                                f"({decision.matched}) for {svc.id} from "
                                                f"{peer}: refused")
                done(Verdict(False, REASON_LIBWRAP))
                return
            outcome = (f"returned {status}" if status is not None else
                       f"did not finish within {self.aclexec_timeout:g} s (killed)")
            self.program.info("libwrap", f"aclexec {outcome} ({decision.matched}) for "
                                         f"{svc.id} from {peer}: the rule does not apply")
            if replaced is not None and replaced():
                # The rule handed over to was found by the old rules.
                done(RULES_REPLACED)
                return
            self._settle(svc, plan, peer, decision.otherwise or Decision("granted"),
                         conn, done, lookups, replaced)

        self.resolver.run_check(decision.aclexec, self.aclexec_timeout, finished,
                                command_context(plan, decision.aclexec_setup))

    def _verdict(self, svc: ServiceConfig, plan: ServicePlan, peer: str,
                 decision: Decision) -> Verdict:
        if decision.access == "denied":
            level = SEVERITY_LEVELS.get(decision.severity or "info", Level.INFO)
            # xinetd's function name: shown on CRITICAL lines (`severity crit`).
            # `severity debug` too: xinetd writes that DEBUG line without -d.
            self.program.log(level, "access_control",
                             f"libwrap refused connection to {svc.id} "
                             f"(libwrap={plan.daemon}) from {peer}", always=True)
            return Verdict(False, REASON_LIBWRAP, decision)
        if decision.matched is None or decision.trace == ():
            return PASS
        return Verdict(True, None, decision)

    def prepare(self, svc: ServiceConfig, verdict: Verdict, conn: socket.socket | None,
                peer: str) -> ServiceConfig:
        """Apply what an allowing hosts_access rule asked for; returns the service to run
        (a twist replaces the server by `/bin/sh -c command`)."""
        decision = verdict.decision
        if decision is None:
            return svc
        prepared = self._prepared(svc, decision, peer)
        if conn is not None:
            self._socket_options(decision, conn, prepared)
        return prepared

    def _prepared(self, svc: ServiceConfig, decision: Decision, peer: str) -> ServiceConfig:
        changes: dict[str, object] = {}
        environment = list(svc.environment if svc.environment is not None
                           else (f"PATH={os.defpath}",))
        if decision.setenv:
            names = {n for n, _ in decision.setenv}
            environment = [e for e in environment if e.partition("=")[0] not in names]
            environment += [f"{n}={v}" for n, v in decision.setenv]
            changes["environment"] = tuple(environment)
        if decision.twist is not None:
            # libwrap's own line (syslog there, the program log here).
            level = SEVERITY_LEVELS.get(decision.severity or "info", Level.INFO)
            self.program.log(level, "twist_option",
                             f"twist {decision.twist_client or peer} to {decision.twist}",
                             always=True)
            # libwrap execs the command from the process that checked, whose environment
            # is the daemon's own plus `setenv`: not the service's env/passenv, and
            # neither REMOTE_HOST nor the PEERENV variables (TWIST_FLAG tells the
            # spawner), which xinetd adds only when it execs a server.
            names = {n for n, _ in decision.setenv}
            environment = [f"{n}={v}" for n, v in os.environ.items() if n not in names]
            environment += [f"{n}={v}" for n, v in decision.setenv]
            # xinetd's child execs the command inside the access check, before it would
            # have written banner_success.
            changes.update(server="/bin/sh", server_argv=("sh", "-c", decision.twist),
                           environment=tuple(environment), types=frozenset({"UNLISTED"}),
                           redirect=None, banner_success=None,
                           flags=(svc.flags - {PEERENV_FLAG}) | {TWIST_FLAG})
        if decision.nice is not None:
            # nice(2) is relative: the option adds to the service's own `nice`.
            changes["nice"] = (svc.nice or 0) + decision.nice
        if decision.umask is not None:
            changes["umask"] = decision.umask
        if decision.uid is not None:
            changes["user"] = decision.uid
        if decision.gid is not None:
            changes["group"] = decision.gid
        if not changes:
            return svc
        changes["prepared_from"] = svc.prepared_from or svc
        return replace(svc, **changes)  # type: ignore[arg-type]

    @staticmethod
    def _socket_options(decision: Decision, conn: socket.socket, svc: ServiceConfig) -> None:
        """`keepalive`, and `linger N` as libwrap sets it: lingering on for N > 0, off
        (the default, graceful close) for 0; `{on, 0}` would make the last close a
        reset, cutting off what the server wrote last. Lingering is for a server's
        socket only: a connection the daemon serves and closes itself (a builtin, a
        redirect, an INTERCEPT relay, tcpmux before its handover) would have its
        close() wait up to N seconds for a client that does not read, the whole
        daemon with it, where xinetd's child alone waits."""
        try:
            if decision.keepalive:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if decision.linger and svc.server is not None and not (
                    svc.is_internal or svc.is_redirect or "INTERCEPT" in svc.flags):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                (1).to_bytes(4, "little") + decision.linger.to_bytes(4, "little"))
        except OSError:
            pass

    def close(self) -> None:
        self.resolver.close()
