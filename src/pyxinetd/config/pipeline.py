"""After every file is read: fill in each service, check it, and build ServiceConfig.

Order as xinetd's (reference §1.7): late defaults and inference ("fill"), then the
checks of §2.4; any failure removes just that service, with a reason an administrator
can act on. Duplicates across services are found afterwards
(pyxinetd.config.duplicates).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

from pyxinetd.config.attributes import Draft
from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.lookups import Lookups
from pyxinetd.config.model import (
    BUILTINS, DEFAULT_CPS, AddressEntry, FileTarget, LogTarget, Origin, Rlimits, ServiceConfig, SocketType,
    TimeWindow,
)
from pyxinetd.config.netvalues import BindSpec, needs_dual_stack
from pyxinetd.config.values import UserSpec

T = TypeVar("T")
# Builtins pyxinetd serves, by service name and socket type (reference §4.10). `servers`
# and `services` were dropped from xinetd in 2003; pyxinetd still serves them.
_INFER_SOCKET = {"tcp": SocketType.STREAM, "udp": SocketType.DGRAM}
_INFER_PROTOCOL = {SocketType.STREAM: "tcp", SocketType.DGRAM: "udp"}
# The one socket type (besides raw) each of these protocols can be opened with.
_CARRIES = {"tcp": SocketType.STREAM, "udp": SocketType.DGRAM}


class ServiceRejected(Exception):
    """The service cannot run; the message is the reason.

    Where xinetd has words for the reason, the message starts with them (log parsers
    grep them); pyxinetd's explanation follows in parentheses. See rejection_line.
    """


# xinetd's own ending of some of these lines; the log line then needs no other.
DISABLING = " - DISABLING"


def rejection_line(reason: str) -> str:
    """The ERROR line for a service rejected for `reason`."""
    return reason if DISABLING in reason else f"{reason} - service disabled"


@dataclass
class FillContext:
    defaults: Draft
    lookups: Lookups
    environ: Mapping[str, str]
    sink: DiagnosticSink
    # The start-up environment as NAME=value strings, shared by every service that
    # passes all of it (a thousand copies would cost megabytes for nothing).
    full_environment: tuple[str, ...]


def _get(draft: Draft, name: str, kind: type[T]) -> T | None:
    value = draft.values.get(name)
    return cast(T, value) if value is not None else None


def _late(draft: Draft, ctx: FillContext, name: str) -> object | None:
    """The service's own value, else the final defaults' (the second moment of §1.6)."""
    if name in draft.values:
        return draft.values[name]
    return ctx.defaults.values.get(name)


def build_service(draft: Draft, ctx: FillContext) -> ServiceConfig:
    """Fill and check one service; raises ServiceRejected."""
    name = draft.name
    sid = _get(draft, "id", str) or name
    types = _get(draft, "type", frozenset) or frozenset()
    flags = set(_get(draft, "flags", frozenset) or frozenset())
    sink = ctx.sink
    where = (draft.file, draft.line)

    # -- socket type and protocol, each inferred from the other --------------------
    socket_type = _get(draft, "socket_type", SocketType)
    proto = _get(draft, "protocol", tuple)
    protocol: str | None = proto[0] if proto else None
    protocol_number: int | None = proto[1] if proto else None
    if socket_type is None and protocol in _INFER_SOCKET:
        socket_type = _INFER_SOCKET[protocol]
    if protocol is None and socket_type in _INFER_PROTOCOL:
        protocol = _INFER_PROTOCOL[socket_type]
        found = ctx.lookups.protocol(protocol)
        protocol_number = found[1] if found else None
    if socket_type is None and protocol is None and not ({"RPC", "TCPMUX", "TCPMUXPLUS"}
                                                         & types):
        # xinetd looks the port up before it checks the required attributes, so a service
        # with neither socket_type nor protocol fails there first, in these words.
        if "UNLISTED" in types:
            if _get(draft, "port", int) is None:
                raise ServiceRejected(f"Unlisted service: {name} must have a port entry")
        elif _get(draft, "port", int) is None:
            raise ServiceRejected(f"Port not specified for service: {name} and no protocol "
                                  "given")
        else:
            raise ServiceRejected(f"A protocol or a socket_type must be specified for "
                                  f"service: {name}.")
    if socket_type is None:
        raise ServiceRejected(f"Service {sid} missing attribute socket_type{DISABLING}")
    wait = _get(draft, "wait", bool)
    if wait is None:
        raise ServiceRejected(f"Service {sid} missing attribute wait{DISABLING}")
    if protocol is None or protocol_number is None:
        raise ServiceRejected(f"Service {sid} missing attribute protocol{DISABLING} (cannot be "
                              "inferred "
                              f"from socket_type {socket_type.value})")
    carried = _CARRIES.get(protocol)
    if carried is not None and socket_type not in (carried, SocketType.RAW):
        # xinetd takes the pair and fails to create the socket at start ("Protocol not
        # supported"); said here, with the file and line, it is also caught by `check`.
        raise ServiceRejected(f"service {sid}: protocol {protocol} does not carry socket_type "
                              f"{socket_type.value} (it takes {carried.value} or raw)")

    internal = "INTERNAL" in types
    unlisted = "UNLISTED" in types
    rpc = "RPC" in types
    tcpmux = bool({"TCPMUX", "TCPMUXPLUS"} & types)
    sensor = "SENSOR" in flags
    redirect = _get(draft, "redirect", tuple)
    server = _get(draft, "server", str)
    server_args = _get(draft, "server_args", tuple)
    user = _get(draft, "user", UserSpec)

    # -- required attributes (reference §2.4) ------------------------------------------
    if sensor and not internal and server is None:
        raise ServiceRejected(f"Must specify a server in {sid} (SENSOR services still need one)")
    if not internal and not sensor:
        if user is None:
            raise ServiceRejected(f"Service {sid} missing attribute user{DISABLING}")
        if server is None and redirect is None:
            raise ServiceRejected(f"Must specify a server in {sid}")
    if internal and not sensor:   # a sensor replaces the builtin, whatever the name
        builtin = BUILTINS.get(name)
        if builtin is None or socket_type not in builtin:
            raise ServiceRejected(f"No such internal service: {name}/{socket_type.value}"
                                  f"{DISABLING} (builtins: {', '.join(sorted(BUILTINS))})")
    if "NAMEINARGS" in flags:
        if server_args is None:
            raise ServiceRejected(f"service {sid}: NAMEINARGS needs server_args (argv[0] first)")
        if internal or redirect is not None:
            raise ServiceRejected(f"service {sid}: NAMEINARGS cannot be used on internal or "
                                  "redirected services")
    if redirect is not None and socket_type is not SocketType.STREAM:
        raise ServiceRejected(f"Only tcp sockets are supported for redirected service {name} "
                              "(redirect needs socket_type = stream and wait = no)")
    if redirect is not None and wait:
        raise ServiceRejected(f"Redirected service {name} must not wait (redirect needs "
                              "socket_type = stream and wait = no)")
    external = not internal and not sensor and redirect is None
    if "LABELED" in flags and not (external and socket_type is SocketType.STREAM and not wait):
        raise ServiceRejected(f"service {sid}: LABELED is only for external stream wait = no "
                              "services")
    if "INTERCEPT" in flags and (internal or not wait):
        flags.discard("INTERCEPT")
        sink.error(*where, f"service {sid}: INTERCEPT cleared: it only applies to external "
                           "wait = yes services")

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

    # -- port / RPC -----------------------------------------------------------------
    port = _get(draft, "port", int)
    rpc_version = _get(draft, "rpc_version", tuple)
    rpc_number = _get(draft, "rpc_number", int)
    if tcpmux:
        if not unlisted:
            raise ServiceRejected(f"Service: {name} (tcpmux) should have UNLISTED in type. "
                                  "(TCPMUX services must be UNLISTED with protocol tcp)")
        if protocol != "tcp":
            raise ServiceRejected(f"Service: {name} (tcpmux) should have tcp in protocol. "
                                  "(TCPMUX services must be UNLISTED with protocol tcp)")
        port = None
    elif rpc:
        if rpc_version is None:
            raise ServiceRejected(f"Service {sid} missing attribute rpc_version{DISABLING}")
        if unlisted:
            if rpc_number is None:
                raise ServiceRejected(f"Service {sid} missing attribute rpc_number{DISABLING}")
        else:
            rpc_number = ctx.lookups.rpc_number(name)
            if rpc_number is None:
                raise ServiceRejected(f"unknown RPC service: {name} (not in /etc/rpc; add "
                                      "type = UNLISTED and rpc_number)")
        # `port`, when given, fixes the port the portmapper hands out (a firewall can
        # then allow it), as Red Hat's xinetd does; without it the kernel picks one.
    elif unlisted:
        if port is None:
            raise ServiceRejected(f"Unlisted service: {name} must have a port entry")
    else:
        # /etc/services is searched under the protocol as written, as getservbyname
        # does for xinetd: `protocol = TCP` (an /etc/protocols alias) finds no tcp entry.
        written = draft.own.get("protocol")
        looked_up = written.values[0] if written is not None and written.values else protocol
        listed = ctx.lookups.service_port(name, looked_up)
        if listed is None and port is None:
            raise ServiceRejected(f"Port not specified and can't find service: {name} with "
                                  f"getservbyname ({name}/{looked_up} is not in /etc/services: "
                                  "add type = UNLISTED and a port)")
        if listed is None:
            raise ServiceRejected(f"service/protocol combination not in /etc/services: "
                                  f"{name}/{looked_up} (add type = UNLISTED)")
        if port is not None and port != listed:
            raise ServiceRejected(f"Service {name} expects port {listed}, not {port}")
        port = listed

    # -- log flags (the TRAFFIC and port-113 rules) ------------------------------------
    log_on_success = set(cast(frozenset[str], _late(draft, ctx, "log_on_success") or frozenset()))
    log_on_failure = cast(frozenset[str], _late(draft, ctx, "log_on_failure") or frozenset())
    if "TRAFFIC" in log_on_success and redirect is None:
        if draft.explicit_traffic:
            # xinetd's words, "its" included.
            raise ServiceRejected(f"Service {name} should not have TRAFFIC flag set since its "
                                  "not redirected")
        log_on_success.discard("TRAFFIC")
        sink.warning(*where, f"service {sid}: TRAFFIC from the defaults' log_on_success dropped "
                             "(it only applies to redirected services; xinetd 2.3.15.3 would "
                             "disable the service)")
    if port == 113 and protocol == "tcp" and "USERID" in log_on_success:
        log_on_success.discard("USERID")
        sink.warning(*where, f"{sid} service: clearing USERID option from log_on_success")

    # -- family and bind -------------------------------------------------------------
    bind_spec = cast(BindSpec | None, _late(draft, ctx, "bind"))
    family = int(socket.AF_INET if "IPv4" in flags and "IPv6" not in flags else socket.AF_INET6)
    if "IPv4" in flags and "IPv6" in flags:
        sink.info(*where, f"Service {name} will use IPv6 or fallback to IPv4")
    bind: str | None = None
    if bind_spec is not None:
        chosen = next((c for c in bind_spec.candidates if c[0] == family), None)
        if chosen is None:
            chosen = bind_spec.candidates[0]
            if {"IPv4", "IPv6"} & flags:
                wanted = "IPv4" if family == socket.AF_INET else "IPv6"
                sink.warning(*where, f"service {sid}: bind address {bind_spec.text} has no "
                                     f"{wanted} address; bound to {chosen[1]} regardless of "
                                     f"the {wanted} flag (xinetd 2.3.15.3 would not bind "
                                     "this address: it listens on every address, or fails "
                                     "to bind)")
        family, bind = chosen
    own_v6only = _get(draft, "v6only", bool)
    if own_v6only is False:
        sink.warning(*where, f"service {sid}: v6only = no keeps the socket dual-stack (xinetd "
                             "2.3.15.3 would turn IPV6_V6ONLY on)")
    v6only = bool(_late(draft, ctx, "v6only") or False)
    if v6only and bind is not None and family == socket.AF_INET6 and needs_dual_stack(bind):
        # A v6-only socket cannot bind an IPv4-mapped address at all.
        v6only = False
        sink.warning(*where, f"service {sid}: v6only = yes ignored: bind address {bind} "
                             "needs a dual-stack socket")

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
        umask=cast(int | None, _late(draft, ctx, "umask")), nice=_get(draft, "nice", int),
        rlimits=rlimits, log_type=log_type, log_on_success=frozenset(log_on_success),
        log_on_failure=log_on_failure, deny_time=_get(draft, "deny_time", int) or 0,
        libwrap=_get(draft, "libwrap", str),
        rpc_version=cast(tuple[int, int] | None, rpc_version) if rpc else None,
        rpc_number=rpc_number if rpc else None,
        stderr=cast(str | None, _late(draft, ctx, "stderr")) if external else None,
        redirect_source=_get(draft, "redirect_source", str) if redirect is not None else None,
        group_set="group" in draft.own, own_environment=own_environment,
    )


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
