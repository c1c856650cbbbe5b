"""Fault signals (SIGSEGV, SIGBUS, ...) sent to the daemon with kill(1).

xinetd catches SIGSEGV and SIGBUS, logs `Unexpected signal: 11 (Segmentation fault)`
and serves on; the other fault signals it ignores. A Python handler cannot simply be
installed for them: after a real fault (in the interpreter or a library) it would only
set a flag and return to the faulting instruction, which faults again, for ever, a hung
daemon instead of a crashed one. The C extension's guard (pyxinetd._spawn.guard_faults)
tells the two apart by who sent the signal: one sent by a process reaches the daemon's
recording handler like any other signal, a real fault gets the default action and is
raised again (the process dies with its core dump, as without the guard, even where the
faulting instruction is not run again: a seccomp SIGSYS, an int3 SIGTRAP). Without the extension the
fault signals keep their default action, and a `kill -SEGV` ends the daemon.
"""

from __future__ import annotations

import faulthandler
import signal
from collections.abc import Iterable

from pyxinetd.posix import NATIVE_ENABLED

if NATIVE_ENABLED:
    from pyxinetd import _spawn

# Those xinetd logs as unexpected, and those it ignores, when a process sends them.
LOGGED = (signal.SIGSEGV, signal.SIGBUS)
IGNORED = tuple(getattr(signal, name) for name in ("SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
                if hasattr(signal, name))
FAULT_SIGNALS = frozenset(int(s) for s in (*LOGGED, *IGNORED))


def guard_available() -> bool:
    """Whether a fault signal can be caught without hanging on a real fault: the
    extension is built and enabled (PYXINETD_NATIVE_SPAWN=0 makes the daemon behave as
    one built without it, this guard included)."""
    return NATIVE_ENABLED and hasattr(_spawn, "guard_faults")


def left_to_faulthandler() -> bool:
    """Whether Python's faulthandler (PYTHONFAULTHANDLER, `-X faulthandler`) holds the
    fault signals: someone debugging the daemon asked for a traceback on a real fault,
    which the guard would replace. The fault signals are then left to it (a `kill -SEGV`
    ends the daemon, with that traceback)."""
    return faulthandler.is_enabled()


def guard(signums: Iterable[int]) -> None:
    """Put the guard under the Python handlers just installed for `signums`."""
    _spawn.guard_faults(sorted(signums))


def unexpected_signal_text(signum: int) -> str:
    """The words of xinetd's line for a SIGSEGV or SIGBUS it was sent, after `(PID) `."""
    return f"Unexpected signal: {signum} ({signal.strsignal(signum)})"
