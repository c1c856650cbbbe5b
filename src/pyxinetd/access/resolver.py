"""Reverse DNS (with forward confirmation) and shell commands, away from the master loop.

Why a helper process: getnameinfo/getaddrinfo block, for as long as the resolver likes,
and the master must never block; threads in the master are ruled out because it forks
servers (a fork while another thread holds a libc lock can deadlock the child). So the
master starts one long-lived helper (`python .../pyxinetd/access/resolverstart.py`, run
by its path so that it is this package's code; its code is
pyxinetd.access.resolverhelper) on first need, with one end of an AF_UNIX SOCK_SEQPACKET
pair on its fd 0. Requests and answers are one JSON object per packet
(pyxinetd.access.resolverwire); the helper answers lookups from a bounded pool of threads
that grows with demand and makes each address's lookup once however many ask for it
(pyxinetd.access.lookups; threads are harmless there: it never forks while looking
up), and runs the `spawn` and `aclexec`
commands of hosts.allow/hosts.deny with stdio on /dev/null, each in its own session,
reaping them itself, so the master's child table never sees them. A spawn command is
not waited for (the helper runs a bounded number at once, and says which it did not
run); the exit status of an aclexec check (one or more commands run in turn)
is sent back, and the check is killed (its whole process group) at its deadline.

On the master side every lookup and every check has a deadline (a loop timer); when it
passes, the callback gets "name unknown" (a lookup) or None (a check), and the request
proceeds as if the lookup had failed or the command had exited non-zero. A lookup or
check that never ran (the helper gone, not started, its queue full until the
deadline) is told apart: a lookup gets a NameInfo with `not_looked_up` (why), a check
NotRun, and the access checks refuse a verdict that depends on it. The helper is told
that deadline and skips a lookup nobody waits for any more. The helper exits when its
socket reaches EOF (the master closed it or died).

When the helper cannot be created at all (EAGAIN or ENOMEM: the process limit, a pids
cgroup, memory), that is the fork xinetd's child would have made for the request, and
it is handled as a failed fork is (reference §4.15, pyxinetd.forkretry): what was to
be sent waits, its deadline not running, and the helper is started again
RETRY_INTERVAL later, one ERROR line per attempt; after MAX_FORK_FAILURES attempts in
a row the waiting lookups are answered UNAVAILABLE (checks: None), and so is every
later one whose start fails, until a helper starts again. The access checks refuse a
request whose name is UNAVAILABLE with `FAIL: ID fork`, as xinetd's retry gives up.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

from pyxinetd import installation
from pyxinetd.access.lookups import NO_NAME as NO_NAME
from pyxinetd.access.lookups import NOT_LOOKED_UP as NOT_LOOKED_UP
from pyxinetd.access.lookups import UNAVAILABLE as UNAVAILABLE
from pyxinetd.access.lookups import NameInfo as NameInfo
from pyxinetd.access.lookups import resolve as resolve
from pyxinetd.access.resolverwire import DAEMON_CONTEXT, MAX_PACKET, ShellContext
from pyxinetd.loop import READ, WRITE, Loop
from pyxinetd.timers import Timer, seconds_setting

DEFAULT_TIMEOUT = 5.0
# Lookups that missed their deadline are reported at most once per this many seconds.
LATE_REPORT_INTERVAL = 60.0
# Test-only override of DEFAULT_TIMEOUT, in seconds (so a test can keep lookups pending).
TIMEOUT_ENV = "PYXINETD_LOOKUP_TIMEOUT"
MAX_TIMEOUT = 3600.0
# The master's deadline for a check passes this long after the helper's own, so that
# the helper's answer (status None after its kill) normally arrives first. Both count
# from when the master sent the check (its `until`): counted from when the helper read
# it, a helper slow to start (a loaded host) let the command run on past the master's
# deadline, logged as killed, a rule applied for it that it might yet have satisfied.
CHECK_GRACE = 1.0
# A helper that could not be created at all: tried again later, as a failed fork is.
NO_PROCESS = frozenset({errno.EAGAIN, errno.ENOMEM})

NameCallback = Callable[[NameInfo], None]
# The exit status of a check's last command (negative: killed by that signal), or None
# when it did not finish in time or could not be run.
@dataclasses.dataclass(frozen=True)
class NotRun:
    """A check whose commands never ran (`why`): the helper could not be started, was
    lost, or could not start the shell. Unlike a check that failed or ran out of
    time, whose rule does not apply, it decides nothing: the request is refused."""

    why: str


HELPER_NOT_RUNNING = NotRun("the name resolver is not running")
HELPER_LOST = NotRun("the name resolver exited")
# Its socket's buffer is full: the helper has not read what was sent before (stopped,
# or starved of CPU). A lookup or a check waits for it to read, and is sent then; a
# lookup still unsent at its deadline is answered NOT_LOOKED_UP (never NO_NAME: a deny
# rule by name would be skipped), a check QUEUE_STAYED_FULL (never run: it refuses its
# request, as docs/access-control.md says).
HELPER_BUSY = NotRun("the name resolver's queue is full")
QUEUE_STAYED_FULL = NotRun("the name resolver's queue stayed full")
HELPER_NO_PROCESS = NotRun("no process for the name resolver")

# A check's outcome: the last command's status, None when it was killed at its
# deadline (a failed check), or NotRun.
StatusCallback = Callable[[int | None | NotRun], None]


def lookup_timeout(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """DEFAULT_TIMEOUT, or $PYXINETD_LOOKUP_TIMEOUT (seconds) when set and valid."""
    return seconds_setting(DEFAULT_TIMEOUT, TIMEOUT_ENV, MAX_TIMEOUT, environ)

class Resolver:
    """Master side: asynchronous lookups through the helper process."""

    def __init__(self, loop: Loop, *, timeout: float | None = None,
                 on_error: Callable[[str], None] | None = None,
                 retry_interval: float | None = None) -> None:
        # Imported here: the helper process runs this module and needs none of it.
        from pyxinetd.forkretry import MAX_FORK_FAILURES, retry_interval as interval

        self.loop = loop
        self.timeout = lookup_timeout() if timeout is None else timeout
        self.retry_interval = interval() if retry_interval is None else retry_interval
        self.max_start_failures = MAX_FORK_FAILURES
        # Consecutive starts of the helper that found no process for it.
        self._start_failures = 0
        # What waits for the helper's next start (from `_restart`), in order.
        self._queued: list[dict[str, object]] = []
        # Lookups and checks the running helper's full queue did not take, by id, in
        # order: sent as soon as its socket is writable again. Ordered (its first entry is found at
        # once however many were taken from the front; a dict scans past them).
        self._backlog: OrderedDict[int, dict[str, object]] = OrderedDict()
        self._restart: Timer | None = None
        self._on_error = on_error
        self._sock: socket.socket | None = None
        self.pid: int | None = None
        # Helpers that exited on their own and are not reaped yet.
        self._exited: set[int] = set()
        self._ids = iter(range(1, 1 << 62))
        self._pending: dict[int, tuple[NameCallback, Timer]] = {}
        self._checks: dict[int, tuple[StatusCallback, Timer]] = {}
        # The daemon exits (close): no helper is started again.
        self._closed = False
        # The package's files replaced on disk, as last reported (said once).
        self._replaced: installation.Replacement | None = None
        # Lookups unanswered at their deadline: said once per LATE_REPORT_INTERVAL.
        self._late_quiet_until = float("-inf")
        self._late_unsaid = 0

    def lookup(self, address: str, callback: NameCallback) -> None:
        """Call `callback` later (never before returning) with what the name is; never
        once the resolver is closed."""
        if self._closed:
            return
        request_id = next(self._ids)
        timer = self.loop.call_later(self.timeout, lambda: self._late(request_id, address))
        self._pending[request_id] = (callback, timer)
        # `until`: when nobody waits for the answer any more (CLOCK_MONOTONIC is the
        # same in the helper), so that the helper skips a lookup it reaches too late.
        message: dict[str, object] = {"id": request_id, "op": "name", "addr": address,
                                      "until": time.monotonic() + self.timeout}
        self._offer(request_id, message, self._send, lambda why: self._expire_soon(
            request_id, UNAVAILABLE if self._given_up else never_ran(why)))

    def run_shell(self, command: str, context: ShellContext = DAEMON_CONTEXT, *,
                  about: str = "") -> None:
        """Run `/bin/sh -c command` with stdio on /dev/null; do not wait for it.

        `about` (`for SERVICE from CLIENT`) names the request in the line logged when
        the command is not run (too many still running, no process for it)."""
        self._send({"op": "sh", "cmd": command, "about": about, **context.message()})

    def run_check(self, commands: tuple[str, ...], timeout: float,
                  callback: StatusCallback, context: ShellContext = DAEMON_CONTEXT) -> None:
        """Run the commands one after the other (`/bin/sh -c`, stdio on /dev/null) and
        call `callback` later (never before returning) with the last one's status; never
        once the resolver is closed."""
        if self._closed:
            return
        request_id = next(self._ids)
        timer = self.loop.call_later(timeout, lambda: self._check_due(request_id))
        self._checks[request_id] = (callback, timer)
        message: dict[str, object] = {"id": request_id, "op": "check",
                                      "cmds": list(commands), "timeout": timeout,
                                      "until": time.monotonic() + timeout,
                                      **context.message()}
        self._offer(request_id, message, self._send,
                    lambda why: self._finish_check_soon(request_id, why))

    def close(self) -> None:
        """The daemon exits: stop the helper (its queued lookups answer nobody now; left
        alone it would linger until the slowest of them gave up) and forget what waits,
        without an answer. Every request that waited is being closed: "name unknown" or
        a failed check would act for it now, as if at its deadline (a check's fallback
        rule logged a refusal of a client nobody refused, ran its spawn commands through
        a helper started again, a reload's recheck would end a server that is to keep
        running). Nothing is run or looked up from here on."""
        self._closed = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        self._queued.clear()
        self._backlog.clear()
        if self.pid is not None:
            # SIGCONT too: a helper stopped (SIGSTOP, a debugger) would hold the
            # SIGTERM pending, and stay behind the daemon, stopped, for good.
            for signum in (signal.SIGTERM, signal.SIGCONT):
                try:
                    os.kill(self.pid, signum)
                except OSError:
                    pass
            # Still ours to reap (at exit): not an unknown child.
            self._exited.add(self.pid)
            self.pid = None
        for _, timer in (*self._pending.values(), *self._checks.values()):
            timer.cancel()
        self._pending.clear()
        self._checks.clear()
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

    def _disconnect(self, *, later: bool = False, unread: list[bytes] | None = None) -> None:
        """Close the helper's socket and answer what it was asked: now, or (`later`)
        at the end of the loop's turn, when this is met while a request is being sent
        (its caller was promised no callback before it returns). `unread`: the answers
        the helper sent that were read off the socket just before: theirs go first,
        the requests left are never looked up (a check: HELPER_LOST)."""
        if self._sock is not None:
            self.loop.unregister(self._sock)
            self._sock.close()
            self._sock = None
        # Only these: a request made meanwhile goes to the next helper.
        names, checks = list(self._pending), list(self._checks)
        unsent, self._backlog = set(self._backlog), OrderedDict()

        def answer() -> None:
            if self._closed and later:
                # The daemon exits (`close` came later in this turn): nothing is
                # answered, nor a skipped spawn command of the unread logged, now.
                return
            for packet in unread or ():
                self._answer(packet)
            for request_id in names:
                # Sent or not, no answer will come: the lookup never finished.
                self._expire(request_id, NOT_LOOKED_UP if request_id in unsent
                             else never_ran(HELPER_LOST))
            for request_id in checks:
                self._finish_check(request_id, HELPER_LOST)
        if later:
            self.loop.call_soon(answer)
        else:
            answer()

    @property
    def _given_up(self) -> bool:
        return self._start_failures >= self.max_start_failures

    @property
    def no_process(self) -> bool:
        """Whether the helper is given up for want of a process (MAX_FORK_FAILURES
        starts in a row found none): a check answered NotRun now is given up as a
        failed fork."""
        return self._given_up

    def _send(self, message: dict[str, object]) -> NotRun | None:
        """None when `message` is sent, or waits for the helper's next start; why not
        otherwise (reported)."""
        if self._closed:
            return HELPER_NOT_RUNNING
        if self._sock is None:
            if self._restart is not None:
                self._wait_for_start(message)
                return None
            started = self._start(message)
            if started is None:
                self._wait_for_start(message)
                return None
            if not started:
                return HELPER_NOT_RUNNING
        return self._transmit(message)

    def _transmit(self, message: dict[str, object]) -> NotRun | None:
        """Send `message` to the running helper: None, or why it was not sent
        (reported). Never calls back: the sender was promised no callback before it
        returns (a helper found gone is answered for at the end of the turn)."""
        assert self._sock is not None
        try:
            self._sock.send(json.dumps(message).encode(), socket.MSG_DONTWAIT)
            return None
        except BlockingIOError:
            if message.get("op") not in ("name", "check"):
                self._report(f"name resolver: its queue is full ({_dropped(message)})")
            elif not self._backlog:
                # Said once: what follows waits behind it.
                self._report(f"name resolver: its queue is full ({_waiting(message)})")
            return HELPER_BUSY
        except OSError as err:
            self._report(f"name resolver: {err.strerror or err} ({_dropped(message)})")
            # The helper may have answered requests before it went: those answers are
            # theirs, not "name unknown" (read now, delivered at the end of the turn).
            self._lost(later=True, unread=self._unread())
            return HELPER_LOST

    def _start(self, message: dict[str, object]) -> bool | None:
        """Start the helper: True; False when `message` cannot be sent (reported);
        None when no process could be created and it waits for the next attempt."""
        # The helper runs the code on disk: after an upgrade, new code that would speak
        # its own protocol to this old daemon. Only a restart brings the two together.
        replaced = installation.replaced()
        if replaced is not None:
            if replaced != self._replaced:
                self._report(f"{replaced}: restart it to load the new code; the name "
                             f"resolver is not started until then ({_dropped(message)})")
            self._replaced = replaced
            return False
        self._replaced = None
        if not sys.executable:
            # Python found no path for itself (no PATH, no /proc: pyxinetd.__main__).
            self._report(f"cannot start the name resolver: the Python interpreter's path "
                         f"is unknown; start pyxinetd by an absolute path "
                         f"({_dropped(message)})")
            return False
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as err:
            # Out of descriptors (EMFILE): this request's name is not looked up, the
            # next one tries again.
            self._report(f"cannot start the name resolver: {err.strerror or err} "
                         f"({_dropped(message)})")
            return False
        try:
            # In UTF-8 mode, as the daemon (pyxinetd.__main__.in_utf8_mode): a host
            # name that is not UTF-8 comes back as the bytes it was, whatever the locale.
            # In a session of its own, as servers are: a Ctrl-C or hang-up at the
            # daemon's terminal (ignored, or a reload) would end it, refusing the
            # checks in flight and leaving their commands to run past their deadline.
            self.pid = os.posix_spawn(
                sys.executable, [sys.executable, "-X", "utf8", _HELPER_SCRIPT],
                dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0)],
                setsid=True, setsigmask=(), setsigdef=(2, 15, 1, 13))
        except OSError as err:
            ours.close()
            if err.errno in NO_PROCESS:
                return self._no_process(err, message)
            self._report(f"cannot start the name resolver: {err.strerror or err} "
                         f"({_dropped(message)})")
            return False
        finally:
            theirs.close()
        self._start_failures = 0
        ours.setblocking(False)
        self._sock = ours
        self.loop.register(ours, READ, self._ready)
        return True

    def _no_process(self, err: OSError, message: dict[str, object]) -> bool | None:
        """The helper could not be created: try again RETRY_INTERVAL later (None), or
        give up (False) after MAX_FORK_FAILURES attempts in a row."""
        self._start_failures += 1
        reason = f"{err.strerror} (errno = {err.errno})"
        # `message` and what waits with it (_start_again leaves the others queued).
        waiting = len(self._queued) + 1
        many = "requests" if waiting > 1 else "request"
        if not self._given_up:
            self._report(f"cannot start the name resolver: {reason}; {waiting} {many} "
                         f"{'wait' if waiting > 1 else 'waits'}, tried again in "
                         f"{self.retry_interval:g} s")
            self._restart = self.loop.call_later(self.retry_interval, self._start_again)
            return None
        if waiting == 1:
            self._report(f"cannot start the name resolver: {reason} ({_dropped(message)})")
        else:
            self._report(f"cannot start the name resolver: {reason}; {waiting} {many} "
                         f"given up after {self._start_failures} attempts")
        return False

    def _wait_for_start(self, message: dict[str, object]) -> None:
        """Keep `message` for the helper's next start; its deadline stops meanwhile."""
        request_id = message.get("id")
        entry = (self._pending.get(request_id) if message["op"] == "name"
                 else self._checks.get(request_id) if message["op"] == "check"
                 else None) if isinstance(request_id, int) else None
        if entry is not None:
            entry[1].cancel()
        self._queued.append(message)

    def _start_again(self) -> None:
        self._restart = None
        live = [m for m in self._queued if self._still_wanted(m)]
        self._queued = live[1:]
        if not live or self._closed:
            return
        started = self._start(live[0])
        self._queued = [] if started else live
        if started is None:
            return
        if not started:
            # Given up (or no descriptor for the helper's socket): what waited is
            # answered now.
            self._give_up_queued(UNAVAILABLE if self._given_up
                                 else never_ran(HELPER_NOT_RUNNING))
            return
        for message in live:
            self._resend(message)

    def _still_wanted(self, message: dict[str, object]) -> bool:
        request_id = message.get("id")
        if message["op"] == "name":
            return request_id in self._pending
        if message["op"] == "check":
            return request_id in self._checks
        return True

    def _resend(self, message: dict[str, object]) -> None:
        """Send a message that waited for the helper, its deadline started anew; a
        lookup or check goes behind those the new helper's full queue did not take
        (sent before them, it would overtake requests asked before it)."""
        request_id = message.get("id")
        if isinstance(request_id, int) and message["op"] == "name":
            callback, _ = self._pending[request_id]
            message["until"] = time.monotonic() + self.timeout
            self._pending[request_id] = (callback, self.loop.call_later(
                self.timeout, lambda: self._expire(request_id)))
            self._offer(request_id, message, self._transmit_again,
                        lambda why: self._expire_soon(request_id, never_ran(why)))
        elif isinstance(request_id, int) and message["op"] == "check":
            done, _ = self._checks[request_id]
            timeout = float(str(message.get("timeout", 0)))
            message["until"] = time.monotonic() + timeout
            self._checks[request_id] = (done, self.loop.call_later(
                timeout, lambda: self._check_due(request_id)))
            self._offer(request_id, message, self._transmit_again,
                        lambda why: self._finish_check_soon(request_id, why))
        else:
            self._transmit_again(message)

    def _transmit_again(self, message: dict[str, object]) -> NotRun | None:
        """`_transmit`, for one of the messages sent in turn after a start: the helper
        may have been found gone while an earlier one was sent."""
        if self._sock is None:
            self._report(f"name resolver: exited ({_dropped(message)})")
            return HELPER_LOST
        return self._transmit(message)

    def _give_up_queued(self, info: NameInfo = UNAVAILABLE) -> None:
        """No helper after MAX_FORK_FAILURES attempts: what waited is answered now."""
        queued, self._queued = self._queued, []
        for message in queued:
            request_id = message.get("id")
            if not isinstance(request_id, int):
                about = f" {message['about']}" if message.get("about") else ""
                self._report(f"spawn command{about} not run (no process for the name "
                             f"resolver): {message.get('cmd')}")
            elif message["op"] == "name":
                self._expire(request_id, info)
            else:
                self._finish_check(request_id, HELPER_NO_PROCESS)

    def _offer(self, request_id: int, message: dict[str, object],
               send: Callable[[dict[str, object]], NotRun | None],
               failed: Callable[[NotRun], None]) -> None:
        """Send a lookup or check, or keep it behind those that wait for the helper to
        read (sent before them, it would overtake requests asked before it); one that
        meets a full queue waits for room; `failed` is told why one cannot be sent."""
        if self._backlog and self._sock is not None:
            self._backlog[request_id] = message
            return
        why = send(message)
        if why is HELPER_BUSY and self._sock is not None:
            self._wait_for_room(request_id, message)
        elif why is not None:
            failed(why)

    def _expire_soon(self, request_id: int, info: NameInfo) -> None:
        """A lookup that cannot be sent is answered in a later turn: never within the
        call that asked for it."""
        self.loop.call_soon(lambda: self._expire(request_id, info))

    def _finish_check_soon(self, request_id: int, why: NotRun) -> None:
        """A check that cannot be sent is answered in a later turn, as a lookup is."""
        self.loop.call_soon(lambda: self._finish_check(request_id, why))

    def _wait_for_room(self, request_id: int, message: dict[str, object]) -> None:
        """Keep a lookup or check the helper's full queue did not take, and watch its
        socket for room; its deadline runs on."""
        assert self._sock is not None
        if not self._backlog:
            self.loop.modify(self._sock, READ | WRITE, self._ready)
        self._backlog[request_id] = message

    def _ready(self, mask: int) -> None:
        if mask & READ:
            self._readable()
        if mask & WRITE and self._sock is not None:
            self._writable()

    def _writable(self) -> None:
        """Room in the helper's queue: send what waited for it, in order, with the
        deadline each has left."""
        while self._backlog and self._sock is not None:
            request_id, message = next(iter(self._backlog.items()))
            check = message["op"] == "check"
            if check and float(str(message["until"])) <= time.monotonic():
                # Its time is up: the helper would not start it (its deadline timer,
                # `_check_due`, has not fired yet). Never run, not failed.
                self._backlog.pop(request_id, None)
                self.loop.call_soon(functools.partial(self._finish_check, request_id,
                                                      QUEUE_STAYED_FULL))
                continue
            failed = self._transmit(message)
            if failed is HELPER_BUSY:
                return
            self._backlog.pop(request_id, None)
            if failed is not None:
                # The helper is gone: answered as its other requests are.
                self.loop.call_soon(
                    functools.partial(self._finish_check, request_id, failed) if check
                    else functools.partial(self._expire, request_id, never_ran(failed)))
        if self._sock is not None:
            self.loop.modify(self._sock, READ, self._ready)

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
            self._answer(packet)

    def _unread(self) -> list[bytes]:
        """The answers waiting on the helper's socket, read without waiting (up to its
        end, or an error: the socket is about to be closed)."""
        packets: list[bytes] = []
        while self._sock is not None:
            try:
                packet = self._sock.recv(MAX_PACKET)
            except InterruptedError:
                continue
            except OSError:
                break
            if not packet:
                break
            packets.append(packet)
        return packets

    def _answer(self, packet: bytes) -> None:
        """One packet from the helper: an answer for the request it names (a request
        already answered, at its deadline, gets no second one)."""
        try:
            answer = json.loads(packet)
            if "skipped" in answer:
                about = f" {answer['about']}" if answer.get("about") else ""
                self._report(f"spawn command{about} not run ({answer['reason']}): "
                             f"{answer['skipped']}")
                return
            request_id = int(answer["id"])
            if "not_run" in answer:
                self._finish_check(request_id, NotRun(str(answer["not_run"])))
                return
            if "status" in answer:
                status = answer["status"]
                self._finish_check(request_id, None if status is None else int(status))
                return
            info = NameInfo(answer.get("name"), bool(answer.get("confirmed")),
                            mismatch=str(answer.get("mismatch") or ""))
        except (ValueError, KeyError, TypeError):
            return
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            entry[1].cancel()
            entry[0](info)

    def _lost(self, *, later: bool = False, unread: list[bytes] | None = None) -> None:
        if self._sock is not None:
            self._report("name resolver exited; it is restarted when needed")
        # It is gone (or going): never signalled again; its pid waits for the master's
        # reaping (a new helper may be started before that).
        if self.pid is not None:
            self._exited.add(self.pid)
            self.pid = None
        self._disconnect(later=later, unread=unread or [])

    def _late(self, request_id: int, address: str) -> None:
        """A lookup's deadline passed unanswered: the client is taken as having no name
        (the access checks' rules then decide). Said, at most once a minute, so that a
        refusal that follows points at the DNS, not at the rules."""
        if request_id in self._pending and request_id not in self._backlog:
            now = time.monotonic()
            if now >= self._late_quiet_until:
                more = (f"; {self._late_unsaid} more since the last such line"
                        if self._late_unsaid else "")
                self._report(f"name lookup of {address} unanswered after {self.timeout:g} s: "
                             f"the client is taken as having no name (a slow DNS server, or "
                             f"every lookup thread busy with slow ones){more}")
                self._late_quiet_until = now + LATE_REPORT_INTERVAL
                self._late_unsaid = 0
            else:
                self._late_unsaid += 1
        self._expire(request_id)

    def _expire(self, request_id: int, info: NameInfo = NO_NAME) -> None:
        if self._backlog.pop(request_id, None) is not None:
            # Never sent: not looked up, whatever ended the wait.
            info = NOT_LOOKED_UP
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            entry[1].cancel()
            entry[0](info)

    def _check_due(self, request_id: int) -> None:
        """A check's own deadline (its `until`): one still waiting for room in the
        helper's queue is never run, refused now (`_finish_check`: QUEUE_STAYED_FULL);
        one sent has CHECK_GRACE more for the helper's answer (its commands killed at
        the deadline), then counts as killed."""
        if request_id in self._backlog:
            self._finish_check(request_id, QUEUE_STAYED_FULL)
            return
        entry = self._checks.get(request_id)
        if entry is not None:
            self._checks[request_id] = (entry[0], self.loop.call_later(
                CHECK_GRACE, lambda: self._finish_check(request_id, None)))

    def _finish_check(self, request_id: int, status: int | None | NotRun) -> None:
        if self._backlog.pop(request_id, None) is not None:
            # Never sent: never run, whatever ended the wait.
            status = QUEUE_STAYED_FULL
        entry = self._checks.pop(request_id, None)
        if entry is not None:
            entry[1].cancel()
            entry[0](status)

    def _report(self, text: str) -> None:
        if self._on_error is not None:
            self._on_error(text)


# Run by its path, so that the helper is this package's code and no other installation
# found first on the interpreter's search path (pyxinetd.access.resolverstart).
_HELPER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resolverstart.py")


def never_ran(why: NotRun) -> NameInfo:
    """The answer of a lookup the helper never made (or never finished): no name the
    DNS lacks, and the access checks refuse a verdict that needs it."""
    return NameInfo(not_looked_up=why.why)


def _waiting(message: dict[str, object]) -> str:
    """What waits for room in the helper's queue: the client whose name, or the
    commands of the check."""
    if message.get("op") == "name":
        return f"the name of {message.get('addr')} waits for it"
    commands = message.get("cmds")
    listed = "; ".join(str(c) for c in commands) if isinstance(commands, list) else ""
    return f"aclexec waits for it: {listed}"


def _dropped(message: dict[str, object]) -> str:
    """What is given up with a request the helper cannot take: the log line names the
    client whose name is not looked up, or the commands not run."""
    if message.get("op") == "name":
        return f"the name of {message.get('addr')} is not looked up"
    commands = message.get("cmds")
    if isinstance(commands, list):
        return "aclexec not run: " + "; ".join(str(c) for c in commands)
    return f"not run: {message.get('cmd')}"
