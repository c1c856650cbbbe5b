"""Starting external servers: one ordered checklist, four ways of getting there.

What the server must find when it starts (xinetd reference §4.7-4.9): the connection
on descriptors 0, 1 and 2 and no other descriptor; every signal at its default
disposition and an empty mask; a new session; supplementary groups, gid and uid (in
that order) when the daemon runs as root and the service names a user or group; the
service's umask, nice and rlimits (RLIMIT_NOFILE soft = hard = the daemon's hard limit
unless rlimit_files says otherwise); the environment of the service plus REMOTE_HOST;
argv exactly service.server_argv.

How fast the child gets there is a separate, measured choice (docs/spawner.md):

* NATIVE: the optional C extension pyxinetd._spawn does every step above, in order, in a
  CLONE_VM|CLONE_VFORK child (vfork speed, with or without a credential change, nice
  and rlimits included: nothing is lent by the parent). The first choice whenever it
  was built; the three paths below are the fallbacks, in pyxinetd.spawnpaths
  (PYXINETD_NATIVE_SPAWN=0 forces them).
* FORK_EXEC: CPython's C-level fork/exec (`_posixsubprocess`, behind subprocess). The
  child runs no Python code, and without a credential change it uses vfork, so its
  cost does not grow with the daemon's memory; a credential change rules vfork out.
  It resets SIGPIPE and SIGXFSZ but keeps any other ignored signal and the signal mask,
  so it is used only while the master ignores and blocks nothing else (the master's
  "ignored" signals have recording handlers, which exec resets). It cannot set nice or
  rlimits in the child, but the child inherits them: the parent sets RLIMIT_NOFILE and
  nice on itself around the call and puts them back right after (the master is
  single-threaded and its signal handlers only record), when that is reversible
  (lowering a hard limit needs CAP_SYS_RESOURCE to undo, raising priority CAP_SYS_NICE;
  root in a container may lack either).
* SPAWN: `os.posix_spawn` (glibc: CLONE_VM|CLONE_VFORK) with dup2/close actions,
  setsid, every signal at default and an empty mask, for when the master's signal
  state is not plain and no credential change is needed (same lending of umask,
  NOFILE and nice). glibc leaves its two internal signals (32, 33) ignored there.
* CHECKLIST: `os.fork` and the steps below in Python, each checked, any failure sent
  as "errno:step:message" through a close-on-exec pipe and `os._exit(127)` always.
  Used for RLIMIT_AS/CPU/DATA/RSS/STACK (setting them on the parent, even briefly,
  could kill it or starve its allocations) and for whatever the faster paths cannot
  reproduce exactly.

Temporarily switching the parent's uid to the server's (to reach vfork speed with a
credential change) was measured and rejected: while the master's real uid is the
server's, any process of that user may signal it (kill(2) compares real uids).

The master reaps every child with waitpid(-1, WNOHANG) against its own table, so a
successfully started child is never waited for here; a child that failed before exec
is reaped here (glibc's posix_spawn does so itself) before SpawnError is raised.
"""

from __future__ import annotations

import enum
import errno
import os
import resource
import signal
import socket
import sys
from dataclasses import dataclass

from pyxinetd.config.model import ServiceConfig
from pyxinetd.errors import SpawnError
from pyxinetd.peerenv import PEERENV_FLAG, peer_environment
from pyxinetd.posix import HAVE_FORK_EXEC, RESETTABLE_SIGNALS, Posix, RealPosix
from pyxinetd.spawnrequest import RLIMIT_RESOURCES as RLIMIT_RESOURCES
from pyxinetd.spawnrequest import Credentials as Credentials
from pyxinetd.spawnrequest import SpawnRequest as SpawnRequest
from pyxinetd.spawnrequest import build_request as build_request
from pyxinetd.spawnrequest import TWIST_FLAG, encoded, replaced_by
from pyxinetd.spawnpaths import FallbackPaths, spawn_error

# Signals the C-level fork path resets itself (restore_signals); any other signal the
# master ignores would survive exec there.
_C_PATH_RESETS = frozenset({int(signal.SIGPIPE), int(signal.SIGXFSZ)})

# Native plans kept (one per service id); past this the cache starts afresh, so the ids
# of services dropped by reloads are not kept forever.
_PLAN_CACHE_MAX = 4096

# What os.fsencode encodes with: REMOTE_HOST is encoded per spawn without its call.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()

# linux/capability.h
CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24


class Method(enum.Enum):
    NATIVE = "native"
    SPAWN = "posix_spawn"
    FORK_EXEC = "fork_exec"
    CHECKLIST = "checklist"


@dataclass(frozen=True, slots=True)
class NativeSettings:
    """The C extension's arguments for what it sets in the child besides descriptors,
    path, argv and environment."""

    groups: tuple[int, ...] | None
    gid: int
    uid: int
    umask: int
    nice: int | None
    rlimits: list[tuple[int, int, int]]
    limit_names: tuple[str, ...]     # step name of each rlimits entry, for errors


def native_settings(req: SpawnRequest) -> NativeSettings:
    creds = req.credentials
    limits = [("files", resource.RLIMIT_NOFILE, req.nofile)] if req.nofile else []
    limits += [(name, res, (value, value)) for name, res, value in req.rlimits]
    return NativeSettings(
        groups=creds.groups if creds else None,
        gid=-1 if creds is None or creds.gid is None else creds.gid,
        uid=-1 if creds is None or creds.uid is None else creds.uid,
        umask=-1 if req.umask is None else req.umask,
        nice=req.nice or None,
        rlimits=[(res, soft, hard) for _, res, (soft, hard) in limits],
        limit_names=tuple(name for name, _, _ in limits))


@dataclass(frozen=True, slots=True)
class NativePlan:
    """The C extension's arguments for one service, encoded once: per connection only
    REMOTE_HOST (between env_head and env_tail) and the descriptor change."""

    service: ServiceConfig
    as_root: bool
    request: SpawnRequest            # built with fd -1 and an empty REMOTE_HOST
    path: bytes
    argv: tuple[bytes, ...]
    env_head: tuple[bytes, ...]      # the environment before REMOTE_HOST
    env_tail: tuple[bytes, ...]      # after it (xinetd's place for it; usually empty)
    settings: NativeSettings


class Spawner(FallbackPaths):
    """Starts servers through a Posix facade (RealPosix in the daemon): the C extension's
    native spawn, else one of the fallback paths (pyxinetd.spawnpaths)."""

    def __init__(self, posix: Posix) -> None:
        super().__init__(posix)
        # Read once: the master does not change its capabilities while serving.
        self._caps: int | None = None
        self._native: bool | None = None
        # service id -> the plan of its current configuration (the identity check
        # below makes it exact). Keyed by the service's id, not by the object: a
        # reload's new configuration, or the one-connection copy a hosts.allow option
        # makes (setenv, nice, user...), replaces the entry instead of adding one, so
        # the cache holds one plan per service rather than one per connection or per
        # reload seen.
        self._plans: dict[str, NativePlan] = {}

    def spawn(self, service: ServiceConfig, sock: socket.socket, remote_host: str, *,
              as_root: bool, method: Method | None = None,
              remote_name: str | None = None, stderr_fd: int = -1,
              sender: object = None, addresses: socket.socket | None = None) -> int:
        """Start the service's server on `sock`; return its pid. Raises SpawnError.
        `remote_name`: the client's confirmed name (PEERENV's TCPREMOTEHOST);
        `stderr_fd`: the server's descriptor 2 instead of `sock` (`stderr`);
        `sender`: the datagram's source when `sock` cannot tell it (PEERENV);
        `addresses`: the socket whose addresses PEERENV tells, when not `sock` (the
        service socket of an intercepted server, which gets a private one)."""
        # flags = PEERENV: the addresses, read from the socket the server gets.
        peer_env = (peer_environment(sock if addresses is None else addresses,
                                     remote_name, sender)
                    if PEERENV_FLAG in service.flags else ())
        if method is None:
            if self._native is None:
                self._native = self._os.native_available()
            if self._native:
                # The per-connection path: everything but REMOTE_HOST was resolved and
                # encoded the first time this service was spawned.
                plan = self._plans.get(service.id)
                if plan is None or plan.service is not service or plan.as_root is not as_root:
                    if TWIST_FLAG in service.flags:
                        # Made for this one connection (no plan to keep), and its
                        # environment has no REMOTE_HOST to append.
                        return self.run_native(build_request(
                            service, sock.fileno(), remote_host, as_root=as_root,
                            posix=self._os, stderr_fd=stderr_fd))
                    plan = self._native_plan(service, as_root)
                return self._run_plan(plan, sock.fileno(), remote_host, peer_env, stderr_fd)
        request = build_request(service, sock.fileno(), remote_host, as_root=as_root,
                                posix=self._os, peer_env=peer_env, stderr_fd=stderr_fd)
        chosen = method if method is not None else self.choose(request)
        if chosen is Method.NATIVE:
            return self.run_native(request)
        if chosen is Method.SPAWN:
            return self.run_spawn(request)
        if chosen is Method.FORK_EXEC:
            return self.run_fork_exec(request)
        return self.run_checklist(request)

    # -- choosing ---------------------------------------------------------------------

    def choose(self, req: SpawnRequest) -> Method:
        """The fastest path that reproduces the whole checklist exactly."""
        if self._os.native_available():
            return Method.NATIVE
        if req.rlimits or not self._parent_state_reversible(req):
            return Method.CHECKLIST
        if HAVE_FORK_EXEC and self._signal_state_plain():
            return Method.FORK_EXEC
        if req.credentials is None:
            return Method.SPAWN
        return Method.CHECKLIST

    def _parent_state_reversible(self, req: SpawnRequest) -> bool:
        # Raising a hard limit takes CAP_SYS_RESOURCE and lowering nice CAP_SYS_NICE,
        # which root in a container may not have; without them a change lent to the
        # child could not be taken back.
        caps = self._capabilities()
        if req.nice and not caps & (1 << CAP_SYS_NICE):
            return False
        if req.nofile is not None and not caps & (1 << CAP_SYS_RESOURCE):
            return req.nofile[1] == self._os.getrlimit(resource.RLIMIT_NOFILE)[1]
        return True

    def _capabilities(self) -> int:
        if self._caps is None:
            self._caps = self._os.effective_capabilities()
        return self._caps

    def _signal_state_plain(self) -> bool:
        """True when the C fork path would leave no signal ignored or blocked."""
        if self._os.blocked_signals():
            return False
        for signum in RESETTABLE_SIGNALS:
            if signum in _C_PATH_RESETS:
                continue
            handler = self._os.disposition(signum)
            if handler is None or handler == signal.SIG_IGN:
                return False
        return True

    # -- path 0: the C extension -------------------------------------------------------

    def keep_plans(self, service_ids: set[str]) -> None:
        """Forget the plans of the ids a reload removed (see keep_plans below)."""
        self._plans = {sid: plan for sid, plan in self._plans.items() if sid in service_ids}

    def run_native(self, req: SpawnRequest) -> int:
        """pyxinetd._spawn: the whole checklist in C, in a CLONE_VM|CLONE_VFORK child."""
        # All but REMOTE_HOST is fixed per service (a twist command has none).
        at = req.remote_at
        env = (encoded(req.env) if at is None else
               encoded(req.env[:at]) + (os.fsencode(req.env[at]),) + encoded(req.env[at + 1:]))
        return self._native_spawn(req, native_settings(req), os.fsencode(req.path),
                                  encoded(req.argv), env, req.fd, req.stderr_fd)

    def _native_spawn(self, req: SpawnRequest, settings: NativeSettings, path: bytes,
                      argv: tuple[bytes, ...], env: tuple[bytes, ...], fd: int,
                      stderr_fd: int) -> int:
        """The C extension's spawn; its failures as SpawnError naming the step."""
        try:
            return self._os.native_spawn(
                path, argv, env, fd=fd, groups=settings.groups, gid=settings.gid,
                uid=settings.uid, umask=settings.umask, nice=settings.nice,
                rlimits=settings.rlimits, stderr_fd=stderr_fd)
        except OSError as err:
            step = str(getattr(err, "step", "fork"))
            if step == "rlimit":
                step = f"rlimit_{settings.limit_names[int(getattr(err, 'rlimit_index', 0))]}"
            raise spawn_error(req, step, err) from err
        except ValueError as err:  # e.g. NUL in argv or env
            raise SpawnError(f"{req.service_id}: cannot start {req.path}: {err}",
                             errno=errno.EINVAL, step="exec") from err

    def _native_plan(self, service: ServiceConfig, as_root: bool) -> NativePlan:
        # build_request validates (no server, empty argv: SpawnError, nothing cached).
        req = build_request(service, -1, "", as_root=as_root, posix=self._os)
        at = req.remote_at
        assert at is not None  # a twist command is never planned
        plan = NativePlan(
            service, as_root, req, os.fsencode(req.path), encoded(req.argv),
            encoded(req.env[:at]), encoded(req.env[at + 1:]), native_settings(req))
        if len(self._plans) >= _PLAN_CACHE_MAX:
            self._plans.clear()
        self._plans[service.id] = plan
        return plan

    def _run_plan(self, plan: NativePlan, fd: int, remote_host: str,
                  peer_env: tuple[str, ...] = (), stderr_fd: int = -1) -> int:
        remote = (("REMOTE_HOST=" + remote_host).encode(_FS_ENCODING, _FS_ERRORS),)
        env = (replaced_by(plan.env_head, peer_env) + tuple(map(os.fsencode, peer_env))
               + remote + replaced_by(plan.env_tail, peer_env)
               if peer_env else plan.env_head + remote + plan.env_tail)
        return self._native_spawn(plan.request, plan.settings, plan.path, plan.argv, env,
                                  fd, stderr_fd)

_DEFAULT = Spawner(RealPosix())


def spawn(service: ServiceConfig, sock: socket.socket, remote_host: str, *,
          as_root: bool, remote_name: str | None = None, stderr_fd: int = -1,
          sender: object = None, addresses: socket.socket | None = None) -> int:
    """Start the service's server on `sock`; return its pid. Raises SpawnError.

    The caller records the pid at once and reaps it; nothing here ever waits for a
    server that started.
    """
    return _DEFAULT.spawn(service, sock, remote_host, as_root=as_root,
                          remote_name=remote_name, stderr_fd=stderr_fd, sender=sender,
                          addresses=addresses)


def keep_plans(service_ids: set[str]) -> None:
    """After a reload: only the services in `service_ids` keep their spawn plans. The
    plans are keyed by id, so a configuration whose ids change from one reload to the
    next (generated names, say) would otherwise leave one plan per id ever served."""
    _DEFAULT.keep_plans(service_ids)
