"""Looking at a process's children through /proc, shared by tests/daemon.py and the
scenario scripts run in namespaces (which import it as a sibling module)."""

from __future__ import annotations

import os


def children_of(pid: int) -> list[int]:
    """The pids whose parent is `pid` (its threads' /proc children lists)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(word) for word in f.read().split()]
        except OSError:
            continue    # the thread ended meanwhile
    return found
