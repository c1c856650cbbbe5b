"""The access checks dispatch runs after the parent checks (reference §4.4, §4.14).

Order, as in xinetd's child: only_from/no_access (FAIL reason `address`), then TCP
Wrappers unless the service has NOLIBWRAP (reason `libwrap`). pyxinetd runs both in the
master, before any process is created.

Cost per request: a service without address lists, whose hosts tables are empty (or
that has NOLIBWRAP), gets one cached plan lookup and one boolean test. Only when the
rules that apply contain host names does the request wait, parked, for the resolver
helper (pyxinetd.access.resolver); numeric-only rules are decided at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from pyxinetd.access import lists
from pyxinetd.access.hostsaccess import DEFAULT_ALLOW, DEFAULT_DENY, Decision, HostsTables, \
    evaluate, expand
from pyxinetd.access.hostspatterns import Endpoint, Lookups, Request, normalize_address
from pyxinetd.access.resolver import NameInfo, Resolver
from pyxinetd.config.model import ServiceConfig
from pyxinetd.log import ProgramLog
from pyxinetd.loop import Loop

REASON_ADDRESS = "address"
REASON_LIBWRAP = "libwrap"
# Environment variables that point the daemon at other tables (tests, chroots).
ALLOW_ENV = "PYXINETD_HOSTS_ALLOW"
DENY_ENV = "PYXINETD_HOSTS_DENY"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str | None = None            # FAIL reason when refused
    decision: Decision | None = None     # what hosts_access asked for


PASS = Verdict(True)


@dataclass(frozen=True)
class _Plan:
    lists: bool
    list_names: bool
    wrap: bool
    daemon: str


def daemon_name(svc: ServiceConfig) -> str:
    """§4.14: `libwrap` attribute; internal/redirect: the service name; NAMEINARGS:
    basename of the first server argument; else the basename of the server."""
    if svc.libwrap:
        return svc.libwrap
    if svc.is_internal or svc.is_redirect or not svc.server:
        return svc.name
    if "NAMEINARGS" in svc.flags and svc.server_argv:
        return os.path.basename(svc.server_argv[0])
    return os.path.basename(svc.server)


def wraps(svc: ServiceConfig) -> bool:
    if "NOLIBWRAP" in svc.flags:
        return False
    # libwrap is forced off for RPC services over TCP.
    return not ("RPC" in svc.types and svc.protocol == "tcp")


class AccessGate:
    def __init__(self, loop: Loop, program: ProgramLog, *, tables: HostsTables | None = None,
                 resolver: Resolver | None = None, lookups: Lookups | None = None) -> None:
        self.loop = loop
        self.program = program
        self.tables = tables or HostsTables(
            os.environ.get(ALLOW_ENV, DEFAULT_ALLOW), os.environ.get(DENY_ENV, DEFAULT_DENY),
            clock=loop.clock,
            on_warning=lambda text: program.warning("hosts_access", text))
        self.resolver = resolver or Resolver(
            loop, on_error=lambda text: program.error("resolver", text))
        self.lookups = lookups or Lookups()
        self._plans: dict[int, tuple[ServiceConfig, _Plan]] = {}

    def _plan(self, svc: ServiceConfig) -> _Plan:
        cached = self._plans.get(id(svc))
        if cached is not None and cached[0] is svc:
            return cached[1]
        plan = _Plan(lists.has_lists(svc), lists.needs_names(svc), wraps(svc),
                     daemon_name(svc))
        self._plans[id(svc)] = (svc, plan)
        return plan

    def check(self, svc: ServiceConfig, peer: str) -> Verdict | None:
        """The verdict now, or None when names are needed: then call `wait`."""
        plan = self._plan(svc)
        wrap = plan.wrap and not self.tables.empty
        if not plan.lists and not wrap:
            return PASS
        if lists.parse_peer(peer) is not None and (
                plan.list_names or (wrap and self.tables.needs_names)):
            return None
        return self._decide(svc, plan, peer, None)

    def wait(self, svc: ServiceConfig, peer: str, done: Callable[[Verdict], None]) -> None:
        """Resolve the peer's name without blocking, then call `done` with the verdict."""
        plan = self._plan(svc)
        self.resolver.lookup(normalize_address(peer),
                             lambda info: done(self._decide(svc, plan, peer, info)))

    def _decide(self, svc: ServiceConfig, plan: _Plan, peer: str,
                info: NameInfo | None) -> Verdict:
        name = info.name if info is not None else None
        if plan.lists:
            result = lists.check(svc, peer, name)
            if result.tie:
                self.program.error("check_access",
                                   f"Service={svc.id}: only_from list and no_access list "
                                   f"match equally the address {peer}")
            if not result.allowed:
                return Verdict(False, REASON_ADDRESS)
        if not plan.wrap or self.tables.empty:
            return PASS
        allow, deny = self.tables.current()
        address = normalize_address(peer) if lists.parse_peer(peer) is not None else None
        client = Endpoint(address, name=name if info is None or info.confirmed else None,
                          paranoid=info is not None and name is not None
                          and not info.confirmed)
        request = Request(plan.daemon, client, pid=os.getpid())
        decision = evaluate(allow, deny, request, self.lookups)
        for line in decision.trace:
            if line.startswith("error:"):
                self.program.error("hosts_access", line[len("error: "):])
        for command in decision.spawn:
            self.resolver.run_shell(command)
        if decision.access == "denied":
            self.program.info("libwrap", f"libwrap refused connection to {svc.id} "
                                         f"(libwrap={plan.daemon}) from {peer}")
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
        if conn is not None:
            self._socket_options(decision, conn)
            if decision.banners:
                self._banner(svc, decision, conn, peer)
        changes: dict[str, object] = {}
        environment = list(svc.environment if svc.environment is not None
                           else (f"PATH={os.defpath}",))
        if decision.setenv:
            names = {n for n, _ in decision.setenv}
            environment = [e for e in environment if e.partition("=")[0] not in names]
            environment += [f"{n}={v}" for n, v in decision.setenv]
            changes["environment"] = tuple(environment)
        if decision.twist is not None:
            changes.update(server="/bin/sh", server_argv=("sh", "-c", decision.twist),
                           environment=tuple(environment), types=frozenset({"UNLISTED"}),
                           redirect=None)
        if decision.nice is not None:
            changes["nice"] = decision.nice
        if decision.umask is not None:
            changes["umask"] = decision.umask
        if decision.uid is not None:
            changes["user"] = decision.uid
        if decision.gid is not None:
            changes["group"] = decision.gid
        return replace(svc, **changes) if changes else svc  # type: ignore[arg-type]

    @staticmethod
    def _socket_options(decision: Decision, conn: socket.socket) -> None:
        try:
            if decision.keepalive:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if decision.linger is not None:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                (1).to_bytes(4, "little") + decision.linger.to_bytes(4, "little"))
        except OSError:
            pass

    def _banner(self, svc: ServiceConfig, decision: Decision, conn: socket.socket,
                peer: str) -> None:
        assert decision.banners is not None
        plan = self._plan(svc)
        path = os.path.join(decision.banners, plan.daemon)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return
        request = Request(plan.daemon, Endpoint(normalize_address(peer)), pid=os.getpid())
        data = expand(text, request).replace("\r\n", "\n").replace("\n", "\r\n").encode()
        try:
            conn.send(data, socket.MSG_DONTWAIT)
        except OSError:
            pass

    def close(self) -> None:
        self.resolver.close()
