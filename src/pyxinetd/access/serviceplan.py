"""What the access checks need to know of a service, worked out once per service.

Which checks apply (address lists, TCP Wrappers: reference §4.4), the daemon name the
hosts tables see (§4.14), whether libwrap would run in the daemon process itself (the
"resident" case, where `twist` is refused), and who the commands of `spawn` and `aclexec`
run as. pyxinetd.access.gate caches a `ServicePlan` per service configuration, so nothing
here runs per request (the user database may block).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from pyxinetd.access import lists
from pyxinetd.access.hostsaccess import CommandSetup
from pyxinetd.access.resolverwire import ShellContext
from pyxinetd.config.model import ServiceConfig, SocketType

# The builtins xinetd serves in a child of its own; it serves the others (datagram
# builtins, stream daytime and time) in the daemon process, libwrap's "resident" case.
FORKED_BUILTINS = frozenset({"echo", "discard", "chargen", "tcpmux"})


@dataclass(frozen=True)
class ServicePlan:
    """What the checks of one service's requests need to know of it."""

    lists: bool
    list_names: bool
    wrap: bool
    daemon: str
    resident: bool
    # Who spawn/aclexec commands run as: the service's server would be (xinetd's child
    # has switched when libwrap runs them).
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] | None
    umask: int | None
    # Their nice increment: the service's `nice`, which xinetd's child has applied
    # before it checks (none where the daemon checks itself, the resident case).
    nice: int


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


def credentials(svc: ServiceConfig) -> tuple[int | None, int | None, tuple[int, ...] | None]:
    """(uid, gid, supplementary groups) of the service's servers, when the daemon can
    switch to them (it runs as root) and the service names a user or group; else
    Nones: the commands run as the daemon. Computed once per service (NSS may block)."""
    if os.geteuid() != 0 or (svc.user is None and svc.group is None):
        return None, None, None
    gid = svc.group
    if gid is None and svc.user is not None:
        try:
            gid = pwd.getpwuid(svc.user).pw_gid
        except KeyError:
            gid = None
    return svc.user, gid, tuple(svc.supplementary_groups)


def command_context(plan: ServicePlan, setup: CommandSetup) -> ShellContext:
    return ShellContext(plan.uid, plan.gid, plan.groups,
                        plan.umask if setup.umask is None else setup.umask, setup.setenv,
                        plan.nice + setup.nice)


def resident(svc: ServiceConfig) -> bool:
    """xinetd checks this service's requests in the daemon process itself."""
    return svc.is_internal and (svc.socket_type is SocketType.DGRAM
                                or svc.name not in FORKED_BUILTINS)


def wraps(svc: ServiceConfig) -> bool:
    if "NOLIBWRAP" in svc.flags:
        return False
    # libwrap is forced off for RPC services over TCP.
    return not ("RPC" in svc.types and svc.protocol == "tcp")


def plan_for(svc: ServiceConfig) -> ServicePlan:
    uid, gid, groups = credentials(svc)
    inside = resident(svc)
    return ServicePlan(lists.has_lists(svc), lists.needs_names(svc), wraps(svc),
                       daemon_name(svc), inside, uid, gid, groups, svc.umask,
                       0 if inside else svc.nice or 0)
