"""Detaching from the terminal, with the start command's exit status telling the truth.

xinetd forks and its parent exits 0 at once, before the configuration is even read, so
`xinetd && echo ok` says ok for a daemon that dies a moment later (reference §4.1 step
4). pyxinetd's start command instead exits 0 only once the daemon is serving, and 1 with
the reason on stderr when it cannot serve.

The split chosen: detach first, then start the master in the detached process, which
reports back through a pipe. The alternative, binding every service in the foreground
and detaching afterwards, does not fit the master: binding is driven by the loop
(a failed bind is retried from timers, and `Started working` is only known once every
retry has run), the signal handlers and wakeup socket pair are installed by start(), and
the program log records the pid it was opened by. Running part of that loop in a
process that is about to exit, then handing sockets, selector, timers and signal state
across two forks, would be fragile; any connection accepted before detaching would
belong to the wrong process. So:

1. The caller (cli.py) parses options and loads the configuration in the foreground:
   configuration errors go straight to the terminal and the exit status.
2. start_detached() makes a pipe and forks. The foreground process waits on the pipe.
3. The child opens a python-daemon DaemonContext: double fork and setsid (the daemon is
   not a session leader, so it can never acquire a controlling terminal), working
   directory `/`, the umask xinetd uses (the start umask | 022; python-daemon's default
   would be 0), every descriptor closed except the pipe, fds 0-2 on /dev/null. No
   uid/gid (the master stays root to set each service's user), no core-size change
   (prevent_core=False: servers inherit the master's limits, as with xinetd), and an
   empty signal_map: the master installs its own record-only handlers right after,
   and python-daemon's default map would make SIGTERM raise SystemExit from inside any
   line of code. Nothing else needs files_preserve, because the master has not opened
   anything yet: the log, the pidfile, the listeners, the wakeup pair and the selector
   are all created in the detached process.
4. The detached process reports its pid, then every ERROR/CRITICAL program-log line,
   then `ready` once `Started working` is logged, and closes the pipe. The foreground
   process prints what it received and exits 0 on `ready`, 1 on anything else (the
   daemon exited, or never got ready within READY_TIMEOUT seconds). Interrupted while
   it waits (Ctrl-C), it says which daemon goes on starting without it.
"""

from __future__ import annotations

import json
import os
import signal
import selectors
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pyxinetd.log import Level, ProgramLog

# The longest the start command waits for the daemon to announce it is serving (bind
# retries are bounded well below this).
READY_TIMEOUT = 60.0
# Start-up messages sent over the pipe are capped so that the final `ready` always fits
# in the pipe buffer (64 KiB on Linux) even if nobody reads for a while.
_MESSAGE_BUDGET = 32 * 1024
_MESSAGE_MAX = 2048
_FORWARDED_LEVELS = (Level.ERROR, Level.CRITICAL)
# The NOTICE that says why an ERROR just forwarded is not final (a service whose
# address is not there yet, or the daemon short of descriptors): without it, the start
# command shows xinetd's `failed to start and is deactivated` alone, a dead service.
_FORWARDED_NOTICE = " will be activated when "


class StartupReport:
    """The daemon's end of the readiness pipe. Never blocks; silent once closed."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._budget = _MESSAGE_BUDGET
        os.set_blocking(fd, False)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _send(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        data = (json.dumps(record) + "\n").encode()
        try:
            os.write(self._fd, data)
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: the start command is gone; nobody to tell
            self.close()

    def pid(self) -> None:
        self._send({"pid": os.getpid()})

    def message(self, text: str) -> None:
        if self._budget <= 0:
            return
        text = text[:_MESSAGE_MAX]
        self._budget -= len(text)
        if self._budget <= 0:
            text = "further start-up messages are only in the program log"
        self._send({"message": text})

    def ready(self) -> None:
        """The daemon is serving: tell the start command, which then exits 0."""
        self._send({"ready": True})
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class ReportingProgramLog(ProgramLog):
    """A program log that also copies ERROR and CRITICAL lines to a StartupReport, and
    the NOTICE that says a service failing to start now will be activated later."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report: StartupReport | None = None

    def log(self, level: Level, func: str, text: str, *, always: bool = False) -> None:
        super().log(level, func, text, always=always)
        if self.report is not None and (level in _FORWARDED_LEVELS or (
                level is Level.NOTICE and _FORWARDED_NOTICE in text)):
            self.report.message(f"{level.word}: {text}")


@dataclass
class StartupOutcome:
    """What the start command learnt from the daemon."""

    ready: bool = False
    pid: int | None = None
    messages: list[str] = field(default_factory=list)
    timed_out: bool = False
    # Ctrl-C (SIGINT) reached the start command while it waited: the daemon, in a
    # session of its own, did not get it and goes on.
    interrupted: bool = False


def start_umask() -> int:
    """xinetd's umask: whatever it was started with, plus 022."""
    old = os.umask(0o022)
    os.umask(old)
    return old | 0o022


def start_detached(serve: Callable[[StartupReport], int], *,
                   timeout: float = READY_TIMEOUT) -> StartupOutcome:
    """Run serve(report) in a detached daemon; return, in this process, what it reported.

    serve runs in the daemon and returns its exit status; it must call report.ready()
    once serving. Only the foreground process returns from this function.
    """
    umask = start_umask()
    rfd, wfd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _become_daemon(serve, wfd, umask)
    os.close(wfd)
    try:
        return _read_report(rfd, timeout)
    finally:
        os.close(rfd)
        # The first child exits as soon as it has forked (python-daemon's first fork).
        os.waitpid(pid, 0)


def _become_daemon(serve: Callable[[StartupReport], int], wfd: int, umask: int) -> NoReturn:
    """Called in the forked child; never returns."""
    status = 1
    report = StartupReport(wfd)
    try:
        import daemon  # python-daemon

        # Explicit /dev/null streams: with None, python-daemon opens /dev/null once per
        # stream and leaves those descriptors open in the daemon.
        with open(os.devnull, "r+b", buffering=0) as devnull:
            context = daemon.DaemonContext(
                files_preserve=[wfd],
                umask=umask,
                working_directory="/",
                detach_process=True,
                prevent_core=False,
                signal_map={},
                stdin=devnull, stdout=devnull, stderr=devnull,
            )
            context.open()
        report.pid()
        status = serve(report)
    except BaseException:
        report.message("pyxinetd: " + "".join(traceback.format_exc()).rstrip())
    finally:
        report.close()
        os._exit(status)


def _read_report(rfd: int, timeout: float) -> StartupOutcome:
    outcome = StartupOutcome()
    pending = bytearray()
    try:
        # Ctrl-C reaches this command while it waits (status 130); the daemon keeps
        # SIGINT held until its handlers ignore it, as xinetd does (pyxinetd.signals).
        # One held while the command loaded the configuration arrives here, at the
        # unblocking: the daemon is forked already and goes on all the same.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        _read_into(outcome, rfd, timeout, pending)
    except KeyboardInterrupt:
        outcome.interrupted = True
        # The daemon may have reported its pid before Ctrl-C, while this process had not
        # read it yet: what is already in the pipe still names the daemon that goes on.
        try:
            _read_available(outcome, rfd, pending)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: say what is known rather than nothing
        # A daemon that had reported that it serves is a start that succeeded.
        outcome.interrupted = not outcome.ready
    return outcome


def _read_into(outcome: StartupOutcome, rfd: int, timeout: float,
               pending: bytearray) -> None:
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(rfd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome.timed_out = True
                return
            if not selector.select(remaining):
                continue
            # Ctrl-C is held from the read until its lines are applied: raised in
            # between, it would lose a line already taken out of the pipe (the daemon's
            # pid, which the interrupted command names). It comes at the unblocking.
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
            try:
                chunk = os.read(rfd, 65536)
                if chunk:
                    _take_lines(outcome, pending, chunk)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
            if not chunk or outcome.ready:
                return


def _read_available(outcome: StartupOutcome, rfd: int, pending: bytearray) -> None:
    """Apply what the pipe holds now, without waiting for more."""
    os.set_blocking(rfd, False)
    while not outcome.ready:
        try:
            chunk = os.read(rfd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            return
        _take_lines(outcome, pending, chunk)


def _take_lines(outcome: StartupOutcome, pending: bytearray, chunk: bytes) -> None:
    pending += chunk
    *lines, rest = bytes(pending).split(b"\n")
    pending[:] = rest
    for line in lines:
        _apply(outcome, line)
        if outcome.ready:
            return


def _apply(outcome: StartupOutcome, line: bytes) -> None:
    try:
        record = json.loads(line)
    except ValueError:
        return
    if not isinstance(record, dict):
        return
    if isinstance(record.get("pid"), int):
        outcome.pid = record["pid"]
    if isinstance(record.get("message"), str):
        outcome.messages.append(record["message"])
    if record.get("ready") is True:
        outcome.ready = True


__all__ = ["start_detached", "StartupReport", "StartupOutcome", "ReportingProgramLog",
           "start_umask", "READY_TIMEOUT"]
