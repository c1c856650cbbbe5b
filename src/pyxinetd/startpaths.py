"""Paths given to the daemon at start: where a relative one is taken from, and whether
one reaches the start command's own standard streams.

The detached daemon works from `/` and has its streams on /dev/null, so what the start
command means by a relative path or by `/dev/stderr` must be settled before it detaches.
"""

from __future__ import annotations

import os
import re


def current_folder() -> str | None:
    """The current folder's path; None when it was removed (getcwd fails)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def from_here(path: str, here: str | None) -> str:
    """`path` taken from the folder `here`; an empty one stays empty, naming no file
    (as for xinetd: `-f ''` cannot be opened, it is not the current folder). Without
    `here` (the current folder was removed) a relative path stays relative: opened from
    the removed folder, it fails as xinetd's open of it fails."""
    if not path or (here is None and not os.path.isabs(path)):
        return path
    return os.path.normpath(os.path.join(here or "/", path))


def environment_paths_from_here(here: str | None) -> str | None:
    """Make every relative path the daemon reads from its environment (the dump file,
    the syslog socket, the hosts tables) absolute, taken from `here`, in os.environ
    itself: its readers look it up there, some only in the detached daemon, which works
    from `/`. Returns the name of the first that stays relative because the current
    folder was removed (None when there is none): unlike -f or -filelog, which then fail
    to open as xinetd's do, such a variable has no xinetd counterpart to follow, and
    taking it from `/` would read or write some other file."""
    from pyxinetd.access.gate import ALLOW_ENV, DENY_ENV
    from pyxinetd.dump import DUMP_FILE_ENV
    from pyxinetd.syslogsender import SYSLOG_SOCKET_ENV

    for name in (DUMP_FILE_ENV, SYSLOG_SOCKET_ENV, ALLOW_ENV, DENY_ENV):
        # An empty value names no file (or the default): nothing to take from anywhere.
        value = os.environ.get(name, "")
        if not value or os.path.isabs(value):
            continue
        if here is None:
            return name
        os.environ[name] = from_here(value, here)
    return None


_OWN_DESCRIPTOR = re.compile(r"/(?:proc/(?:self|thread-self|%d)/fd|dev/fd)/([012])"
                             % os.getpid())


def standard_stream_behind(path: str) -> str | None:
    """"stdin", "stdout" or "stderr" when `path` reaches this process's descriptor 0, 1
    or 2 through /proc/self/fd (`/dev/stderr`, `/dev/fd/1`) and that is not /dev/null
    already; else None. Opened again in the detached daemon, such a path names its own
    descriptor, /dev/null."""
    for _ in range(40):    # the kernel's own limit on a chain of links
        match = _OWN_DESCRIPTOR.fullmatch(os.path.normpath(path))
        if match is not None:
            fd = int(match.group(1))
            try:
                if os.path.samestat(os.fstat(fd), os.stat(os.devnull)):
                    return None
            except OSError:
                return None
            return ("stdin", "stdout", "stderr")[fd]
        try:
            target = os.readlink(path)
        except OSError:
            return None
        path = os.path.join(os.path.dirname(path), target)
    return None
