"""The SIGUSR1 state dump, in xinetd's layout (reference §6.4).

The dump is appended to /var/run/xinetd.dump (mode 0644), which Debian's init script
prints for `status`; $PYXINETD_DUMP_FILE overrides the path (tests). The labels are
xinetd's wherever the same fact exists, so tools that read xinetd's dump (and the
test suite's parser of it) read this one too. It shows what the daemon *runs*: every
default already applied, so Instances, CPS and PER_SOURCE are printed for every
service, not only where the configuration wrote them.

Rendering is a pure function of the master's state; only append() touches the disk.
"""

from __future__ import annotations

import ipaddress
import os
import resource
import socket
import time
from collections.abc import Sequence

from pyxinetd import rpc
from pyxinetd.children import Child, ChildTable
from pyxinetd.config.model import (SERVICE_FLAGS, SERVICE_TYPES, AddressEntry, Configuration,
                                   Defaults, FileTarget, LogTarget, ServiceConfig, SocketType,
                                   SyslogTarget)
from pyxinetd.files import open_appending
from pyxinetd.forkretry import HeldRequest
from pyxinetd.intercept import INTERCEPT_FLAG
from pyxinetd.localzone import local_time
from pyxinetd.log import strerror
from pyxinetd.service import ServiceRuntime, State
from pyxinetd.textbytes import as_written

DUMP_FILE_ENV = "PYXINETD_DUMP_FILE"
DEFAULT_DUMP_FILE = "/var/run/xinetd.dump"

# xinetd's words: a service closed by a cps trip is `Disabled` until its timer reopens it.
_STATE_WORDS = {
    State.STARTING: "Not started",
    State.AWAITING_ADDRESS: "Not started",
    State.AWAITING_RESOURCES: "Not started",
    State.ACTIVE: "Active",
    State.SUSPENDED_WAIT: "Suspended",
    State.SUSPENDED_CPS: "Disabled",
}
# xinetd counts only active services as active, and suspended ones (a wait = yes server
# runs) as available too; a disabled one is neither.
_AVAILABLE = (State.ACTIVE, State.SUSPENDED_WAIT)
# The log flags in xinetd's order (that of their bit numbers), not the manual's.
_SUCCESS_ORDER = ("HOST", "DURATION", "EXIT", "PID", "USERID", "TRAFFIC")
_FAILURE_ORDER = ("HOST", "ATTEMPT", "USERID")


def dump_path(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    return environ.get(DUMP_FILE_ENV) or DEFAULT_DUMP_FILE


def append(path: str, text: str) -> str | None:
    """Append one dump to `path` (created 0644); None when done, else the program-log
    text of the failure.

    Never waits: the file is opened and written with O_NONBLOCK, so a FIFO nobody reads
    fails at once (ENXIO) and one whose reader does not keep up gets what fits; for a
    regular file the flag changes nothing. A symlink another user planted in /tmp is
    not followed (pyxinetd.files.planted_link).
    """
    try:
        fd = open_appending(path, 0o644)
    except OSError as err:
        return f"failed to open {path}: {strerror(err)}"   # xinetd's words
    data = as_written(text)
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError as err:
        return f"write to {path} failed, dump incomplete: {strerror(err)}"
    finally:
        os.close(fd)
    return None


def render(config: Configuration, services: Sequence[ServiceRuntime], children: ChildTable,
           sessions: int, socket_fds: Sequence[int], *, version: str,
           process_limit: int | None, now: float | None = None,
           open_fds: Sequence[int] | None = None,
           retries: Sequence[HeldRequest] = ()) -> str:
    """The whole dump, from `INTERNAL STATE DUMP` to `END OF DUMP`. `retries`: the
    requests held for a fork retry, xinetd's retry table."""
    shown = [rt for rt in services if rt.state in _STATE_WORDS]
    out = [f"INTERNAL STATE DUMP: {version}",
           f"Current time: {time.asctime(local_time(now))}", "",
           "Services + defaults:", "Service defaults"]
    out += [f"\t{line}" for line in _defaults_lines(config.defaults)]
    for rt in shown:
        out += _service_block(rt, children, retries)
    out += ["Server table dump:"]
    sockets = {rt.config.id: rt.sock.fileno() for rt in services if rt.sock is not None}
    for child in children:
        out += _server_lines(child, sockets.get(child.service.id, -1))
    out += ["", "Retry table dump:"]
    for held in retries:
        out += _retry_lines(held)
    out += [""]
    mask = list(socket_fds)
    fds = _open_fds() if open_fds is None else list(open_fds)
    # A set to test against: with 19,000 sockets the list took seconds, the loop stalled.
    in_mask = set(mask)
    others = [fd for fd in fds if fd not in in_mask]
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    out += [f"Socket mask: {' '.join(map(str, mask))}",
            f"pfds_last = {len(mask)}",
            f"Open descriptors (not in socket mask): {' '.join(map(str, others))}",
            "",
            f"active_services = {sum(1 for rt in shown if rt.state is State.ACTIVE)}",
            f"available_services = {sum(1 for rt in shown if rt.state in _AVAILABLE)}",
            f"descriptors_free = {max(0, max_fds - len(fds))}",
            f"running_servers = {len(children) + sessions}",
            "Logging service = enabled",
            "",
            f"max_descriptors = {max_fds}",
            f"process_limit = {process_limit or 0}",
            f"config_file = {config.path}",
            "",
            "END OF DUMP",
            "", ""]
    return "\n".join(out)


def _server_lines(child: Child, service_fd: int) -> list[str]:
    """One server of the server table, as xinetd prints it. Its connection: a `wait = no`
    stream server's descriptor is closed in the daemon (-1) and xinetd's flags say so
    (3); the others run on the service's socket (flags 1), and a `wait = yes` stream
    server accepts for itself, so no client is known. The server asked identd first
    (`log_remote_user`) only for a logging `wait = no` stream service with USERID in
    log_on_success; `writes_to_log` is the same flag, or, for INTERCEPT, whether the
    service logs at all. A `wait = yes` stream child whose client port is known was
    started on that client's connection, as a `wait = no` server is: a hosts.allow
    `twist` command run for a client of a running intercepted server (a server started
    on a listening socket has no peer: its port is 0)."""
    svc = child.service
    stream = svc.socket_type is SocketType.STREAM
    on_connection = stream and (not svc.wait or child.peer_port != 0)
    if on_connection:
        descriptor, flags, remote = -1, 3, f"{child.peer},{child.peer_port}"
    elif stream:
        descriptor, flags, remote = service_fd, 1, "<no address>,0"
    else:
        descriptor, flags, remote = service_fd, 1, f"{child.peer},{child.peer_port}"
    log_user = (svc.log_type is not None and "USERID" in svc.log_on_success
                and stream and not svc.wait)
    writes = log_user or (INTERCEPT_FLAG in svc.flags and svc.log_type is not None
                          and not on_connection)
    return [f"{svc.id} server",
            f"pid = {child.pid}",
            f"start_time = {time.asctime(local_time(child.started_at))}",
            "Connection info:",
            f"\tservice = {svc.id}",
            f"\tdescriptor = {descriptor}",
            f"\tflags = {flags}",
            f"\tremote_address = {remote}",
            f"log_remote_user = {'YES' if log_user else 'NO'}",
            f"writes_to_log = {'YES' if writes else 'NO'}",
            ""]


def _retry_lines(held: HeldRequest) -> list[str]:
    """One request held for a fork retry, as xinetd's server_dump prints the servers of
    its retry table: the pid fork() returned (-1), the time its last fork failed, its
    client, the failed forks (`fork_failures`, printed only when there are some: always,
    here), whether the server is to ask identd (USERID in a logging service's
    log_on_success) and `writes_to_log = NO` (xinetd sets it when a server starts)."""
    svc = held.service
    log_user = svc.log_type is not None and "USERID" in svc.log_on_success
    return [f"{svc.id} server",
            "pid = -1",
            f"start_time = {time.asctime(local_time(held.since))}",
            "Connection info:",
            f"\tservice = {svc.id}",
            f"\tremote_address = {held.peer}",
            f"fork_failures = {held.fork_failures}",
            f"log_remote_user = {'YES' if log_user else 'NO'}",
            "writes_to_log = NO",
            ""]


def _open_fds() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        return []


def _defaults_lines(d: Defaults) -> list[str]:
    """What the defaults set, in xinetd's order (it has no line for max_load)."""
    lines: list[str] = []
    if d.instances is not None or "instances" in d.unlimited:
        lines.append(f"Instances = {_limit(d.instances)}")
    if d.groups is not None:
        lines.append(f"Groups = {'yes' if d.groups else 'no'}")
    if d.umask is not None:
        lines.append(f"umask = {d.umask:o}")
    if d.cps is not None:
        lines.append(f"CPS = max conn:{d.cps[0]} wait:{d.cps[1]}")
    if d.per_source is not None or "per_source" in d.unlimited:
        # xinetd prints its number for UNLIMITED here, as in a service's block.
        lines.append(f"PER_SOURCE = {-1 if d.per_source is None else d.per_source}")
    lines.append(f"Bind = {d.bind or 'All addresses.'}")
    lines += _access_lines(d.only_from, d.no_access)
    lines += _logging_lines(d.log_type, d.log_on_success, d.log_on_failure, common=False)
    if d.passenv is not None:
        lines.append(f"Passenv = {' '.join(d.passenv)}".rstrip())
    if d.environment is not None:
        lines += ["Environment strings:", *(f"\t{item}" for item in d.environment)]
    return lines


def _service_block(rt: ServiceRuntime, children: ChildTable,
                   retries: Sequence[HeldRequest]) -> list[str]:
    svc = rt.config
    lines = [f"Service = {svc.name}",
             f"\tState = {_STATE_WORDS[rt.state]}",
             f"\tService configuration: {svc.name}"]
    lines += [f"\t\t{line}" for line in _config_lines(svc)]
    if rt.state is State.ACTIVE:
        fd = rt.sock.fileno() if rt.sock is not None else -1
        # A held request holds its instance slot, but is no running server: xinetd
        # counts its retry servers apart, as here.
        # By id, case-insensitively, as the running servers are counted (services
        # sharing an id share both counts).
        wanted = svc.id.lower()
        held = sum(1 for h in retries if h.service.id.lower() == wanted)
        lines += [f"\trunning servers = {children.occupancy.of_service(svc.id) - held}",
                  f"\tretry servers = {held}",
                  f"\tattempts = {rt.fork_failures}",
                  f"\tservice fd = {fd}"]
    return lines + [""]


def _config_lines(svc: ServiceConfig) -> list[str]:
    family_flag = "IPv4" if svc.family == socket.AF_INET else "IPv6"
    # TCP RPC services never go through TCP Wrappers: xinetd shows that as NOLIBWRAP.
    shown = svc.flags | rpc.implied_flags(svc)
    # One family flag, the socket's: with `flags = IPv4 IPv6` xinetd keeps only the
    # family it uses (IPv6, or IPv4 where IPv6 is not to be had).
    flags = [f for f in SERVICE_FLAGS
             if f == family_flag or (f in shown and f not in ("IPv4", "IPv6"))]
    lines = [f"id = {svc.id}", f"flags = {' '.join(flags)}"]
    if svc.types:
        lines.append(f"type = {' '.join(t for t in SERVICE_TYPES if t in svc.types)}")
    lines += [f"socket_type = {svc.socket_type.value}",
              f"Protocol (name,number) = ({svc.protocol},{svc.protocol_number})"]
    if svc.port is not None:
        lines.append(f"port = {svc.port}")
    lines += [f"Instances = {_limit(svc.instances)}",
              f"wait = {'yes' if svc.wait else 'no'}"]
    if svc.user is not None:
        lines.append(f"user = {svc.user}")
    if svc.group is not None and svc.group_set:
        lines.append(f"group = {svc.group}")
    lines.append(f"Groups = {'yes' if svc.groups else 'no'}")
    if svc.umask is not None:
        lines.append(f"umask = {svc.umask:o}")
    if svc.nice is not None:
        lines.append(f"Nice = {svc.nice}")
    lines += [f"CPS = max conn:{svc.cps[0]} wait:{svc.cps[1]}",
              f"PER_SOURCE = {-1 if svc.per_source is None else svc.per_source}"]
    lines.append(f"Bind = {svc.bind or 'All addresses.'}")
    if svc.server is not None and not svc.is_internal and svc.redirect is None \
            and not svc.is_sensor:      # a sensor starts no server: xinetd shows none
        lines += [f"Server = {svc.server}", f"Server argv = {' '.join(svc.server_argv)}"]
    if svc.libwrap is not None:
        lines.append(f"Libwrap = {svc.libwrap}")
    if svc.redirect is not None:
        lines.append(f"Redirect = {svc.redirect[0]}:{svc.redirect[1]}")
    lines += rpc.dump_lines(svc)
    if svc.access_times:
        lines.append(f"Access times = {' '.join(str(w) for w in svc.access_times)}")
    lines += _access_lines(svc.only_from, svc.no_access)
    if svc.is_sensor:
        lines.append(f"Deny Time: {svc.deny_time}")
    common = isinstance(svc.log_type, FileTarget) and svc.log_type.common
    lines += _logging_lines(svc.log_type, svc.log_on_success, svc.log_on_failure,
                            common=common)
    if svc.passenv is not None:
        lines.append(f"Passenv = {' '.join(svc.passenv)}".rstrip())
    if svc.env:
        lines += ["Environment additions:", *(f"\t{item}" for item in svc.env)]
    if svc.own_environment is not None:
        lines += ["Environment strings:", *(f"\t{item}" for item in svc.own_environment)]
    return lines


def _limit(value: int | None) -> str:
    return "UNLIMITED" if value is None else str(value)


def _access_lines(only_from: tuple[AddressEntry, ...] | None,
                  no_access: tuple[AddressEntry, ...]) -> list[str]:
    if only_from is None:
        allowed = " All sites"
    elif not only_from:
        allowed = " No sites"
    else:
        allowed = "".join(f" {_address(e)}" for e in only_from)
    blocked = "".join(f" {_address(e)}" for e in no_access) if no_access \
        else " No blocked sites"
    # xinetd writes a second space before the first entry of a non-empty list.
    return [f"Only from:{' ' if only_from else ''}{allowed}",
            f"No access:{' ' if no_access else ''}{blocked}"]


def _address(entry: AddressEntry) -> str:
    """As xinetd prints a list entry: inet_ntop's text and the labels NUMERIC, NET and
    HOST (a `.domain` entry is a HOST one there). A plain address (`10.0.0.0`, its
    network implied by the trailing zeros), a factorised one and `a/32` are NUMERIC
    with no mask; `a/bits` is NET, the address as written (host bits kept) and the mask
    written as an address."""
    net = entry.network
    if net is None:
        return f"{entry.name or entry.text}(HOST)"
    family = socket.AF_INET if isinstance(net, ipaddress.IPv4Network) else socket.AF_INET6
    address = socket.inet_ntop(family, net.network_address.packed)
    if entry.kind == "cidr":
        written, _, bits = entry.text.partition("/")
        address = _as_written(family, written) or address
        if family == socket.AF_INET6 and net.prefixlen == net.max_prefixlen:
            # xinetd makes `a/128` a nameless HOST entry that never matches; here it is
            # the host itself (docs/compatibility.md).
            return f"{address}(NUMERIC)"
        if family == socket.AF_INET and bits == "32":
            return f"{address}(NUMERIC)"
    elif entry.kind != "netname":
        return f"{address}(NUMERIC)"
    return f"{address}/{socket.inet_ntop(family, net.netmask.packed)}(NET)"


def _as_written(family: int, text: str) -> str | None:
    """The address part of an `a/bits` entry in inet_ntop's text (None if unreadable)."""
    try:
        packed = socket.inet_aton(text) if family == socket.AF_INET \
            else socket.inet_pton(family, text)
    except OSError:
        return None
    return socket.inet_ntop(family, packed)


def _logging_lines(target: LogTarget | None, success: frozenset[str],
                   failure: frozenset[str], *, common: bool) -> list[str]:
    if target is None:
        return ["No logging"]
    if common:
        where = "Logging to common log file"
    elif isinstance(target, SyslogTarget):
        where = f"Logging to syslog. Facility = {target.facility}, level = {target.level}"
    else:
        assert isinstance(target, FileTarget)
        limits = "no limits" if target.soft_limit is None \
            else f"soft={target.soft_limit} hard={target.hard_limit}"
        where = f"Logging to file: {target.path} ({limits})"
    # xinetd writes each flag after a blank: with none, the line ends at the '='.
    return [where,
            ("Log_on_success flags = " + " ".join(f for f in _SUCCESS_ORDER if f in success)
             ).rstrip(),
            ("Log_on_failure flags = " + " ".join(f for f in _FAILURE_ORDER if f in failure)
             ).rstrip()]
