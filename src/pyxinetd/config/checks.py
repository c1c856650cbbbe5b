"""Whether a service can run: xinetd's fill and check steps, in xinetd's order.

xinetd decides in three stages (reference §1.7, §2.4), and an administrator reading
both daemons' logs sees the same lines in the same order only if pyxinetd keeps them:

1. fill: a missing `server` (and `server_args` for NAMEINARGS), then the socket type
   and protocol inferred from each other, then the port of a service that names none;
2. check: INTERCEPT, the builtin of an INTERNAL service, LABELED, TCPMUX, the
   /etc/rpc or /etc/services entry, redirect, TRAFFIC, NAMEINARGS;
3. the required attributes: every missing one is named, in xinetd's order (wait,
   socket_type, protocol, user, server, rpc_version, port, rpc_number).

xinetd checks that a service is unique (pyxinetd.config.duplicates) between stages 1
and 2, and logs the INFO line of `flags = IPv4 IPv6` before stage 3: a service failing
from stage 2 on carries where it would listen in its ServiceRejected, with the lines of
an INTERCEPT stage 2 clears (from stage 3 on, the INFO line too), so the loader tests
its uniqueness first (a duplicate logs only that) and then logs those lines and the
reasons; one that passes gets them from the loader once it proved unique.

The first failing stage ends the service, as in xinetd. pyxinetd's own checks (a
protocol that cannot carry the socket type, by pyxinetd's table or the kernel's answer,
which xinetd only finds when it creates the socket) come after all of xinetd's.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import TypeVar, cast

from pyxinetd.config.attributes import Draft
from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.lookups import Lookups
from pyxinetd.config.model import BUILTINS, SENSOR_SOCKET_TYPES, SocketType

T = TypeVar("T")
_INFER_SOCKET = {"tcp": SocketType.STREAM, "udp": SocketType.DGRAM}
_INFER_PROTOCOL = {SocketType.STREAM: "tcp", SocketType.DGRAM: "udp"}
# The one socket type (besides raw) each of these protocols can be opened with.
_CARRIES = {"tcp": SocketType.STREAM, "udp": SocketType.DGRAM}
# The kernel's answers to socket() that mean it never pairs the type with the protocol.
_PAIR_REFUSED = (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPROTOTYPE)
# xinetd names missing attributes in the order of its attribute numbers.
_REQUIRED_ORDER = ("wait", "socket_type", "protocol", "user", "server", "rpc_version", "port",
                   "rpc_number")
# xinetd's own ending of some of these lines; the log line then needs no other.
DISABLING = " - DISABLING"


@dataclass(frozen=True)
class Listening:
    """What a service rejected from stage 2 on would have listened under: xinetd tests
    uniqueness before that stage, so such a service may be a duplicate first."""

    protocol: str
    port: int | None
    rpc_number: int | None
    flags: frozenset[str]
    tcpmux: bool


class ServiceRejected(Exception):
    """The service cannot run; the message is the (first) reason.

    Where xinetd has words for a reason, the message starts with them (log parsers grep
    them); pyxinetd's explanation follows in parentheses. `reasons` holds every line to
    log, in order: xinetd names each missing attribute on a line of its own. A service
    rejected from stage 2 on carries `listening` (for the uniqueness test that comes
    first) and `cleared`, the INTERCEPT lines xinetd logs before the reasons
    (interception_errors); from stage 3 on, the `notice` xinetd logs before the reasons
    too (fallback_notice).
    """

    def __init__(self, reason: str, *more: str, listening: Listening | None = None,
                 notice: str | None = None, cleared: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reasons = (reason, *more)
        self.listening = listening
        self.notice = notice
        self.cleared = cleared


def rejection_line(reason: str) -> str:
    """The ERROR line for a service rejected for `reason`."""
    return reason if DISABLING in reason else f"{reason} - service disabled"


@dataclass(frozen=True)
class Checked:
    """What the checks established about a service that can run."""

    socket_type: SocketType
    protocol: str
    protocol_number: int
    port: int | None
    rpc_number: int | None
    flags: frozenset[str]


def fallback_notice(name: str, flags: frozenset[str] | set[str]) -> str | None:
    """xinetd's INFO line for a service with both family flags (IPv6 is used)."""
    if "IPv4" in flags and "IPv6" in flags:
        return f"Service {name} will use IPv6 or fallback to IPv4"
    return None


def interception_errors(draft: Draft) -> tuple[str, ...]:
    """xinetd's ERROR lines for an INTERCEPT it clears (the service runs, without the
    relay): an internal service, or one with `wait = no`. xinetd logs them after its
    uniqueness test, so the loader logs them once the service proved no duplicate."""
    if "INTERCEPT" not in (_get(draft, "flags", frozenset) or ()):
        return ()
    sid = _get(draft, "id", str) or draft.name
    errors = []
    if "INTERNAL" in (_get(draft, "type", frozenset) or ()):
        errors.append(f"Internal services cannot be intercepted: {sid} (INTERCEPT cleared)")
    if not _get(draft, "wait", bool):
        errors.append(f"Multi-threaded services cannot be intercepted: {sid} (INTERCEPT "
                      "cleared: it needs wait = yes)")
    return tuple(errors)


def _get(draft: Draft, name: str, kind: type[T]) -> T | None:
    value = draft.values.get(name)
    return cast(T, value) if value is not None else None


def check_service(draft: Draft, lookups: Lookups, sink: DiagnosticSink) -> Checked:
    """Fill and check one service; raises ServiceRejected."""
    name = draft.name
    sid = _get(draft, "id", str) or name
    types = _get(draft, "type", frozenset) or frozenset()
    flags = set(_get(draft, "flags", frozenset) or frozenset())
    where = (draft.file, draft.line)
    internal = "INTERNAL" in types
    unlisted = "UNLISTED" in types
    rpc = "RPC" in types
    tcpmux = bool({"TCPMUX", "TCPMUXPLUS"} & types)
    sensor = "SENSOR" in flags
    redirect = _get(draft, "redirect", tuple)
    server = _get(draft, "server", str)
    has_server_args = _get(draft, "server_args", tuple) is not None
    wait = _get(draft, "wait", bool)

    # -- 1. fill -------------------------------------------------------------------
    if not internal and server is None and redirect is None:
        # A sensor becomes internal only after this step, so it still needs a server.
        raise ServiceRejected(f"Must specify a server in {name}"
                              + (" (SENSOR services still need one)" if sensor else ""))
    if not internal and "NAMEINARGS" in flags and not has_server_args:
        raise ServiceRejected(f"Must specify server args if using NAMEINARGS flag (service "
                              f"{sid}: NAMEINARGS takes argv[0] from server_args)")
    socket_type = _get(draft, "socket_type", SocketType)
    proto = _get(draft, "protocol", tuple)
    protocol: str | None = proto[0] if proto else None
    protocol_number: int | None = proto[1] if proto else None
    if socket_type is None and protocol in _INFER_SOCKET:
        socket_type = _INFER_SOCKET[protocol]
    if protocol is None and socket_type in _INFER_PROTOCOL:
        protocol, protocol_number = lookups.implied_protocol(_INFER_PROTOCOL[socket_type])
    # /etc/services is searched under the protocol as written, as getservbyname does
    # for xinetd: `protocol = TCP` (an /etc/protocols alias) finds no tcp entry.
    written = draft.own.get("protocol")
    looked_up = written.values[0] if written is not None and written.values else protocol
    port = _get(draft, "port", int)
    if port is None and not tcpmux and not rpc:
        if unlisted:
            raise ServiceRejected(f"Unlisted service: {name} must have a port entry")
        if looked_up is None:
            raise ServiceRejected(f"Port not specified for service: {name} and no protocol "
                                  "given")
        port = lookups.service_port(name, looked_up)
        if port is None:
            # An inetd.conf line has no column for a port: the name must be listed.
            remedy = ("add it there, or convert the line (pyxinetd convert) and give "
                      "the block type = UNLISTED and a port" if draft.inetd
                      else "add type = UNLISTED and a port")
            raise ServiceRejected(f"Port not specified and can't find service: {name} with "
                                  f"getservbyname ({name}/{looked_up} is not in "
                                  f"/etc/services: {remedy})")

    # xinetd tests that the service is unique right after the fill (reference §1.7):
    # a rejection from here on carries where it would listen, and a duplicate of a
    # bound service gets only that line. The INFO line of `flags = IPv4 IPv6` comes
    # after the checks, before the required attributes.
    rpc_number = _get(draft, "rpc_number", int)

    def listening() -> Listening | None:
        # A TCPMUX service's port line too: xinetd's uniqueness test compares it.
        return None if protocol is None else Listening(
            protocol, port, rpc_number if rpc else None, frozenset(flags), tcpmux)

    # -- 2. check ------------------------------------------------------------------
    cleared = interception_errors(draft)
    if cleared:
        # The service runs, without the relay; the loader logs why.
        flags.discard("INTERCEPT")

    def checking(*reasons: str) -> ServiceRejected:
        return ServiceRejected(*reasons, listening=listening(), cleared=cleared)

    if sensor and socket_type not in SENSOR_SOCKET_TYPES:
        # xinetd serves a sensor with its builtin `sensor`, whatever the service's name.
        kind = socket_type.value if socket_type is not None else "Unknown socket type"
        raise checking(f"No such internal service: sensor/{kind}{DISABLING} (SENSOR "
                       "is served on dgram and stream only)")
    if internal and not sensor:   # a sensor replaces the builtin, whatever the name
        builtin = BUILTINS.get(name)
        if builtin is None or socket_type not in builtin:
            kind = socket_type.value if socket_type is not None else "Unknown socket type"
            served = (f"{name} is served on {' and '.join(sorted(t.value for t in builtin))}"
                      " only" if builtin is not None
                      else f"builtins: {', '.join(sorted(BUILTINS))}")
            raise checking(f"No such internal service: {name}/{kind}{DISABLING} "
                           f"({served})")
    if "LABELED" in flags:
        unlabeled = _labeled_refusal(sid, internal or sensor, socket_type, wait,
                                     redirect is not None)
        if unlabeled is not None:
            raise checking(unlabeled)
        # pyxinetd cannot run a server in its client's SELinux context. Where SELinux
        # runs, serving anyway would give each client the daemon's context: refused.
        if lookups.selinux_enabled():
            raise checking(f"Changing process context failed for {sid}{DISABLING} "
                           "(flags = LABELED: pyxinetd cannot run a server in its "
                           "client's SELinux context)")
        sink.warning(*where, f"service {sid}: flags = LABELED ignored: SELinux is not "
                             "enabled on this host, so there is no context to give the "
                             "server (xinetd 2.3.15.3 refuses every client here: "
                             "Changing process context failed)")
    if tcpmux:
        if not unlisted:
            raise checking(f"Service: {name} (tcpmux) should have UNLISTED in type. "
                           "(TCPMUX services must be UNLISTED with protocol tcp)")
        # Without any protocol xinetd 2.3.15.3 crashes here (docs/compatibility.md);
        # the missing attributes are named below instead.
        if protocol is not None and protocol != "tcp":
            raise checking(f"Service: {name} (tcpmux) should have tcp in protocol. "
                           "(TCPMUX services must be UNLISTED with protocol tcp)")
        if port is not None:
            # xinetd keeps the value (its state dump shows it) and listens on no such
            # port either: the name, sent to the tcpmux service, is the only way in.
            sink.warning(*where, f"service {sid}: port {port} ignored: a TCPMUX service has no "
                                 "socket of its own; clients reach it by name through the "
                                 "tcpmux service (port 1)")
    if rpc and not unlisted:
        rpc_number = lookups.rpc_number(name)
        if rpc_number is None:
            raise checking(f"unknown RPC service: {name} (not in /etc/rpc; add "
                           "type = UNLISTED and rpc_number)")
    elif not unlisted:
        if looked_up is None:
            raise checking(f"A protocol or a socket_type must be specified for "
                           f"service: {name}.")
        listed = lookups.service_port(name, looked_up)
        if listed is None:
            raise checking(f"service/protocol combination not in /etc/services: "
                           f"{name}/{looked_up} (add type = UNLISTED)")
        if port is not None and port != listed:
            raise checking(f"Service {name} expects port {listed}, not {port}")
    if redirect is not None:
        why = " (redirect needs socket_type = stream and wait = no)"
        if socket_type is not SocketType.STREAM:
            raise checking(f"Only tcp sockets are supported for redirected service "
                           f"{name}{why}")
        if wait:
            raise checking(f"Redirected service {name} must not wait{why}")
        if "NAMEINARGS" in flags:
            raise checking(f"Redirected service {name} should not have NAMEINARGS flag "
                           "set (no server is started)")
    elif "TRAFFIC" in (_get(draft, "log_on_success", frozenset) or ()) \
            and draft.explicit_traffic:
        # xinetd's words, "its" included. (TRAFFIC from the defaults: pipeline.py.)
        raise checking(f"Service {name} should not have TRAFFIC flag set since its "
                       "not redirected")
    if "NAMEINARGS" in flags and internal:
        raise checking(f"Service {name} is INTERNAL and has NAMEINARGS flag set (a "
                       "builtin takes no arguments)")

    # -- 3. required attributes (reference §2.4) -------------------------------------
    def rejected(*reasons: str) -> ServiceRejected:
        return ServiceRejected(*reasons, listening=listening(),
                               notice=fallback_notice(name, flags), cleared=cleared)

    present = {"wait": wait is not None, "socket_type": socket_type is not None,
               "protocol": protocol is not None, "user": "user" in draft.values,
               "server": server is not None or redirect is not None,
               "rpc_version": "rpc_version" in draft.values, "port": port is not None,
               "rpc_number": rpc_number is not None}
    required = {"wait", "socket_type"}
    if not internal and not sensor:
        required |= {"user", "server"}
        if unlisted:
            required |= {"protocol"} if tcpmux else {"protocol", "port"}
    if rpc:
        required = (required - {"port"}) | {"protocol", "rpc_version"}
        if unlisted:
            required.add("rpc_number")
    missing = [a for a in _REQUIRED_ORDER if a in required and not present[a]]
    if missing:
        raise rejected(*(f"Service {sid} missing attribute {a}{DISABLING}" for a in missing))

    # -- pyxinetd's own checks, for what xinetd lets through -----------------------------
    assert socket_type is not None and wait is not None
    if protocol is None or protocol_number is None:
        raise rejected(f"Service {sid} missing attribute protocol{DISABLING} (cannot be "
                       f"inferred from socket_type {socket_type.value})")
    carried = _CARRIES.get(protocol)
    if carried is not None and socket_type not in (carried, SocketType.RAW):
        # xinetd takes the pair and fails to create the socket at start ("Protocol not
        # supported"); said here, with the file and line, it is also caught by `check`.
        raise rejected(f"service {sid}: protocol {protocol} does not carry socket_type "
                       f"{socket_type.value} (it takes {carried.value} or raw)")
    refused = None if tcpmux or carried is not None else kernel_refuses(socket_type,
                                                                         protocol_number)
    if refused is not None:
        raise rejected(f"service {sid}: protocol {protocol} does not carry socket_type "
                       f"{socket_type.value} (the kernel refuses the pair: {refused})")
    return Checked(socket_type, protocol, protocol_number, None if tcpmux else port,
                   rpc_number if rpc else None, frozenset(flags))


def kernel_refuses(socket_type: SocketType, protocol_number: int) -> str | None:
    """Why the kernel will not make this socket in either family (stream over icmp), or
    None. xinetd finds it only when it creates the socket at start (`socket creation
    failed (Protocol not supported ...)`); asked here, the file and line can be named.
    Other failures (a raw socket without privilege, no descriptor left) are the run's,
    not the configuration's, and are left to the start."""
    refusal: int | None = None
    for family in (socket.AF_INET6, socket.AF_INET):
        try:
            socket.socket(family, socket_type.kernel_type, protocol_number).close()
        except OSError as err:
            if err.errno in _PAIR_REFUSED:
                refusal = err.errno
            elif err.errno != errno.EAFNOSUPPORT:    # a host without IPv6 tells nothing
                return None
        else:
            return None
    return os.strerror(refusal) if refusal is not None else None


def _labeled_refusal(sid: str, internal: bool, socket_type: SocketType | None,
                     wait: bool | None, redirected: bool) -> str | None:
    """LABELED runs the server in the peer's SELinux context: external stream nowait.
    Why this service cannot have it, or None."""
    for failed, words in ((internal, "Internal services"),
                          (socket_type is not SocketType.STREAM, "Non-stream socket types"),
                          (bool(wait), "Tcp wait services"),
                          (redirected, "Redirected services")):
        if failed:
            return (f"{words} cannot support labeled networking: {sid} "
                    "(LABELED is only for external stream wait = no services)")
    return None
