"""The daemon's own process, set up once before it serves (reference §4.1).

The descriptor limit raised to its hard value (servers inherit it: xinetd's
RLIMIT_NOFILE rule), descriptors 0-2 opened on /dev/null when missing (so no listener
or connection ever lands there), the umask widened by 022 as xinetd does, and the
master's short scheduling slice (docs/performance.md).
"""

from __future__ import annotations

import os
import resource

from pyxinetd.spawner import use_short_slice


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
    # Scheduling only: servers get the default slice back (docs/performance.md).
    use_short_slice()
