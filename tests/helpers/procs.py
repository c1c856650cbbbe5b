"""Looking at a process's children and a socket's queue through /proc, and ending a
recorded process only while it is still the one recorded, shared by
tests/daemon.py and the scenario scripts run in namespaces (which import it as a
sibling module)."""

from __future__ import annotations

import os
import signal


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


def resolver_helpers(parent: int) -> list[int]:
    """The name resolver helpers among `parent`'s children."""
    found: list[int] = []
    for pid in children_of(parent):     # skips a daemon thread that ends meanwhile
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as c:
                if b"pyxinetd/access/resolverstart.py" in c.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def _queue(table: str, port: int, rem_address: str | None, state: str | None) -> int | None:
    """The receive queue (column tx_queue:rx_queue) of the first socket of /proc/net/TABLE
    on 127.0.0.1:PORT with that remote address and state (None: any), or None."""
    wanted = f"0100007F:{port:04X}"
    with open(f"/proc/net/{table}") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1] == wanted and rem_address in (None, fields[2])
                    and state in (None, fields[3])):
                return int(fields[4].split(":")[1], 16)
    return None


def receive_queue(port: int) -> int | None:
    """The bytes queued on the unconnected UDP socket bound to 127.0.0.1:PORT (the
    service socket; /proc/net/udp), or None without such a socket. The sockets of
    dgram wait = no clients share its address, each connected to its client: they are
    not it."""
    return _queue("udp", port, "00000000:0000", None)


def accept_queue(port: int) -> int | None:
    """The connections waiting in the accept queue of the TCP socket listening on
    127.0.0.1:PORT (/proc/net/tcp), or None without such a socket."""
    return _queue("tcp", port, None, "0A")


def kill_if_running(pid: int, argument: str) -> bool:
    """SIGKILL `pid` only while its command line holds `argument` (a path only the
    caller's processes are given); whether it was sent. A pid recorded by a process
    that has exited since may have been given to an unrelated one, on a busy machine
    within seconds: that one is left alone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    if os.fsencode(argument) not in words:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
