"""The name resolver helper process (`python .../pyxinetd/access/resolverstart.py`).

It answers the master (pyxinetd.access.resolver, which explains why the lookups run in
a process of their own) over the SOCK_SEQPACKET socket on its fd 0, one JSON object per
packet (pyxinetd.access.resolverwire). Lookups run in a bounded pool of threads
(pyxinetd.access.lookups); the `spawn` and `aclexec` commands of hosts.allow/hosts.deny
run with stdio on /dev/null, each in its own session, reaped here, so the master's child
table never sees them. A spawn command is not waited for (at most SPAWN_LIMIT run at
once: one more is not run, and the master is told); an aclexec check (one or more
commands run in turn) answers with the last one's exit status, and is killed (its whole
process group) at its deadline. The helper exits when its socket reaches EOF (the master
closed it or died), or on SIGTERM (the master's `Resolver.close`), killing the checks
still running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

from pyxinetd.access.lookups import LookupPool, NameInfo
from pyxinetd.access.resolverwire import DAEMON_CONTEXT, MAX_PACKET, ShellContext
from pyxinetd.process import drop_coerced_locale
from pyxinetd.timers import shortened


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


# At most this many `spawn` commands run at once; one more is not run, and the master
# logs that, naming the client. Under xinetd each one runs from the child that checks
# the request, which waits for it, so a service's `instances` bounds them; here the
# server starts at once and the command runs on its own, so without a bound a command
# that hangs (a `safe_finger` towards a host that never answers) would add a process
# and a thread per connection, for as long as clients keep coming.
SPAWN_LIMIT = 128
# Test-only: a lower limit (never a higher one).
SPAWN_LIMIT_ENV = "PYXINETD_SPAWN_LIMIT"


def spawn_limit(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """SPAWN_LIMIT, or $PYXINETD_SPAWN_LIMIT when it is a smaller positive number."""
    return max(1, int(shortened(SPAWN_LIMIT, SPAWN_LIMIT_ENV, environ)))


# The process groups of the checks running now: killed when the helper ends, since
# nobody would kill them at their deadline any more.
_running_checks: set[int] = set()
_running_lock = threading.Lock()


def run_check(commands: list[str], timeout: float,
              context: ShellContext = DAEMON_CONTEXT, *,
              until: float = float("inf")) -> int | str | None:
    """Blocking: run the commands in turn within `timeout` seconds in all, and by
    `until` (CLOCK_MONOTONIC) at the latest; the last one's status (negative: the
    signal that ended it), None when the deadline passed (its process group is then
    killed; a command not started yet is not), or why a command could not be started
    (a check that never ran is no failed check: the master refuses the request)."""
    deadline = min(time.monotonic() + timeout, until)
    status: int | None = None
    for command in commands:
        if time.monotonic() >= deadline:
            return None
        proc = _start_shell(command, context)
        if proc is None:
            return "/bin/sh could not be started"
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
        send({"id": request_id, "name": info.name, "confirmed": info.confirmed,
              "mismatch": info.mismatch})

    # Each spawn command holds a slot until its shell exits (see SPAWN_LIMIT).
    spawn_slots = threading.BoundedSemaphore(spawn_limit())

    def not_run(message: dict[str, object], reason: str) -> None:
        send({"skipped": str(message.get("cmd")), "about": str(message.get("about", "")),
              "reason": reason})

    def shell(message: dict[str, object]) -> None:
        try:
            proc = _start_shell(str(message["cmd"]), ShellContext.read(message))
            if proc is None:
                not_run(message, "/bin/sh could not be started")
            else:
                proc.wait()
        finally:
            spawn_slots.release()

    def check(request_id: int, commands: list[str], timeout: float, until: float,
              context: ShellContext) -> None:
        status = run_check(commands, timeout, context, until=until)
        if isinstance(status, str):
            send({"id": request_id, "status": None, "not_run": status})
        else:
            send({"id": request_id, "status": status})

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
                if not spawn_slots.acquire(blocking=False):
                    not_run(message, f"{spawn_limit()} spawn commands are still running")
                    continue
                try:
                    threading.Thread(target=shell, args=(message,), daemon=True).start()
                except RuntimeError:    # no thread can be started (a limit on tasks)
                    spawn_slots.release()
                    not_run(message, "no thread could be started for it")
            elif message.get("op") == "check":
                try:
                    threading.Thread(target=check, args=(
                        int(message["id"]), [str(c) for c in message["cmds"]],
                        float(message["timeout"]), float(message.get("until", "inf")),
                        ShellContext.read(message)),
                        daemon=True).start()
                except RuntimeError:
                    # Never run: no failed check, whose rule would not apply (a
                    # denying one skipped would let the client in).
                    send({"id": int(message["id"]), "status": None,
                          "not_run": "no thread could be started for it"})
    finally:
        pool.close()


def _terminated(signum: int, frame: object) -> None:
    # The daemon is exiting (pyxinetd.access.resolver.Resolver.close): its checks go
    # with it; pending lookups are simply dropped.
    _end_checks()
    os._exit(0)


def main() -> None:
    # The `spawn` and `aclexec` commands run here get the daemon's environment: not the
    # LC_CTYPE this interpreter's start put in its own (PEP 538), as the daemon drops
    # its own (pyxinetd.process).
    drop_coerced_locale()
    signal.signal(signal.SIGTERM, _terminated)
    sock = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    try:
        _serve(sock)
    finally:
        _end_checks()
