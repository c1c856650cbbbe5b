"""The rlimits a server can be given: the ceilings of the process that loads.

The spawner sets each `rlimit_*` as soft = hard = the value, before it drops the user,
and a failure stops that start (docs/compatibility.md, "Every step of a server's set-up
is checked"). Raising a hard limit above the daemon's own needs CAP_SYS_RESOURCE in the
initial user namespace (the kernel asks capable(), so a container's root with every
capability in its own namespace cannot), and Linux refuses an RLIMIT_NOFILE above
fs.nr_open whatever the privilege. A value past either ceiling therefore fails every
start of its server; saying so when the configuration is loaded lets the administrator
hear it before the first client does.

The load runs in a child of the daemon with the daemon's limits and capabilities
(pyxinetd.config.isolated), or in `pyxinetd check`'s own process; the ceilings are read
once per load, never per connection.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from dataclasses import dataclass

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.model import Rlimits
from pyxinetd.config.rawentries import RawAttribute

CAP_SYS_RESOURCE = 24
_RESOURCES = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU,
              "data": resource.RLIMIT_DATA, "rss": resource.RLIMIT_RSS,
              "stack": resource.RLIMIT_STACK, "files": resource.RLIMIT_NOFILE}
# The identity map of the initial user namespace, as /proc/self/uid_map shows it.
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


@dataclass(frozen=True)
class Ceilings:
    """What the loading process could give a server: its hard limit of each rlimit
    (RLIM_INFINITY: none), why it may not raise one (None: it may), and fs.nr_open
    (None: unknown)."""

    hard: Mapping[str, int]
    cannot_raise: str | None
    nr_open: int | None

    @classmethod
    def of_this_process(cls) -> Ceilings:
        hard = {name: resource.getrlimit(res)[1] for name, res in _RESOURCES.items()}
        return cls(hard, _why_hard_limits_stay(), _read_int("/proc/sys/fs/nr_open"))

    def refusal(self, name: str, value: int) -> str | None:
        """Why setting rlimit `name` to `value` (soft = hard) would fail, or None."""
        if name == "files" and value == resource.RLIM_INFINITY:
            return None       # given as the daemon's hard limit (spawnrequest.py)
        if name == "files" and self.nr_open is not None and value > self.nr_open:
            return (f"is above fs.nr_open ({self.nr_open}), which Linux refuses whatever "
                    "the privilege")
        hard = self.hard.get(name, resource.RLIM_INFINITY)
        if self.cannot_raise is None or hard == resource.RLIM_INFINITY:
            return None
        if value != resource.RLIM_INFINITY and value <= hard:
            return None
        return (f"is above the daemon's hard limit ({hard}), which the daemon cannot raise "
                f"({self.cannot_raise})")


def warn_unreachable_limits(sid: str, server: str | None, rlimits: Rlimits,
                            own: Mapping[str, RawAttribute], ceilings: Ceilings,
                            sink: DiagnosticSink, where: tuple[str, int]) -> None:
    """A warning, at the attribute's line, for each rlimit that fails every start."""
    for name, value in rlimits.items():
        why = ceilings.refusal(name, value)
        if why is None:
            continue
        attribute = own.get(f"rlimit_{name}")
        file, line = (attribute.file, attribute.line) if attribute is not None else where
        shown = "UNLIMITED" if value == resource.RLIM_INFINITY else str(value)
        sink.warning(file, line, f"service {sid}: rlimit_{name} = {shown} {why}: every start "
                                 f"of its server will fail (cannot start {server or '...'}: "
                                 f"rlimit_{name}: "
                                 "Operation not permitted; xinetd 2.3.15.3 starts it with the "
                                 "limit unchanged)")


def _why_hard_limits_stay() -> str | None:
    """Why this process may not raise a hard limit, or None when it may: it needs
    CAP_SYS_RESOURCE in its effective set, in the initial user namespace."""
    try:
        with open("/proc/self/status") as status:
            cap_eff = next((int(line.split()[1], 16) for line in status
                            if line.startswith("CapEff:")), None)
    except (OSError, ValueError, IndexError):
        cap_eff = None
    if cap_eff is None:
        return None     # cannot tell: no warning rather than a false one
    if not cap_eff >> CAP_SYS_RESOURCE & 1:
        return "it lacks CAP_SYS_RESOURCE"
    try:
        with open("/proc/self/uid_map") as uid_map:
            initial = uid_map.read().split() == _INITIAL_UID_MAP
    except OSError:
        initial = True  # a kernel without user namespaces
    return None if initial else "its CAP_SYS_RESOURCE is that of a user namespace"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
