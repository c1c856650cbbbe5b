"""What a server needs, resolved in the parent before any process is created.

`build_request` turns a service and a connection into a `SpawnRequest`: path, argv, the
environment (the service's, REMOTE_HOST where xinetd puts it), credentials (only when the daemon runs as
root and the service names a user or group), umask, nice and the rlimits in the order
the child applies them, each as much of what the service asks as the daemon can give. Every spawn path in pyxinetd.spawner works from it.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
import resource
from dataclasses import dataclass
from typing import Any, TypeVar

from pyxinetd.config.ceilings import Ceilings
from pyxinetd.config.model import ServiceConfig
from pyxinetd.errors import SpawnError
from pyxinetd.posix import Posix

_Text = TypeVar("_Text", str, bytes)

# Marks a service that gate.prepare made of a `twist` command (never a config word:
# those are upper case): libwrap execs the command with the checking process's own
# environment, so it gets no REMOTE_HOST (and no PEERENV variables) from the spawner.
TWIST_FLAG = "twist"

# A nice increment beyond the width of the priority range (-20..19) does no more than
# one of this size; xinetd hands any number to nice(2), which clamps.
NICE_SPAN = 40

# The limits applied in the child, by xinetd attribute suffix (RLIMIT_NOFILE apart).
RLIMIT_RESOURCES: dict[str, int] = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA,
    "rss": resource.RLIMIT_RSS,
    "stack": resource.RLIMIT_STACK,
}


@dataclass(frozen=True)
class Credentials:
    """What the child becomes; groups are set even when empty (setgroups(0))."""

    uid: int | None
    gid: int | None
    groups: tuple[int, ...]


@dataclass(frozen=True)
class SpawnRequest:
    """Everything the child needs, computed in the parent before anything is created."""

    service_id: str
    path: str
    argv: tuple[str, ...]
    env: tuple[str, ...]                      # NAME=value, REMOTE_HOST at remote_at
    fd: int
    credentials: Credentials | None
    umask: int | None
    nice: int | None
    nofile: tuple[int, int] | None            # None: leave the inherited limit alone
    rlimits: tuple[tuple[str, int, int], ...]  # (name, resource, value), NOFILE apart
    stderr_fd: int = -1                       # descriptor 2 instead of fd (`stderr`)
    # Where REMOTE_HOST is in env (None: a twist command, which gets none). The rest of
    # env is fixed per service; see server_environment.
    remote_at: int | None = None

    def env_mapping(self) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for item in self.env:
            name, _, value = item.partition("=")
            mapping[name] = value
        return mapping


def build_request(service: ServiceConfig, fd: int, remote_host: str, *, as_root: bool,
                  posix: Posix, peer_env: tuple[str, ...] = (),
                  stderr_fd: int = -1) -> SpawnRequest:
    """Resolve the service and connection into a SpawnRequest. Raises SpawnError.

    `peer_env` (flags = PEERENV, pyxinetd.peerenv) goes just before REMOTE_HOST and,
    like it, replaces any other value of the same variables."""
    if service.server is None:
        raise SpawnError(f"{service.id}: no server to start", errno=errno.EINVAL, step="exec")
    if not service.server_argv:
        raise SpawnError(f"{service.id}: empty argv for {service.server}",
                         errno=errno.EINVAL, step="exec")
    base = service.environment
    if base is None:
        base = tuple(f"{k}={v}" for k, v in os.environ.items())
    remote_at: int | None = None
    if TWIST_FLAG in service.flags:
        env = base      # exactly what the access check gave it
    else:
        head, tail = server_environment(base)
        head = replaced_by(head, peer_env) + peer_env
        remote_at = len(head)
        env = head + (f"REMOTE_HOST={remote_host}",) + replaced_by(tail, peer_env)

    credentials = None
    if as_root and (service.user is not None or service.group is not None):
        gid = service.group
        if gid is None and service.user is not None:
            gid = primary_gid(service.user)
        credentials = Credentials(service.user, gid, tuple(service.supplementary_groups))

    limits = service.rlimits
    nice = None if service.nice is None else max(-NICE_SPAN, min(NICE_SPAN, service.nice))
    # A limit above what the daemon can give, or a nice below it, is given as the
    # nearest it can (pyxinetd.config.ceilings; warned about at load). Read here, once
    # per service and configuration on the native path (its plan is kept).
    ceilings = (Ceilings.of_this_process()
                if limits.items() or (nice is not None and nice < 0)
                else None)
    if ceilings is not None and nice is not None:
        nice = ceilings.granted_nice(nice)
    if limits.files is not None and limits.files != resource.RLIM_INFINITY:
        files = limits.files if ceilings is None else ceilings.granted("files", limits.files)
        nofile: tuple[int, int] | None = (files, files)
    else:
        # Unset, or UNLIMITED, which the kernel refuses for RLIMIT_NOFILE (it caps the
        # limit at fs.nr_open, whatever the privilege): the daemon's hard limit, the most
        # it can hand out.
        hard = posix.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = None if hard == resource.RLIM_INFINITY else (hard, hard)
    rlimits = tuple((name, RLIMIT_RESOURCES[name],
                     value if ceilings is None else ceilings.granted(name, value))
                    for name, value in limits.items() if name != "files")
    return SpawnRequest(service.id, service.server, tuple(service.server_argv), env, fd,
                        credentials, service.umask, nice, nofile, rlimits, stderr_fd,
                        remote_at)


@functools.lru_cache(maxsize=4096)
def server_environment(base: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The service environment `base` as the two halves REMOTE_HOST goes between.

    As xinetd, which sets REMOTE_HOST in the server's environment as it sets any
    variable: in the place of one already there (from its own start-up environment,
    `passenv` or `env`), else at the end. Computed once per distinct environment rather
    than on every connection: it is fixed at load time, and filtering it was a
    measurable share of the master's time per spawn.
    """
    head: list[str] = []
    tail: list[str] | None = None
    for entry in base:
        if entry.startswith("="):
            continue
        if entry.startswith("REMOTE_HOST="):
            if tail is None:
                tail = []
            continue
        (head if tail is None else tail).append(entry)
    return tuple(head), tuple(tail or ())


def replaced_by(env: tuple[_Text, ...], assignments: tuple[str, ...]) -> tuple[_Text, ...]:
    """`env` without the variables that `assignments` (NAME=value) set again: a name
    given twice would leave the first, older value to getenv(). Works on str or bytes
    entries (the native plan keeps its environment encoded)."""
    if not assignments:
        return env
    names = tuple(a.partition("=")[0] + "=" for a in assignments)
    if env and isinstance(env[0], bytes):
        prefixes: tuple[Any, ...] = tuple(map(os.fsencode, names))
    else:
        prefixes = names
    return tuple(e for e in env if not e.startswith(prefixes))


@functools.lru_cache(maxsize=4096)
def encoded(strings: tuple[str, ...]) -> tuple[bytes, ...]:
    # os.fsencode of each string, once per distinct argv or environment.
    return tuple(os.fsencode(text) for text in strings)


def primary_gid(uid: int) -> int:
    """The primary group of `uid` (the server's gid when the service names no group)."""
    # The loader resolves `group` whenever `user` is set; this is only a safety net, so
    # that a server never keeps gid 0 because a group was left unresolved.
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid  # xinetd: a numeric user without passwd entry gets gid = uid
