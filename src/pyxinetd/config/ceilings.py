"""What a server can be given of its `rlimit_*` and `nice`: the ceilings of the daemon.

The spawner sets each `rlimit_*` as soft = hard = the value, and the `nice` increment,
before it drops the user. Two things the daemon may not be able to give:
- a hard limit above its own: raising one needs CAP_SYS_RESOURCE in the initial user
  namespace (the kernel asks capable(), so a container's root with every capability in
  its own namespace cannot), and Linux refuses an RLIMIT_NOFILE above fs.nr_open
  whatever the privilege;
- a nice below its own: lowering one needs CAP_SYS_NICE (again in the initial user
  namespace), or an RLIMIT_NICE that allows it.

Both are requests for more, not protections, so a server is given the nearest the daemon
can give (its hard limit, fs.nr_open, the lowest nice it may set) rather than no server
at all: xinetd 2.3.15.3 ignores such a failure and starts the server with the daemon's
own limit and nice, so a configuration that served under xinetd keeps serving. Saying so
when the configuration is loaded, at the attribute's line, lets the administrator hear
of it before the first client does.

The load runs in a child of the daemon with the daemon's limits, nice and capabilities
(pyxinetd.config.isolated), or in `pyxinetd check`'s own process; the spawner reads the
ceilings again each time it prepares a service's start-up (pyxinetd.spawnrequest),
never per connection on its fast path.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.model import Rlimits
from pyxinetd.config.rawentries import RawAttribute

CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24
NICE_MIN, NICE_MAX = -20, 19
_RESOURCES = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU,
              "data": resource.RLIMIT_DATA, "rss": resource.RLIMIT_RSS,
              "stack": resource.RLIMIT_STACK, "files": resource.RLIMIT_NOFILE}
# The identity map of the initial user namespace, as /proc/self/uid_map shows it.
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


@dataclass(frozen=True)
class Ceilings:
    """What the loading process could give a server: its hard limit of each rlimit
    (RLIM_INFINITY: none), why it may not raise one (None: it may), fs.nr_open (None:
    unknown), its own nice, the lowest nice it may set and, when that is above
    NICE_MIN, why."""

    hard: Mapping[str, int]
    cannot_raise: str | None
    nr_open: int | None
    own_nice: int = 0
    nice_floor: int = NICE_MIN
    cannot_renice: str | None = None

    @classmethod
    def of_this_process(cls) -> Ceilings:
        hard = {name: resource.getrlimit(res)[1] for name, res in _RESOURCES.items()}
        own_nice = os.getpriority(os.PRIO_PROCESS, 0)
        cannot_renice = _lacks(CAP_SYS_NICE, "CAP_SYS_NICE")
        floor = NICE_MIN
        if cannot_renice is not None:
            # RLIMIT_NICE's soft limit N allows down to 20 - N; the daemon's own nice is
            # always allowed.
            allowed = resource.getrlimit(resource.RLIMIT_NICE)[0]
            lowest = (NICE_MIN if allowed == resource.RLIM_INFINITY
                      else max(NICE_MIN, 20 - allowed))
            floor = min(own_nice, lowest)
        return cls(hard, _lacks(CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
                   _read_int("/proc/sys/fs/nr_open"), own_nice, floor,
                   cannot_renice if floor > NICE_MIN else None)

    def refusal(self, name: str, value: int) -> str | None:
        """Why rlimit `name` = `value` (soft = hard) cannot be given, or None."""
        if name == "files" and value == resource.RLIM_INFINITY:
            return None       # given as the daemon's hard limit (spawnrequest.py)
        hard = self.hard.get(name, resource.RLIM_INFINITY)
        above_hard = (self.cannot_raise is not None and hard != resource.RLIM_INFINITY
                      and (value == resource.RLIM_INFINITY or value > hard))
        above_nr_open = name == "files" and self.nr_open is not None and value > self.nr_open
        # The reason given is the ceiling that decides what the servers get (granted()):
        # the lower of the two when both are exceeded.
        if above_nr_open and not (above_hard and self.nr_open is not None
                                  and hard < self.nr_open):
            return (f"is above fs.nr_open ({self.nr_open}), which Linux refuses whatever "
                    "the privilege")
        if not above_hard:
            return None
        return (f"is above the daemon's hard limit ({hard}), which the daemon cannot raise "
                f"({self.cannot_raise})")

    def granted(self, name: str, value: int) -> int:
        """What a server is given for rlimit `name` = `value`: the value, or the nearest
        the daemon can give (its hard limit, fs.nr_open for files)."""
        if self.refusal(name, value) is None:
            return value
        most = resource.RLIM_INFINITY
        if self.cannot_raise is not None:
            most = self.hard.get(name, resource.RLIM_INFINITY)
        if name == "files" and self.nr_open is not None:
            most = self.nr_open if most == resource.RLIM_INFINITY else min(most, self.nr_open)
        return most

    def target_nice(self, increment: int) -> int:
        """The nice `nice = increment` asks for: the daemon's own plus the increment,
        kept within the range, as setpriority keeps it."""
        return max(NICE_MIN, min(NICE_MAX, self.own_nice + increment))

    def nice_refusal(self, increment: int) -> str | None:
        """Why `nice = increment` cannot be given, or None."""
        target = self.target_nice(increment)
        if target >= self.own_nice or target >= self.nice_floor:
            return None
        return (f"asks for nice {target}, below {self.nice_floor}, the lowest the daemon may "
                f"set ({self.cannot_renice})")

    def granted_nice(self, increment: int) -> int:
        """The increment a server is given for `nice = increment`: the one asked, or the
        one that takes it to the lowest nice the daemon may set."""
        if self.nice_refusal(increment) is None:
            return increment
        return self.nice_floor - self.own_nice


def _shown(value: int) -> str:
    return "UNLIMITED" if value == resource.RLIM_INFINITY else str(value)


def warn_unreachable(sid: str, rlimits: Rlimits, nice: int | None,
                     own: Mapping[str, RawAttribute], ceilings: Ceilings,
                     sink: DiagnosticSink, where: tuple[str, int]) -> None:
    """A warning, at the attribute's line, for each rlimit and the nice that the daemon
    cannot give, saying what the servers get instead."""
    def at(attribute: str) -> tuple[str, int]:
        raw = own.get(attribute)
        return (raw.file, raw.line) if raw is not None else where

    for name, value in rlimits.items():
        why = ceilings.refusal(name, value)
        if why is not None:
            sink.warning(*at(f"rlimit_{name}"),
                         f"service {sid}: rlimit_{name} = {_shown(value)} {why}: its servers "
                         f"get {_shown(ceilings.granted(name, value))} (xinetd 2.3.15.3 leaves "
                         "them the daemon's limit)")
    if nice is not None:
        why = ceilings.nice_refusal(nice)
        if why is not None:
            sink.warning(*at("nice"),
                         f"service {sid}: nice = {nice} {why}: its servers run at nice "
                         f"{ceilings.nice_floor} (xinetd 2.3.15.3 leaves them the daemon's "
                         "nice)")


def _lacks(capability: int, name: str) -> str | None:
    """Why this process may not use `capability` for its rlimits and nice, or None when
    it may: it needs it in its effective set, in the initial user namespace."""
    try:
        with open("/proc/self/status") as status:
            cap_eff = next((int(line.split()[1], 16) for line in status
                            if line.startswith("CapEff:")), None)
    except (OSError, ValueError, IndexError):
        cap_eff = None
    if cap_eff is None:
        return None     # cannot tell: no warning rather than a false one
    if not cap_eff >> capability & 1:
        return f"it lacks {name}"
    try:
        with open("/proc/self/uid_map") as uid_map:
            initial = uid_map.read().split() == _INITIAL_UID_MAP
    except OSError:
        initial = True  # a kernel without user namespaces
    return None if initial else f"its {name} is that of a user namespace"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
