"""A thin facade over the OS calls the spawner makes.

The spawner's child checklist and its parent-side preparation are sequences of system
calls whose *order* is the behaviour (groups before setgid before setuid; nice and
rlimits while still root). Routing every call through one object lets the unit tests
pass a recording fake and assert that sequence without forking, the way Supervisor's
DummyOptions does. `RealPosix` adds nothing to the calls it wraps.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol

# Every signal whose disposition can be changed (SIGKILL and SIGSTOP cannot).
RESETTABLE_SIGNALS: tuple[int, ...] = tuple(
    sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)))

try:  # CPython's C-level fork/exec, the machinery behind subprocess.
    import _posixsubprocess
except ImportError:  # pragma: no cover - every CPython on POSIX has it
    _posixsubprocess = None  # type: ignore[assignment]

try:  # The whole child checklist in C (src/pyxinetd/_spawn.c); an optional build.
    from pyxinetd import _spawn
except ImportError:  # built without a compiler or Python headers, or not on Linux
    _spawn = None  # type: ignore[assignment]

HAVE_NATIVE = _spawn is not None
# PYXINETD_NATIVE_SPAWN=0 makes the daemon behave as if the extension were not built
# (to run it, or the test suite, on the fallback paths).
NATIVE_ENABLED = HAVE_NATIVE and os.environ.get("PYXINETD_NATIVE_SPAWN", "1") != "0"

# The argument list of _posixsubprocess.fork_exec is private and changes between
# versions; it is used only on the versions whose signature this module was written for.
# 3.12.0 is left out: with extra_groups=[] it skipped setgroups() (CVE-2023-6507).
HAVE_FORK_EXEC = _posixsubprocess is not None and (
    sys.version_info[:2] == (3, 11) or (3, 12, 1) <= sys.version_info[:3] < (3, 13))


class Posix(Protocol):
    """The OS calls the spawner uses, one method per call."""

    # Process creation.
    def fork(self) -> int: ...
    def posix_spawn(self, path: str, argv: Sequence[str], env: Mapping[str, str], *,
                    file_actions: Sequence[tuple[int, ...]], setsigdef: Sequence[int]) -> int: ...
    def fork_exec(self, path: str, argv: Sequence[str], env: Sequence[str], *, fd: int,
                  errpipe: tuple[int, int], uid: int | None, gid: int | None,
                  groups: Sequence[int] | None, umask: int, stderr_fd: int = -1) -> int: ...
    def native_available(self) -> bool: ...
    def native_spawn(self, path: bytes, argv: Sequence[bytes], env: Sequence[bytes], *,
                     fd: int, groups: Sequence[int] | None, gid: int, uid: int, umask: int,
                     nice: int | None, rlimits: Sequence[tuple[int, int, int]],
                     stderr_fd: int = -1) -> int: ...
    def execve(self, path: str, argv: Sequence[str], env: Mapping[str, str]) -> None: ...
    def exit_now(self, status: int) -> NoReturn: ...
    def waitpid(self, pid: int) -> None: ...

    # Descriptors.
    def pipe(self) -> tuple[int, int]: ...
    def read_all(self, fd: int) -> bytes: ...
    def write(self, fd: int, data: bytes) -> None: ...
    def close(self, fd: int) -> None: ...
    def dup2(self, fd: int, fd2: int) -> None: ...
    def dup_above(self, fd: int, lowest: int) -> int: ...
    def closerange(self, low: int, high: int) -> None: ...
    def open_fds(self) -> list[int]: ...
    def is_cloexec(self, fd: int) -> bool: ...

    # Signals.
    def reset_signal_dispositions(self) -> None: ...
    def set_sigmask(self, signals: Sequence[int]) -> list[int]: ...
    def block_signals(self) -> list[int]: ...
    def blocked_signals(self) -> list[int]: ...
    def disposition(self, signum: int) -> object: ...

    # Session, identity, limits.
    def setsid(self) -> None: ...
    def umask(self, mask: int) -> int: ...
    def nice(self, increment: int) -> None: ...
    def getpriority(self) -> int: ...
    def setpriority(self, value: int) -> None: ...
    def getrlimit(self, res: int) -> tuple[int, int]: ...
    def setrlimit(self, res: int, limits: tuple[int, int]) -> None: ...
    def setgroups(self, groups: Sequence[int]) -> None: ...
    def setgid(self, gid: int) -> None: ...
    def setuid(self, uid: int) -> None: ...
    def geteuid(self) -> int: ...
    def effective_capabilities(self) -> int: ...


class RealPosix:
    """The facade backed by the running kernel."""

    def __init__(self, *, native: bool = NATIVE_ENABLED) -> None:
        self._native = native and HAVE_NATIVE

    def fork(self) -> int:
        return os.fork()

    def posix_spawn(self, path: str, argv: Sequence[str], env: Mapping[str, str], *,
                    file_actions: Sequence[tuple[int, ...]], setsigdef: Sequence[int]) -> int:
        return os.posix_spawn(path, list(argv), env, file_actions=list(file_actions),
                              setsid=True, setsigmask=(), setsigdef=setsigdef)

    def fork_exec(self, path: str, argv: Sequence[str], env: Sequence[str], *, fd: int,
                  errpipe: tuple[int, int], uid: int | None, gid: int | None,
                  groups: Sequence[int] | None, umask: int, stderr_fd: int = -1) -> int:
        if not HAVE_FORK_EXEC:
            raise OSError(0, "C-level fork/exec unavailable on this Python")
        errpipe_read, errpipe_write = errpipe
        # Typed loosely on purpose: the stubs disagree with CPython about optional slots.
        fork_exec: Any = _posixsubprocess.fork_exec
        pid: int = fork_exec(
            [os.fsencode(a) for a in argv], [os.fsencode(path)],
            True, (errpipe_write,),            # close_fds, pass_fds
            None, [os.fsencode(e) for e in env],   # cwd, env
            fd, -1, -1, fd, -1,                # stdin, stdout = the socket
            stderr_fd if stderr_fd >= 0 else fd,   # stderr: the socket unless redirected
            errpipe_read, errpipe_write,
            True, True, -1,                    # restore_signals, setsid, no process group
            gid, None if groups is None else list(groups), uid, umask,
            None, True)                        # no preexec_fn; vfork when allowed
        return pid

    def native_available(self) -> bool:
        return self._native

    def native_spawn(self, path: bytes, argv: Sequence[bytes], env: Sequence[bytes], *,
                     fd: int, groups: Sequence[int] | None, gid: int, uid: int, umask: int,
                     nice: int | None, rlimits: Sequence[tuple[int, int, int]],
                     stderr_fd: int = -1) -> int:
        """pyxinetd._spawn.spawn; OSError carries `step` (and `rlimit_index`)."""
        if _spawn is None:
            raise OSError(errno.ENOSYS, "pyxinetd._spawn is not built")
        return _spawn.spawn(path, argv, env, fd, setsid=True, groups=groups, gid=gid, uid=uid,
                            umask=umask, nice=nice, rlimits=rlimits, stderr_fd=stderr_fd)

    def execve(self, path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        os.execve(path, list(argv), env)

    def exit_now(self, status: int) -> NoReturn:
        os._exit(status)

    def waitpid(self, pid: int) -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def pipe(self) -> tuple[int, int]:
        return os.pipe()  # both ends close-on-exec (PEP 446)

    def read_all(self, fd: int) -> bytes:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, fd: int, data: bytes) -> None:
        os.write(fd, data)

    def close(self, fd: int) -> None:
        os.close(fd)

    def dup2(self, fd: int, fd2: int) -> None:
        os.dup2(fd, fd2, inheritable=True)

    def dup_above(self, fd: int, lowest: int) -> int:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)

    def closerange(self, low: int, high: int) -> None:
        if high > low:
            os.closerange(low, high)

    def open_fds(self) -> list[int]:
        # The directory's own descriptor appears in the listing; it is closed by the
        # time the caller looks, and is_cloexec() on it then fails with EBADF.
        try:
            return [int(name) for name in os.listdir("/proc/self/fd")]
        except OSError:  # no /proc: every number below the soft limit
            return list(range(min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 16)))

    def is_cloexec(self, fd: int) -> bool:
        return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)

    def reset_signal_dispositions(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in RESETTABLE_SIGNALS:
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # glibc-reserved real-time signals

    def set_sigmask(self, signals: Sequence[int]) -> list[int]:
        return [int(s) for s in signal.pthread_sigmask(signal.SIG_SETMASK, signals)]

    def block_signals(self) -> list[int]:
        return [int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())]

    def blocked_signals(self) -> list[int]:
        return [int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])]

    def disposition(self, signum: int) -> object:
        return signal.getsignal(signum)

    def setsid(self) -> None:
        os.setsid()

    def umask(self, mask: int) -> int:
        return os.umask(mask)

    def nice(self, increment: int) -> None:
        # nice(2) may legitimately return -1; errors are raised by os.nice itself.
        os.nice(increment)

    def getpriority(self) -> int:
        return os.getpriority(os.PRIO_PROCESS, 0)

    def setpriority(self, value: int) -> None:
        os.setpriority(os.PRIO_PROCESS, 0, value)

    def getrlimit(self, res: int) -> tuple[int, int]:
        return resource.getrlimit(res)

    def setrlimit(self, res: int, limits: tuple[int, int]) -> None:
        try:
            resource.setrlimit(res, limits)
        except ValueError as err:
            # The resource module turns EPERM and EINVAL into ValueError; give the errno
            # back so that every path reports the same failure.
            code = errno.EPERM if "not allowed" in str(err) else errno.EINVAL
            raise OSError(code, os.strerror(code)) from err

    def setgroups(self, groups: Sequence[int]) -> None:
        os.setgroups(list(groups))

    def setgid(self, gid: int) -> None:
        os.setgid(gid)

    def setuid(self, uid: int) -> None:
        os.setuid(uid)

    def geteuid(self) -> int:
        return os.geteuid()

    def effective_capabilities(self) -> int:
        """The CapEff bit set (root in a container may lack some capabilities)."""
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("CapEff:"):
                        return int(line.split()[1], 16)
        except OSError:
            pass
        return -1 if os.geteuid() == 0 else 0
