"""Signals reach the loop through one wakeup socket; handlers only record.

A Python signal handler that does real work can run between any two bytecodes of the
loop (mid-fork, mid-accept, while holding the logging lock). So the handlers only record
the signal's number, and `signal.set_wakeup_fd` makes the interpreter write it, as one
byte, to a non-blocking socketpair that the selector watches. The loop drains the socket
and dispatches every recorded signal, in the order their bytes arrived, from one table.
Repeated signals coalesce; the SIGCHLD role must therefore reap until nothing is left.

The bytes alone are not the record: the socket holds only a few hundred one-byte writes
(each costs a whole buffer in the kernel), and a byte that does not fit is dropped. A
burst of signals while the loop is busy (a few thousand SIGUSR1 during a dump) filled it,
and the SIGTERM after them was lost: the daemon never stopped.

Nor can the record alone wake the loop: the Python-level handler runs at some bytecode
boundary after the interpreter wrote the byte, possibly after the loop had already read
it. So the handler, once it has recorded, writes a byte of its own (0, no signal): the
loop wakes once more and finds the record. If that byte does not fit either, the socket
is full, hence readable, and wakes the loop all the same.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Collection, Mapping
from types import FrameType

from pyxinetd import faultsignals
from pyxinetd.errors import SetupError
from pyxinetd.loop import READ, Loop

# Signals by role (xinetd's xconfig.h names them the same way).
RECONFIG_SIGNALS = (signal.SIGHUP, signal.SIGUSR2)
DUMP_SIGNAL = signal.SIGUSR1
TERMINATE_SIGNAL = signal.SIGTERM
QUICK_EXIT_SIGNAL = signal.SIGQUIT
REAP_SIGNAL = signal.SIGCHLD
CONSISTENCY_SIGNAL = signal.SIGABRT
INTERRUPT_SIGNAL = signal.SIGINT
# Signals xinetd catches and does nothing with: its signal_init() gives every signal
# from 1 to 31 a handler (the loop stops at 32, which glibc refuses), and those without
# a role or a fault to log do nothing. Their default action would otherwise stop or end
# the daemon: SIGXCPU once a CPU limit's soft value is passed, SIGPWR from a UPS
# daemon, SIGALRM from a stray kill. Not SIG_IGN: an ignored disposition survives exec
# into every server, a handler does not. SIGPIPE and SIGXFSZ Python ignores already.
IGNORED_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGCONT", "SIGTTIN", "SIGTTOU",
    "SIGTSTP", "SIGURG", "SIGXCPU", "SIGPWR", "SIGSTKFLT") if hasattr(signal, name))
# Those that keep their default action with -d, as in xinetd (a debugged daemon in a
# terminal can be suspended).
TTY_SIGNALS = (signal.SIGTTIN, signal.SIGTTOU, signal.SIGTSTP)
# The ignored signals whose default action ends the process.
_IGNORED_ENDING = tuple(s for s in IGNORED_SIGNALS
                        if s not in (*TTY_SIGNALS, signal.SIGWINCH, signal.SIGCONT,
                                     signal.SIGURG))
# Signals whose default action (terminate) the daemon must never take, held back until
# the loop's handlers are in place (see hold_until_installed). SIGINT is one: xinetd
# ignores it from its first steps (but with -d), so a Ctrl-C while the daemon starts
# must not end it either; so are those it ignores (SIGALRM, SIGXCPU, ...).
HELD_AT_START = (*RECONFIG_SIGNALS, DUMP_SIGNAL, INTERRUPT_SIGNAL, *_IGNORED_ENDING)
# The signals that ask for the end: held at start as well by process 1 only.
ENDING_SIGNALS = (TERMINATE_SIGNAL, QUICK_EXIT_SIGNAL)

# The mask before the first hold_until_installed(), for release_hold().
_mask_before_hold: set[int] | None = None


def held_at_start(pid: int) -> tuple[int, ...]:
    """The signals hold_until_installed() blocks in the process `pid`."""
    return (*HELD_AT_START, *ENDING_SIGNALS) if pid == 1 else HELD_AT_START


def hold_until_installed(started_with: Collection[int] | None = None) -> None:
    """Block SIGHUP, SIGUSR2, SIGUSR1, SIGINT and the ignored signals whose default
    action ends a process (SIGALRM, SIGXCPU, ...; and, as process 1, SIGTERM and
    SIGQUIT) until SignalWakeup.install() unblocks them.

    xinetd installs its handlers before it reads its configuration; here the imports
    and the start-up load come first (most of a second on a slow host, seconds for a
    large configuration), and one of the first three arriving during them would kill
    the daemon silently. Blocked, it stays pending and is handled once the loop runs:
    a reload then follows `Started working`, as in xinetd. SIGINT, which xinetd
    ignores (but with -d), is held too: a Ctrl-C while the daemon starts is then
    ignored as it is once it serves (with -d it ends the daemon once the handlers are
    in: `Exiting...`, status 1), instead of ending it in its first second only.
    Elsewhere SIGTERM and SIGQUIT keep their default action: they ask for the end
    anyway. Process 1 (a container's init) is different: the kernel drops a signal
    whose action there is the default one, so the SIGTERM of a `docker stop` arriving
    during the start-up was lost, the daemon served on and was killed 10 seconds
    later. Held, they are handled as xinetd handles them: `Exiting...` after `Started
    working`.

    Called again, it blocks the same signals and keeps the first call's mask for
    release_hold(). `started_with` is the mask to keep instead when the signals were
    held already before an exec (pyxinetd.__main__.in_utf8_mode).
    """
    global _mask_before_hold
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held_at_start(os.getpid()))
    if _mask_before_hold is None:
        _mask_before_hold = set(map(int, previous if started_with is None else started_with))


def release_hold() -> None:
    """Undo hold_until_installed() in a command that does not serve (`pyxinetd
    check`): the mask is again the one it started with."""
    global _mask_before_hold
    if _mask_before_hold is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_hold)
        _mask_before_hold = None


class SignalWakeup:
    """Owns the wakeup socketpair and the record-only handlers."""

    def __init__(self, loop: Loop, dispatch: Mapping[int, Callable[[], None]]) -> None:
        self._loop = loop
        self._dispatch = dict(dispatch)
        # Signals recorded by the handler and not yet dispatched (a dict: ordered).
        self._recorded: dict[int, None] = {}
        # Signals in the order their bytes were read, not yet recorded or dispatched.
        self._arrived: dict[int, None] = {}
        self._previous: dict[int, object] = {}
        try:
            self._rsock, self._wsock = socket.socketpair()
        except OSError as err:
            raise SetupError("the signal socket pair", err) from err
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._old_wakeup_fd = -1
        # The mask the daemon was started with, restored by uninstall().
        self._old_mask: set[int | signal.Signals] | None = None
        self.installed = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        # Only record, then make sure the loop wakes after the record (module docstring).
        self._recorded[signum] = None
        try:
            self._wsock.send(b"\0")
        except OSError:
            pass    # full: readable already; closed: the daemon is past its loop

    def install(self) -> None:
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
        # Fault signals only under the extension's guard (pyxinetd.faultsignals): a
        # Python handler alone would hang the daemon on a real fault. Not over
        # faulthandler's either: its traceback was asked for.
        faults = [s for s in self._dispatch if s in faultsignals.FAULT_SIGNALS]
        if faults and (not faultsignals.guard_available()
                       or faultsignals.left_to_faulthandler()):
            for signum in faults:
                del self._dispatch[signum]
            faults = []
        for signum in self._dispatch:
            self._previous[signum] = signal.signal(signum, self._record)
        if faults:
            faultsignals.guard(faults)
        # A blocked mask survives exec: started by a program that blocks SIGCHLD or
        # SIGTERM, the daemon would never reap a server nor stop (xinetd has that
        # flaw). Every signal with a role is let through.
        self._old_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, self._dispatch)
        self._loop.register(self._rsock, READ, self._on_readable)
        self._loop.first(self._rsock)
        self.installed = True

    def uninstall(self, *, ignore: bool = False) -> None:
        """Restore the previous dispositions, or with `ignore` leave the signals
        ignored (see close())."""
        if not self.installed:
            return
        self._loop.unregister(self._rsock)
        self._loop.first(None)
        for signum, previous in self._previous.items():
            if ignore and signum != REAP_SIGNAL:
                previous = signal.SIG_IGN
            signal.signal(signum, previous)  # type: ignore[arg-type]
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None
        signal.set_wakeup_fd(self._old_wakeup_fd)
        self.installed = False

    def close(self, *, exiting: bool = False) -> None:
        """Uninstall and close the socket pair.

        `exiting`: the process is about to exit; leave every handled signal ignored
        instead of restoring its previous (default) action. A SIGHUP from a reload
        racing the stop, or a second SIGTERM, would otherwise kill the process on its
        way out, with the signal as its status and maybe its pidfile left behind;
        xinetd keeps its handlers until it exits. SIGCHLD keeps its default (ignored
        anyway), since SIG_IGN would change how children are reaped."""
        self.uninstall(ignore=exiting)
        self._rsock.close()
        self._wsock.close()

    def fds(self) -> tuple[int, int]:
        return self._rsock.fileno(), self._wsock.fileno()

    def _on_readable(self, mask: int) -> None:
        # A short read means the socket is empty now (one recv per wakeup, not a
        # second one failing with EAGAIN); a byte written later wakes the loop again.
        try:
            while True:
                data = self._rsock.recv(4096)
                for signum in data:     # one byte per signal (0: a handler's wakeup)
                    if signum:
                        self._arrived[signum] = None
                if len(data) < 4096:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        self.dispatch_pending()

    def dispatch_pending(self) -> None:
        # Taken in one assignment: a handler running meanwhile records into the new
        # dict, and its own byte brings the loop back for it.
        recorded, self._recorded = self._recorded, {}
        # Arrival order where the byte was read; a signal whose byte was dropped
        # comes after. A byte whose record is not made yet waits for it.
        arrived = self._arrived
        if arrived.keys() == recorded.keys():
            # The usual case (every byte read has its record, and no more): no sorting.
            order = list(arrived)
            arrived.clear()
        else:
            order = [signum for signum in arrived if signum in recorded]
            order += [signum for signum in recorded if signum not in arrived]
            for signum in order:
                arrived.pop(signum, None)
        for signum in order:
            action = self._dispatch.get(signum)
            if action is None:
                continue
            # One failing action must not cost the others, nor this socket its place
            # in the loop (a daemon that no longer sees SIGTERM).
            try:
                action()
            except Exception as exc:
                if self._loop.on_error is None:
                    raise
                self._loop.on_error(f"the action for {signal.Signals(signum).name}", exc)

    def inject(self, signum: int) -> None:
        """Record a signal as if it had arrived (used by tests): its byte, as the
        interpreter writes it, then what the handler does."""
        self._wsock.send(bytes([signum]))
        self._record(signum, None)
