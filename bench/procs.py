"""Keeping track of every process the benchmark starts, so that all of them end with it.

The benchmark starts daemons (each in its own session, so one killpg() ends the daemon and
anything left in its process group), client and reference-server processes
(multiprocessing), and, indirectly, the servers the daemons spawn. Those servers call
setsid(), so they leave the daemon's process group; if a daemon is killed while one of
them still runs (a wait=yes server blocked in accept(), say), it would be orphaned to
init and outlive us. Making this process a child subreaper (PR_SET_CHILD_SUBREAPER) turns
such orphans into our own children, so they can be found by parent pid and killed and
reaped by pid.
"""

from __future__ import annotations

import ctypes
import multiprocessing.process
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux >= 3.4); False when the call is refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _ppid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[1])


def own_children() -> list[int]:
    """Pids whose parent is this process (one pass over /proc)."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _ppid_of(int(name)) == me:
            found.append(int(name))
    return found


class Janitor:
    """Registry of started processes; `cleanup()` kills and reaps all of them, by pid."""

    def __init__(self) -> None:
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._workers: dict[int, multiprocessing.process.BaseProcess] = {}

    # -- daemons (session leaders) ------------------------------------------------
    def track_popen(self, proc: subprocess.Popen[bytes]) -> None:
        self._popens[proc.pid] = proc

    def stop_popen(self, proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        """TERM the process group, KILL it after `grace` seconds, reap, then reap orphans."""
        self._popens.pop(proc.pid, None)
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Anything still in the group (the daemon is gone) gets KILL too.
        _signal_group(proc.pid, signal.SIGKILL)
        self.reap_orphans()

    # -- multiprocessing workers ----------------------------------------------------
    def track_worker(self, proc: multiprocessing.process.BaseProcess) -> None:
        if proc.pid is not None:
            self._workers[proc.pid] = proc

    def stop_worker(self, proc: multiprocessing.process.BaseProcess, grace: float = 2.0) -> None:
        if proc.pid is not None:
            self._workers.pop(proc.pid, None)
        proc.join(timeout=grace)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)

    # -- orphans --------------------------------------------------------------------
    def reap_orphans(self) -> list[int]:
        """Kill and reap children that are not tracked: descendants adopted as subreaper."""
        known = set(self._popens) | set(self._workers)
        killed = []
        for pid in own_children():
            if pid in known:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
            killed.append(pid)
        return killed

    def cleanup(self) -> None:
        """Kill everything still tracked (daemons by process group), then orphans."""
        for pid, proc in list(self._popens.items()):
            _signal_group(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._popens.clear()
        for worker in list(self._workers.values()):
            if worker.is_alive():
                worker.kill()
            worker.join(timeout=10)
        self._workers.clear()
        self.reap_orphans()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)


@contextmanager
def terminate_raises() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while inside, so `finally` cleanup runs."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
