"""A reload's configuration load, running beside the loop instead of stopping it.

The load runs in a loader child (pyxinetd.config.isolated): 90 ms for a small file, more
than half a second for 1,000 services. A reload must not stall serving that long, so the
child's pipe is registered in the loop and read as data arrives, the child is reaped by
the master's reaper like any other (which hands its status here through `claim()`), and
the result is delivered once both the pipe's EOF and the exit status are in, whatever
their order.

A child that cannot be started, dies or sends garbage gives a LoaderFailed to `done`:
loading again inside the loop would stall it for the whole load and bring the parser into
the daemon for good, so the caller keeps the running configuration instead. So does a
child that gives no result before its deadline (the main file or an `include` is a FIFO
nobody writes, a hung network file system): it is sent SIGKILL and the load given up,
otherwise every later reload would wait behind it forever. Its exit is still claimed
when the reaper finds it, however late.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from pyxinetd.children import ExitStatus
from pyxinetd.config import isolated
from pyxinetd.config.isolated import LoaderFailed
from pyxinetd.config.model import Configuration
from pyxinetd.loop import READ, Loop
from pyxinetd.timers import Timer, seconds_setting

# What a load gives: the configuration, or the error (ConfigError, OSError, LoaderFailed).
Outcome = Configuration | Exception
CHUNK = 1 << 16
# Seconds a reload's loader has to send its result ($PYXINETD_LOAD_TIMEOUT). A load of
# 1,000 services takes about half a second; this only ends loads that are stuck.
LOAD_TIMEOUT_ENV = "PYXINETD_LOAD_TIMEOUT"
DEFAULT_LOAD_TIMEOUT = 60.0


def load_timeout(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """The loader's deadline in seconds, from $PYXINETD_LOAD_TIMEOUT (positive)."""
    return seconds_setting(DEFAULT_LOAD_TIMEOUT, LOAD_TIMEOUT_ENV, environ=environ)

class PendingLoad:
    """One load in a loader child; `done(outcome)` is called once, from the loop."""

    def __init__(self, loop: Loop, path: str, done: Callable[[Outcome], None],
                 timeout: float | None = None, **kwargs: Any) -> None:
        self.loop = loop
        self._done = done
        self._chunks: list[bytes] = []
        self._eof = False
        self._status: ExitStatus | None = None
        self._timer: Timer | None = None
        self.finished = False
        try:
            self.child: isolated.LoaderChild | None = isolated.start_loader(path, **kwargs)
        except OSError as err:
            self.child = None
            # EAGAIN: the process limit (RLIMIT_NPROC, a pids cgroup) is reached.
            reason = (f"{err.strerror} (errno = {err.errno})" if err.errno and err.strerror
                      else str(err))
            self._finish(LoaderFailed(f"cannot start the configuration loader: {reason}"))
            return
        loop.register(self.child.fd, READ, lambda mask: self._readable())
        if timeout is not None:
            self._timer = loop.call_later(timeout, lambda: self._expired(timeout))

    @property
    def reaped(self) -> bool:
        """No child of this load is left to reap (never started, or collected)."""
        return self.child is None or self._status is not None

    def _expired(self, timeout: float) -> None:
        """The deadline passed without a result: kill the loader, give the load up."""
        self._timer = None
        if self.finished or self.child is None:
            return
        self._close_pipe()
        try:
            os.kill(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._finish(LoaderFailed(f"the configuration loader gave no result within "
                                  f"{timeout:g} s (killed)"))

    def _readable(self) -> None:
        assert self.child is not None
        while True:
            try:
                chunk = os.read(self.child.fd, CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_pipe()
                self._eof = True
                self._deliver()
                return
            self._chunks.append(chunk)

    def claim(self, pid: int, status: ExitStatus) -> bool:
        """The reaper found `pid`: True (and taken) when it is this loader."""
        if self.child is None or pid != self.child.pid or self._status is not None:
            return False
        self._status = status
        self._deliver()
        return True

    def _deliver(self) -> None:
        if not self._eof or self._status is None or self.finished:
            return
        status = self._status
        sent = status.kind == "status" and status.value == isolated.SENT
        data, self._chunks = b"".join(self._chunks), []
        outcome: Outcome
        try:
            outcome = isolated.receive(data, sent)
        except LoaderFailed as err:
            outcome = LoaderFailed(f"{err} ({status}{_hint(status)})" if not sent
                                   else str(err))
        except Exception as err:    # ConfigError, OSError: what the load raised
            outcome = err
        self._finish(outcome)

    def _finish(self, outcome: Outcome) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Delivered from the loop, never from inside the constructor.
        self.loop.call_soon(lambda: self._done(outcome))

    def _close_pipe(self) -> None:
        if self.child is not None and not self._eof:
            self.loop.unregister(self.child.fd)
            os.close(self.child.fd)
            self._eof = True

    def kill(self) -> None:
        """The daemon stops: kill the loader and reap it (SIGKILL: a prompt wait)."""
        if self.finished and self._status is not None:
            return
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_pipe()
        if self.child is None or self._status is not None:
            return
        try:
            os.kill(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.child.pid, 0)
        except ChildProcessError:
            pass


def _hint(status: ExitStatus) -> str:
    """What a SIGKILL the daemon did not send most likely was: the OOM killer, under a
    memory limit (the loader offers itself to it first, pyxinetd.oomscore)."""
    return ": out of memory?" if status.kind == "signal" and status.value == signal.SIGKILL \
        else ""
