"""The configuration loader child puts itself first in line for the OOM killer.

Under a memory limit (a memory cgroup, a container), the kernel's OOM killer picks the
process with the largest footprint. The loader starts as large as the daemon it was
forked from and grows while it parses: left alone, the killer took the daemon itself,
and every service with it, for memory the loader asked for. The loader is expendable
(a reload whose loader dies keeps the running configuration), so it raises its own
oom_score_adj to the maximum; raising it needs no privilege. The daemon and its
servers keep theirs. The name resolver helper does not: the hosts.allow `spawn` and
`aclexec` commands it runs would inherit the adjustment.
"""

from __future__ import annotations

OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
# The highest adjustment: killed first, whatever its size.
FIRST_TO_GO = 1000


def offer_to_oom_killer(path: str = OOM_SCORE_ADJ) -> bool:
    """Make this process the OOM killer's first choice; False when /proc could not
    say so (no /proc, a kernel without it): the process just runs as it is."""
    try:
        with open(path, "w", encoding="ascii") as adj:
            adj.write(str(FIRST_TO_GO))
    except OSError:
        return False
    return True
