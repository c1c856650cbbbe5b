"""After every file is read: fill in each service, check it, and build ServiceConfig.

Order as xinetd's (reference §1.7): whether the service can run at all, with xinetd's
lines in xinetd's order (pyxinetd.config.checks), then the late defaults; any failure
removes just that service, with a reason an administrator can act on. The loader then
checks the built service against those kept before it (pyxinetd.config.duplicates).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypeVar, cast

from pyxinetd.config.attributes import Draft
from pyxinetd.config.ceilings import Ceilings, warn_unreachable
from pyxinetd.config.checks import DISABLING, ServiceRejected, check_service, rejection_line
from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.duplicates import SocketClaim
from pyxinetd.config.lookups import Lookups
from pyxinetd.config.model import (
    DEFAULT_CPS, AddressEntry, FileTarget, LogTarget, Origin, Rlimits, ServiceConfig, SocketType,
    TimeWindow,
)
from pyxinetd.config.netvalues import BindSpec, needs_dual_stack
from pyxinetd.config.serveraccess import access_problem
from pyxinetd.config.values import UserSpec

T = TypeVar("T")
__all__ = ["DISABLING", "FillContext", "ServiceRejected", "build_service", "rejected_claim",
           "rejection_line", "without_ident_userid"]

# The ident (RFC 1413) service: its own USERID look-ups would ask itself.
IDENT_PORT = 113


@dataclass
class FillContext:
    defaults: Draft
    lookups: Lookups
    environ: Mapping[str, str]
    sink: DiagnosticSink
    # The start-up environment as NAME=value strings, shared by every service that
    # passes all of it (a thousand copies would cost megabytes for nothing).
    full_environment: tuple[str, ...]
    # The limits a server can be given (read once per load).
    ceilings: Ceilings


def _get(draft: Draft, name: str, kind: type[T]) -> T | None:
    value = draft.values.get(name)
    return cast(T, value) if value is not None else None


def _late(draft: Draft, ctx: FillContext, name: str) -> object | None:
    """The service's own value, else the final defaults' (the second moment of §1.6)."""
    if name in draft.values:
        return draft.values[name]
    return ctx.defaults.values.get(name)


def _warn_unreachable_banners(draft: Draft, ctx: FillContext, sid: str) -> None:
    """A stream `wait = yes` server accepts its connections itself: the daemon never
    holds a client connection to write a banner on. xinetd 2.3.15.3 writes it to the
    listening socket: its child dies of SIGPIPE before the server starts, the request
    stays queued and the service loops until cps deactivates it
    (docs/compatibility.md)."""
    # The defaults' banners are already the service's own values here (its copy).
    named = [attr for attr in ("banner", "banner_success", "banner_fail")
             if _late(draft, ctx, attr) is not None]
    if named:
        ctx.sink.warning(draft.file, draft.line, (
            f"service {sid}: {', '.join(named)} ignored: a stream wait = yes server accepts "
            "its connections itself, so no banner can be written to its clients"))


def build_service(draft: Draft, ctx: FillContext) -> ServiceConfig:
    """Fill and check one service; raises ServiceRejected."""
    name = draft.name
    sid = _get(draft, "id", str) or name
    types = _get(draft, "type", frozenset) or frozenset()
    sink = ctx.sink
    where = (draft.file, draft.line)

    checked = check_service(draft, ctx.lookups, sink)
    socket_type, protocol, port = checked.socket_type, checked.protocol, checked.port
    protocol_number, rpc_number = checked.protocol_number, checked.rpc_number
    rpc_version = _get(draft, "rpc_version", tuple)
    flags = set(checked.flags)
    wait = bool(_get(draft, "wait", bool))
    internal = "INTERNAL" in types
    rpc = "RPC" in types
    sensor = "SENSOR" in flags
    redirect = _get(draft, "redirect", tuple)
    server = _get(draft, "server", str)
    server_args = _get(draft, "server_args", tuple)
    user = _get(draft, "user", UserSpec)
    external = not internal and not sensor and redirect is None
    if "PEERENV" in flags and not external:
        # Nothing is exec'd, so there is no environment to add the addresses to.
        sink.warning(*where, f"service {sid}: PEERENV has no effect on internal, "
                             "redirected and SENSOR services")
    if "redirect_source" in draft.values and redirect is None:
        sink.warning(*where, f"service {sid}: redirect_source has no effect without "
                             "redirect")
    if "stderr" in draft.values and not external:
        sink.warning(*where, f"service {sid}: stderr has no effect on internal, "
                             "redirected and SENSOR services (they start no server)")

    if wait and socket_type is SocketType.STREAM and external:
        _warn_unreachable_banners(draft, ctx, sid)
    if internal and socket_type is SocketType.DGRAM:
        given = [name for name in ("banner", "banner_success", "banner_fail")
                 if name in draft.values]
        if given:
            sink.warning(*where, f"service {sid}: {' and '.join(given)} ignored: a datagram "
                                 "builtin's reply is its one datagram, and there is no "
                                 "connection to write a banner on (xinetd opens the file "
                                 "for each datagram and writes it nowhere)")

    # -- log flags (the TRAFFIC rule; port 113's: without_ident_userid) --------------
    log_on_success = set(cast(frozenset[str], _late(draft, ctx, "log_on_success") or frozenset()))
    log_on_failure = cast(frozenset[str], _late(draft, ctx, "log_on_failure") or frozenset())
    if "TRAFFIC" in log_on_success and redirect is None:
        # Only from the defaults: the service's own TRAFFIC was rejected by the checks.
        log_on_success.discard("TRAFFIC")
        sink.warning(*where, f"service {sid}: TRAFFIC from the defaults' log_on_success dropped "
                             "(it only applies to redirected services; xinetd 2.3.15.3 would "
                             "disable the service)")

    # -- family and bind -------------------------------------------------------------
    family, bind = _family_and_bind(draft, ctx, flags, sid, sink)
    # Only an IPv6 socket that is not raw has an IPV6_V6ONLY to set (listener.py); on
    # any other, xinetd's v6only does nothing either, so there is nothing to warn of.
    has_v6only = family == socket.AF_INET6 and socket_type is not SocketType.RAW
    own_v6only = _get(draft, "v6only", bool)
    if own_v6only is False and has_v6only:
        sink.warning(*where, f"service {sid}: v6only = no keeps the socket dual-stack (xinetd "
                             "2.3.15.3 would turn IPV6_V6ONLY on)")
    v6only = bool(_late(draft, ctx, "v6only") or False)
    if v6only and bind is not None and family == socket.AF_INET6 and needs_dual_stack(bind):
        # A v6-only socket cannot bind an IPv4-mapped address at all.
        v6only = False
        sink.warning(*where, f"service {sid}: v6only = yes ignored: bind address {bind} "
                             "needs a dual-stack socket (xinetd 2.3.15.3 would fail to bind "
                             "it: Invalid argument)")

    # -- credentials -----------------------------------------------------------------
    group = _get(draft, "group", int)
    groups = bool(_late(draft, ctx, "groups") or False)
    uid = user.info.uid if user else None
    user_name = user.info.name if user else None
    if group is None and user is not None:
        group = user.info.gid
    supplementary: tuple[int, ...] = ()
    if groups and user is not None and user.info.name is not None:
        # initgroups(name, the passwd gid), as xinetd: the user's own groups, also for
        # a numeric user, whose primary gid is the uid's number.
        login_gid = user.info.passwd_gid if user.info.passwd_gid is not None else user.info.gid
        supplementary = ctx.lookups.supplementary_groups(user.info.name, login_gid)
    if (external and server is not None and uid not in (None, 0) and os.geteuid() == 0):
        # Run as root, the daemon switches to that user before the exec (unprivileged,
        # it ignores the user: nothing to check).
        assert uid is not None
        gids = {g for g in (group, *supplementary) if g is not None}
        problem = access_problem(server, uid, gids)
        if problem is not None:
            sink.warning(*where, f"service {sid}: user {user_name or uid} cannot run "
                                 f"{server}: {problem}; every exec of it will fail")

    # -- argv and environment --------------------------------------------------------
    if internal or redirect is not None:
        # A builtin runs no program: xinetd ignores its server line (its dump shows
        # none); a sensor keeps it in the report (docs/compatibility.md).
        server = None if redirect is not None or not sensor else server
        argv: tuple[str, ...] = ()
    elif "NAMEINARGS" in flags:
        argv = tuple(server_args or ())
    else:
        argv = (os.path.basename(server or ""),) + tuple(server_args or ())
    env = cast(tuple[str, ...], _get(draft, "env", tuple) or ())
    passenv = cast(tuple[str, ...] | None, _late(draft, ctx, "passenv"))
    environment = None if not external else _environment(draft, ctx, passenv, env)
    own_environment: tuple[str, ...] | None = None
    if "passenv" in draft.own or "env" in draft.own:
        own_environment = environment if environment is not None \
            else _environment(draft, ctx, passenv, env, warn=False)
    if passenv is not None:
        # A variable the daemon was not started with is skipped (warned above); xinetd
        # drops it from the service's list too, and its state dump shows the rest.
        passenv = tuple(v for v in passenv if v in ctx.environ)

    # -- the rest, with defaults of §9 -------------------------------------------------
    log_type = _log_type(draft, ctx)
    cps = cast(tuple[int, int] | None, _late(draft, ctx, "cps")) or DEFAULT_CPS
    rlimits = Rlimits(
        as_=_get(draft, "rlimit_as", int), cpu=_get(draft, "rlimit_cpu", int),
        data=_get(draft, "rlimit_data", int), rss=_get(draft, "rlimit_rss", int),
        stack=_get(draft, "rlimit_stack", int), files=_get(draft, "rlimit_files", int))
    nice = _get(draft, "nice", int)
    if external:
        # Only a server is given limits and nice (the nearest the daemon can give).
        warn_unreachable(sid, rlimits, nice, draft.own, ctx.ceilings, sink, where)
    return ServiceConfig(
        name=name, id=sid, origin=Origin(draft.file, draft.line), types=types,
        flags=frozenset(flags), socket_type=socket_type, protocol=protocol,
        protocol_number=protocol_number, port=port, wait=wait, user=uid, user_name=user_name,
        group=group, groups=groups, supplementary_groups=supplementary, server=server,
        server_argv=argv, environment=environment, passenv=passenv, env=env,
        instances=cast(int | None, _late(draft, ctx, "instances")),
        per_source=cast(int | None, _late(draft, ctx, "per_source")),
        cps=cps, max_load=cast(float | None, _late(draft, ctx, "max_load")),
        bind=bind, family=family, v6only=v6only,
        only_from=cast(tuple[AddressEntry, ...] | None, draft.values.get("only_from")),
        no_access=cast(tuple[AddressEntry, ...], draft.values.get("no_access") or ()),
        access_times=cast(tuple[TimeWindow, ...], draft.values.get("access_times") or ()),
        redirect=cast(tuple[str, int] | None, redirect),
        banner=_get(draft, "banner", str), banner_success=_get(draft, "banner_success", str),
        banner_fail=_get(draft, "banner_fail", str),
        umask=cast(int | None, _late(draft, ctx, "umask")), nice=nice,
        rlimits=rlimits, log_type=log_type, log_on_success=frozenset(log_on_success),
        log_on_failure=log_on_failure, deny_time=_get(draft, "deny_time", int) or 0,
        libwrap=_get(draft, "libwrap", str),
        rpc_version=cast(tuple[int, int] | None, rpc_version) if rpc else None,
        rpc_number=rpc_number if rpc else None,
        stderr=cast(str | None, _late(draft, ctx, "stderr")) if external else None,
        redirect_source=_get(draft, "redirect_source", str) if redirect is not None else None,
        group_set="group" in draft.own, own_environment=own_environment,
    )


def _family_and_bind(draft: Draft, ctx: FillContext, flags: set[str] | frozenset[str],
                     sid: str, sink: DiagnosticSink | None) -> tuple[int, str | None]:
    """The socket's family and bind address (warned of through `sink`, when given)."""
    bind_spec = cast(BindSpec | None, _late(draft, ctx, "bind"))
    family = int(socket.AF_INET if "IPv4" in flags and "IPv6" not in flags else socket.AF_INET6)
    if bind_spec is None:
        return family, None
    candidates = bind_spec.candidates
    chosen = next((c for c in candidates if c[0] == family), None)
    # xinetd resolves a name with several addresses again, for the family its flags
    # give (IPv6 without flags), and drops the service when that finds none.
    several = len(candidates) > 1
    wanted = "IPv4" if family == socket.AF_INET else "IPv6"
    if chosen is None:
        chosen = candidates[0]
        if ({"IPv4", "IPv6"} & flags or several) and sink is not None:
            xinetd = (f"drops the service: bad address given for: {sid}" if several else
                      "would not bind this address: it listens on every address, or "
                      "fails to bind")
            flag = f" of the {wanted} flag" if {"IPv4", "IPv6"} & flags else ""
            sink.warning(draft.file, draft.line, (
                f"service {sid}: bind address {bind_spec.text} has no {wanted} address; "
                f"bound to {chosen[1]} regardless{flag} (xinetd 2.3.15.3 {xinetd})"))
    same = [address for f, address in candidates if f == chosen[0]]
    if len(same) > 1 and sink is not None:
        sink.warning(draft.file, draft.line, (
            f"service {sid}: bind host {bind_spec.text} has {len(same)} "
            f"{'IPv4' if chosen[0] == socket.AF_INET else 'IPv6'} addresses "
            f"({', '.join(same)}); the service listens on {chosen[1]} only, as in xinetd: "
            "bind each address in a service of its own to serve them all"))
    return chosen


def rejected_claim(draft: Draft, ctx: FillContext, rejected: ServiceRejected
                   ) -> SocketClaim | None:
    """Where a service rejected from xinetd's checks on would have listened, for
    the uniqueness test xinetd runs first; None if it was rejected before that."""
    listening = rejected.listening
    if listening is None:
        return None
    sid = _get(draft, "id", str) or draft.name
    family, bind = _family_and_bind(draft, ctx, listening.flags, sid, None)
    return SocketClaim(sid, draft.name, Origin(draft.file, draft.line), listening.protocol,
                       listening.port, listening.rpc_number,
                       _get(draft, "rpc_version", tuple), bind, family,
                       bool(_late(draft, ctx, "v6only")), listening.tcpmux)


def without_ident_userid(service: ServiceConfig, sink: DiagnosticSink) -> ServiceConfig:
    """The ident service (TCP port 113) without USERID in its log flags.

    Looking up the identity of an ident client means asking that client's ident
    service, which may ask ours back: xinetd clears USERID from both lists, a WARNING
    for each. It does so last, for a service that passed every check and proved unique,
    so the loader calls this after SocketTable.admit.
    """
    if service.port != IDENT_PORT or service.protocol != "tcp":
        return service
    where = (service.origin.file, service.origin.line)
    for name, flags in (("log_on_success", service.log_on_success),
                        ("log_on_failure", service.log_on_failure)):
        if "USERID" in flags:
            sink.warning(*where, f"{service.id} service: clearing USERID option from {name}")
    return replace(service, log_on_success=service.log_on_success - {"USERID"},
                   log_on_failure=service.log_on_failure - {"USERID"})


def _log_type(draft: Draft, ctx: FillContext) -> LogTarget | None:
    own = draft.values.get("log_type")
    if own is not None:
        return cast(LogTarget, own)
    inherited = cast(LogTarget | None, ctx.defaults.values.get("log_type"))
    if isinstance(inherited, FileTarget):
        # Every service shares the one log file of the defaults.
        return FileTarget(inherited.path, inherited.soft_limit, inherited.hard_limit, common=True)
    return inherited


def _environment(draft: Draft, ctx: FillContext, passenv: tuple[str, ...] | None,
                 env: tuple[str, ...], *, warn: bool = True) -> tuple[str, ...]:
    """The server's environment as of start-up (reference §4.7), REMOTE_HOST excluded;
    `warn`: report passenv variables the daemon was not started with."""
    if passenv is None:
        if not env:
            return ctx.full_environment
        base = dict(ctx.environ)
    else:
        base = {}
        for variable in passenv:
            if variable in ctx.environ:
                base[variable] = ctx.environ[variable]
            elif warn:
                ctx.sink.warning(*_passenv_line(draft, ctx, variable), (
                    f"undefined environment variable: {variable} (service {draft.name}: "
                    "named in passenv; skipped)"))
    for setting in env:
        # As xinetd: a variable already there keeps its place, with the new value.
        key, _, value = setting.partition("=")
        base[key] = value
    return tuple(f"{k}={v}" for k, v in base.items())


def _passenv_line(draft: Draft, ctx: FillContext, variable: str) -> tuple[str, int]:
    """The passenv line that names `variable` (the service's, else the defaults'), as
    xinetd points at it; the service's header when neither line does."""
    for lines in (draft.list_lines, ctx.defaults.list_lines):
        for raw in reversed(lines):
            if raw.name.lower() == "passenv" and variable in raw.values:
                return raw.file, raw.line
    return draft.file, draft.line
