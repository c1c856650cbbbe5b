"""Reverse DNS (with forward confirmation) and shell commands, away from the master loop.

Why a helper process: getnameinfo/getaddrinfo block, for as long as the resolver likes,
and the master must never block; threads in the master are ruled out because it forks
servers (a fork while another thread holds a libc lock can deadlock the child). So the
master starts one long-lived helper (`python -m pyxinetd.access.resolver`) on first need,
with one end of an AF_UNIX SOCK_SEQPACKET pair on its fd 0. Requests and answers are
one JSON object per packet; the helper answers lookups from a bounded pool of threads
that grows with demand and makes each address's lookup once however many ask for it
(pyxinetd.access.lookups; threads are harmless there: it never forks while looking
up), and runs the `spawn` and `aclexec`
commands of hosts.allow/hosts.deny with stdio on /dev/null, each in its own session,
reaping them itself, so the master's child table never sees them. A spawn command is
not waited for; the exit status of an aclexec check (one or more commands run in turn)
is sent back, and the check is killed (its whole process group) at its deadline.

On the master side every lookup and every check has a deadline (a loop timer); when it
passes, or when the helper is gone, the callback gets "name unknown" (a lookup) or None
(a check), and the request proceeds as if the lookup had failed or the command had
exited non-zero. The helper is told that deadline and skips a lookup nobody waits for
any more. The helper exits when its socket reaches EOF (the master closed it or died).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyxinetd.access.lookups import NO_NAME as NO_NAME
from pyxinetd.access.lookups import LookupPool
from pyxinetd.access.lookups import NameInfo as NameInfo
from pyxinetd.access.lookups import resolve as resolve
from pyxinetd.loop import READ, Loop
from pyxinetd.timers import Timer

DEFAULT_TIMEOUT = 5.0
# Test-only override of DEFAULT_TIMEOUT, in seconds (so a test can keep lookups pending).
TIMEOUT_ENV = "PYXINETD_LOOKUP_TIMEOUT"
MAX_TIMEOUT = 3600.0
MAX_PACKET = 65_536
# The master's deadline for a check passes this long after the helper's own, so that
# the helper's answer (status None after its kill) normally arrives first.
CHECK_GRACE = 1.0


@dataclass(frozen=True)
class ShellContext:
    """What a spawn or aclexec command runs as: under xinetd, libwrap runs it from the
    child that checks the request, which already has the service's user, groups and
    umask, and the environment of xinetd itself plus the rule's `setenv` pairs so far.
    None fields are left as the helper has them (it runs as the daemon)."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    umask: int | None = None
    setenv: tuple[tuple[str, str], ...] = ()
    # Added to the helper's nice value (the daemon's), as nice(2) adds.
    nice: int = 0

    def message(self) -> dict[str, object]:
        return {"uid": self.uid, "gid": self.gid,
                "groups": None if self.groups is None else list(self.groups),
                "umask": self.umask, "setenv": [list(pair) for pair in self.setenv],
                "nice": self.nice}

    @staticmethod
    def read(message: dict[str, object]) -> ShellContext:
        """The context of a request packet; wrong types are dropped (defaults)."""
        def number(key: str) -> int | None:
            value = message.get(key)
            return value if isinstance(value, int) else None
        groups = message.get("groups")
        pairs = message.get("setenv")
        return ShellContext(
            number("uid"), number("gid"),
            tuple(g for g in groups if isinstance(g, int)) if isinstance(groups, list)
            else None,
            number("umask"),
            tuple((str(p[0]), str(p[1])) for p in pairs
                  if isinstance(p, list) and len(p) == 2) if isinstance(pairs, list)
            else (),
            number("nice") or 0)


DAEMON_CONTEXT = ShellContext()
NameCallback = Callable[[NameInfo], None]
# The exit status of a check's last command (negative: killed by that signal), or None
# when it did not finish in time or could not be run.
StatusCallback = Callable[[int | None], None]


def lookup_timeout(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """DEFAULT_TIMEOUT, or $PYXINETD_LOOKUP_TIMEOUT (seconds) when set and valid."""
    try:
        value = float(environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    if value != value or value <= 0:
        return DEFAULT_TIMEOUT
    return min(value, MAX_TIMEOUT)


class Resolver:
    """Master side: asynchronous lookups through the helper process."""

    def __init__(self, loop: Loop, *, timeout: float | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.loop = loop
        self.timeout = lookup_timeout() if timeout is None else timeout
        self._on_error = on_error
        self._sock: socket.socket | None = None
        self.pid: int | None = None
        # Helpers that exited on their own and are not reaped yet.
        self._exited: set[int] = set()
        self._ids = iter(range(1, 1 << 62))
        self._pending: dict[int, tuple[NameCallback, Timer]] = {}
        self._checks: dict[int, tuple[StatusCallback, Timer]] = {}

    def lookup(self, address: str, callback: NameCallback) -> None:
        """Call `callback` later (never before returning) with what the name is."""
        request_id = next(self._ids)
        timer = self.loop.call_later(self.timeout, lambda: self._expire(request_id))
        self._pending[request_id] = (callback, timer)
        # `until`: when nobody waits for the answer any more (CLOCK_MONOTONIC is the
        # same in the helper), so that the helper skips a lookup it reaches too late.
        if not self._send({"id": request_id, "op": "name", "addr": address,
                           "until": time.monotonic() + self.timeout}):
            self.loop.call_soon(lambda: self._expire(request_id))

    def run_shell(self, command: str, context: ShellContext = DAEMON_CONTEXT) -> None:
        """Run `/bin/sh -c command` with stdio on /dev/null; do not wait for it."""
        self._send({"op": "sh", "cmd": command, **context.message()})

    def run_check(self, commands: tuple[str, ...], timeout: float,
                  callback: StatusCallback, context: ShellContext = DAEMON_CONTEXT) -> None:
        """Run the commands one after the other (`/bin/sh -c`, stdio on /dev/null) and
        call `callback` later (never before returning) with the last one's status."""
        request_id = next(self._ids)
        timer = self.loop.call_later(timeout + CHECK_GRACE,
                                     lambda: self._finish_check(request_id, None))
        self._checks[request_id] = (callback, timer)
        if not self._send({"id": request_id, "op": "check", "cmds": list(commands),
                           "timeout": timeout, **context.message()}):
            self.loop.call_soon(lambda: self._finish_check(request_id, None))

    def close(self) -> None:
        """Stop the helper (its queued lookups answer nobody now; left alone it would
        linger until the slowest of them gave up) and expire what waits."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass
            # Still ours to reap (at exit, or after a reload): not an unknown child.
            self._exited.add(self.pid)
            self.pid = None
        self._disconnect()

    def reaped(self, pid: int) -> bool:
        """Whether `pid`, just reaped by the master, was the helper (whose pid must then
        never be signalled again)."""
        if pid == self.pid:
            self.pid = None
            return True
        if pid in self._exited:
            self._exited.discard(pid)
            return True
        return False

    def _disconnect(self) -> None:
        if self._sock is not None:
            self.loop.unregister(self._sock)
            self._sock.close()
            self._sock = None
        for request_id in list(self._pending):
            self._expire(request_id)
        for request_id in list(self._checks):
            self._finish_check(request_id, None)

    def _send(self, message: dict[str, object]) -> bool:
        if self._sock is None and not self._start():
            return False
        assert self._sock is not None
        try:
            self._sock.send(json.dumps(message).encode(), socket.MSG_DONTWAIT)
            return True
        except OSError as err:
            self._report(f"name resolver: {err.strerror or err}")
            if not isinstance(err, BlockingIOError):
                self._lost()
            return False

    def _start(self) -> bool:
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as err:
            # Out of descriptors (EMFILE): this request goes on without a name, the
            # next one tries again.
            self._report(f"cannot start the name resolver: {err.strerror or err}")
            return False
        try:
            self.pid = os.posix_spawn(
                sys.executable, [sys.executable, "-m", "pyxinetd.access.resolver"],
                dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0)],
                setsigmask=(), setsigdef=(2, 15, 1, 13))
        except OSError as err:
            ours.close()
            self._report(f"cannot start the name resolver: {err.strerror or err}")
            return False
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self.loop.register(ours, READ, lambda mask: self._readable())
        return True

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                packet = sock.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                packet = b""
            if not packet:
                self._lost()
                return
            try:
                answer = json.loads(packet)
                request_id = int(answer["id"])
                if "status" in answer:
                    status = answer["status"]
                    self._finish_check(request_id, None if status is None else int(status))
                    continue
                info = NameInfo(answer.get("name"), bool(answer.get("confirmed")))
            except (ValueError, KeyError, TypeError):
                continue
            entry = self._pending.pop(request_id, None)
            if entry is not None:
                entry[1].cancel()
                entry[0](info)

    def _lost(self) -> None:
        if self._sock is not None:
            self._report("name resolver exited; it is restarted when needed")
        # It is gone (or going): never signalled again; its pid waits for the master's
        # reaping (a new helper may be started before that).
        if self.pid is not None:
            self._exited.add(self.pid)
            self.pid = None
        self._disconnect()

    def _expire(self, request_id: int) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            entry[1].cancel()
            entry[0](NO_NAME)

    def _finish_check(self, request_id: int, status: int | None) -> None:
        entry = self._checks.pop(request_id, None)
        if entry is not None:
            entry[1].cancel()
            entry[0](status)

    def _report(self, text: str) -> None:
        if self._on_error is not None:
            self._on_error(text)


# -- the helper process -------------------------------------------------------

def _start_shell(command: str, context: ShellContext = DAEMON_CONTEXT
                 ) -> subprocess.Popen[bytes] | None:
    """`/bin/sh -c command`, stdio on /dev/null, in a session (and group) of its own,
    as `context` says (groups, then gid, then uid: Popen's order)."""
    env = None
    if context.setenv:
        env = dict(os.environ)
        env.update(context.setenv)
    # On Linux the nice value belongs to the thread, and a child starts with its
    # forking thread's: set on this thread around the start, it reaches the command
    # only (Popen has no nice of its own, and a preexec_fn is unsafe with threads).
    before = os.getpriority(os.PRIO_PROCESS, 0) if context.nice else None
    if before is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0,
                           max(NICE_MIN, min(NICE_MAX, _base_nice + context.nice)))
        except OSError:
            pass    # lowering it takes privilege: the command runs anyway, as in libwrap
    try:
        return subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=env,
                                user=context.uid, group=context.gid,
                                extra_groups=context.groups,
                                umask=-1 if context.umask is None else context.umask)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    finally:
        if before is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, before)
            except OSError:
                pass    # not root: the thread stays where the command was put


# nice(2)'s range; and the helper's own value, which increments start from.
NICE_MIN, NICE_MAX = -20, 19
_base_nice = os.getpriority(os.PRIO_PROCESS, 0)


# The process groups of the checks running now: killed when the helper ends, since
# nobody would kill them at their deadline any more.
_running_checks: set[int] = set()
_running_lock = threading.Lock()


def run_check(commands: list[str], timeout: float,
              context: ShellContext = DAEMON_CONTEXT) -> int | None:
    """Blocking: run the commands in turn within `timeout` seconds in all; the last
    one's status (negative: the signal that ended it), or None when a command could
    not be started or the deadline passed (its process group is then killed)."""
    deadline = time.monotonic() + timeout
    status: int | None = None
    for command in commands:
        proc = _start_shell(command, context)
        if proc is None:
            return None
        with _running_lock:
            _running_checks.add(proc.pid)
        try:
            status = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return None
        finally:
            with _running_lock:
                _running_checks.discard(proc.pid)
    return status


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _end_checks() -> None:
    """Kill every check still running (the helper is ending)."""
    with _running_lock:
        groups = list(_running_checks)
    for pgid in groups:
        _kill_group(pgid)


def _serve(sock: socket.socket) -> None:
    lock = threading.Lock()

    def send(message: dict[str, object]) -> None:
        with lock:
            try:
                sock.send(json.dumps(message).encode())
            except OSError:
                pass

    def answer(request_id: int, info: NameInfo) -> None:
        send({"id": request_id, "name": info.name, "confirmed": info.confirmed})

    def shell(command: str, context: ShellContext) -> None:
        proc = _start_shell(command, context)
        if proc is not None:
            proc.wait()

    def check(request_id: int, commands: list[str], timeout: float,
              context: ShellContext) -> None:
        send({"id": request_id, "status": run_check(commands, timeout, context)})

    pool = LookupPool(answer)
    try:
        while True:
            try:
                packet = sock.recv(MAX_PACKET)
            except InterruptedError:
                continue
            except OSError:
                break
            if not packet:
                break
            try:
                message = json.loads(packet)
            except ValueError:
                continue
            if message.get("op") == "name":
                pool.ask(int(message["id"]), str(message["addr"]),
                         float(message.get("until", "inf")))
            elif message.get("op") == "sh":
                threading.Thread(target=shell, args=(str(message["cmd"]),
                                                     ShellContext.read(message)),
                                 daemon=True).start()
            elif message.get("op") == "check":
                threading.Thread(target=check, args=(
                    int(message["id"]), [str(c) for c in message["cmds"]],
                    float(message["timeout"]), ShellContext.read(message)),
                    daemon=True).start()
    finally:
        pool.close()


def _terminated(signum: int, frame: object) -> None:
    # The daemon is exiting (pyxinetd.access.resolver.Resolver.close): its checks go
    # with it; pending lookups are simply dropped.
    _end_checks()
    os._exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    sock = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    try:
        _serve(sock)
    finally:
        _end_checks()


if __name__ == "__main__":
    main()
