"""Run `python -m pyxinetd ARGS` with a census of the master's tables (tests only).

Usage: python census_daemon.py CENSUS.json ARGS...

Each SIGUSR1 writes the usual state dump, then CENSUS.json: every container (dict,
list, set, deque) reachable from the Master through pyxinetd objects, by attribute
path, with its length, plus the loop's registrations, the timer heap (live and
cancelled entries) and the open descriptors. The census runs in the loop, from the
dump's own action, so it sees the tables between two turns. Nothing of this is in the
product: the wrapper replaces `Internals.dump` in this process only.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from typing import Any

from pyxinetd import cli
from pyxinetd.internals import Internals

CONTAINERS = (dict, list, set, frozenset, collections.deque, tuple)
MAX_DEPTH = 8


def _ours(value: object) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("pyxinetd")


def census(master: object) -> dict[str, int]:
    """Breadth first, so that each table is named by its shortest path from the master
    (`master.dispatcher.sensor._deny`, not through some callback that reaches it)."""
    sizes: dict[str, int] = {}
    seen: set[int] = set()
    queue: collections.deque[tuple[object, str, int]] = collections.deque()
    queue.append((master, "master", 0))
    # Module-level tables and objects (the default spawner, redirect targets).
    for name, module in sorted(sys.modules.items()):
        if not name.startswith("pyxinetd") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if (isinstance(value, CONTAINERS) and not attr.isupper()
                    or _ours(value) and not isinstance(value, type)):
                queue.append((value, f"{name}.{attr}", 1))
    while queue:
        value, path, depth = queue.popleft()
        if id(value) in seen or depth > MAX_DEPTH:
            continue
        seen.add(id(value))
        items: list[tuple[str, Any]] = []
        if isinstance(value, CONTAINERS):
            if not isinstance(value, (tuple, frozenset)):
                sizes[path] = len(value)
            if isinstance(value, dict):
                items = [(f"{path}[]", v) for v in list(value.values())[:50]]
                items += [(f"{path}{{}}", k) for k in list(value.keys())[:50]]
            else:
                items = [(f"{path}[]", v) for v in list(value)[:50]]
        elif _ours(value) or type(value).__name__ in ("EpollSelector", "_SelectorMapping"):
            attrs = getattr(value, "__dict__", None)
            if attrs is None:
                slots = getattr(type(value), "__slots__", ())
                attrs = {s: getattr(value, s, None) for s in slots}
            items = [(f"{path}.{name}", attr) for name, attr in attrs.items()]
        elif callable(value) and hasattr(value, "__self__"):
            items = [(f"{path}.__self__", value.__self__)]
        for sub, item in items:
            queue.append((item, sub, depth + 1))
    return sizes


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> None:
    out = sys.argv[1]
    original = Internals.dump

    def dump_and_count(self: Internals) -> None:
        original(self)
        m: Any = self.master
        heap = m.loop.timers._heap
        report = {
            "tables": census(m),
            "registered": len(m.loop.selector.get_map()),
            "timers_live": sum(1 for t in heap if not t.cancelled),
            "timers_heap": len(heap),
            "fds": _fds(),
        }
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, sort_keys=True)
        os.replace(tmp, out)

    Internals.dump = dump_and_count  # type: ignore[method-assign]
    sys.argv = ["pyxinetd", *sys.argv[2:]]
    cli.main()


if __name__ == "__main__":
    main()
