"""Looking at a process's children and a socket's queue through /proc, shared by
tests/daemon.py and the scenario scripts run in namespaces (which import it as a
sibling module)."""

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


def receive_queue(port: int) -> int | None:
    """The bytes queued on the UDP socket bound to 127.0.0.1:PORT (/proc/net/udp), or
    None without such a socket."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted:
                return int(fields[4].split(":")[1], 16)
    return None


def accept_queue(port: int) -> int | None:
    """The connections waiting in the accept queue of the TCP socket listening on
    127.0.0.1:PORT (/proc/net/tcp), or None without such a socket."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":
                return int(fields[4].split(":")[1], 16)
    return None
