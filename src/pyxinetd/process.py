"""The daemon's own process, set up once before it serves (reference §4.1).

The descriptor limit raised to its hard value (servers inherit it: xinetd's
RLIMIT_NOFILE rule), descriptors 0-2 opened on /dev/null when missing (so no listener
or connection ever lands there), an inherited SIG_IGN of SIGCHLD undone (so children
can be waited for), and the umask widened by 022 as xinetd does. Before the
configuration takes its environment, the LC_CTYPE the interpreter added to it
(drop_coerced_locale).
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Collection, MutableMapping


def open_missing_standard_fds() -> list[int]:
    """Open /dev/null on each of fds 0-2 that is closed; returns those fds.

    Done first thing by the command line too (xinetd does it before parsing its
    options): a start command run with `>&-` or `<&-` would otherwise have its pipes
    and files land on 0-2, where detaching points /dev/null over them."""
    missing = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            missing.append(fd)
    return missing


def close_inherited_descriptors(keep: Collection[int] = ()) -> None:
    """Close every descriptor above 2 that this process was started with, but `keep`
    (the sockets a service manager handed over).

    As xinetd does first thing. A detaching daemon gets this from python-daemon; one
    that stays in the foreground (-dontfork, -d) would otherwise hold its starter's
    files, pipes and locks for as long as it runs: a `$(...)` or a pipe whose reader
    waits for end of file would wait for the daemon's exit, a lock taken by a wrapper
    (flock) would never be released. Called before the daemon opens anything itself.
    """
    try:
        # /proc lists only what is open (the limit may be ~10^9, too many to try).
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 16)))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass    # the folder listdir read, already closed; or never open


def wait_for_own_children() -> bool:
    """Put SIGCHLD back to its default if the daemon was started with it ignored;
    True if it was.

    An ignored SIGCHLD survives exec (a shell's `trap '' CHLD`, some supervisors), and
    with it the kernel reaps every child itself: waitpid() fails with ECHILD, so the
    configuration loader, the detaching fork and every server could never be waited
    for (the daemon would not even start). xinetd installs its own SIGCHLD handler
    first thing; this is done before the first child likewise."""
    if signal.getsignal(signal.SIGCHLD) != signal.SIG_IGN:
        return False
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return True


def prepare_process() -> None:
    """Raise the descriptor limit, make sure fds 0-2 exist, set the umask (§4.1)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    open_missing_standard_fds()
    old = os.umask(0o022)
    os.umask(old | 0o022)


def drop_coerced_locale(environ: MutableMapping[str, str] | None = None,
                        initial: str = "/proc/self/environ") -> bool:
    """Remove the LC_CTYPE that CPython put in its own environment; True if it did.

    Started in the C or POSIX locale, CPython coerces the locale (PEP 538) and sets
    LC_CTYPE=C.UTF-8 in the process environment, where every server would inherit it
    (and `passenv = LC_CTYPE` would find it): the daemon was not started with it, and
    xinetd would pass no such variable. /proc/self/environ still shows the environment
    the process was exec'd with (setenv never rewrites it); without it nothing is
    changed. The daemon's own locale, set at interpreter start, stays as it is.
    """
    env = os.environ if environ is None else environ
    if "LC_CTYPE" not in env:
        return False
    try:
        with open(initial, "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return False
    if any(e.startswith(b"LC_CTYPE=") for e in entries):
        return False
    del env["LC_CTYPE"]
    return True
