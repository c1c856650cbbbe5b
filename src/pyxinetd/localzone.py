"""Local time in the zone the system has now.

Every local time the daemon shows or decides on goes through `local_time()`: the log
stamps (program log, FILE and syslog service logs), `daytime`, `access_times` and the
state dump.

xinetd converts with glibc's `localtime()`, which, when TZ is unset, looks at
/etc/localtime again on each call and reloads it when it changed: after `timedatectl
set-timezone` (or a tzdata update), its logs, `daytime` and `access_times` follow the
new zone without a restart. Python's `time.localtime()` calls `localtime_r()`, which
reads the zone once, so the daemon would keep the zone it started with. `time.tzset()`
makes glibc look again; it is called only when the file changed (one stat per
conversion, not a reload of the zone). A TZ set in the environment is read once, as in
glibc: its value cannot change under a running daemon.
"""

from __future__ import annotations

import os
import time

# glibc's TZDEFAULT: the zone used when TZ is unset.
SYSTEM_ZONE_FILE = "/etc/localtime"

# What identifies the zone file seen last (None: missing); glibc compares the same
# fields before reading it again (tzfile.c).
ZoneFileKey = tuple[int, int, int, int] | None

_seen: list[ZoneFileKey] = []


def _zone_file_key(path: str) -> ZoneFileKey:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def follow_system_zone() -> None:
    """Reload the local zone when TZ is unset and the system's zone file changed since
    the last look (glibc reads that file, whatever path we would name)."""
    if "TZ" in os.environ:
        return
    key = _zone_file_key(SYSTEM_ZONE_FILE)
    if _seen and _seen[0] == key:
        return
    _seen[:] = [key]
    time.tzset()


def local_time(now: float | None = None) -> time.struct_time:
    """`now` (default: the present) as local time, in the system's current zone."""
    follow_system_zone()
    return time.localtime(now)
