"""The table of running servers, and reaping.

The table is authoritative: a server is recorded the moment spawn() returns its pid,
before anything else can fail, and leaves it only when waitpid() reports it. Every
limit (instances, per_source, -limit) is counted from here, so a server that crashes,
hangs or exits at once can never leave a count wrong. In-loop sessions of internal
services and redirects occupy the same counters while they are open.

Reaping loops `waitpid(-1, WNOHANG)` until nothing is left, because SIGCHLDs coalesce.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pyxinetd.config.model import ServiceConfig

# Peer text of a request whose sender is unknown (stream/wait), as xinetd logs it.
NO_ADDRESS = "<no address>"

K = TypeVar("K")


@dataclass(frozen=True)
class ExitStatus:
    """A decoded wait status: `kind` is "status" (exit code) or "signal"."""

    kind: str
    value: int
    core_dumped: bool = False

    @classmethod
    def decode(cls, status: int) -> ExitStatus:
        # Immutable, and servers exit with few distinct statuses: decoded once each
        # rather than a new frozen instance per reaped child.
        return _decode(status)

    @classmethod
    def _decode_new(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls("signal", os.WTERMSIG(status), os.WCOREDUMP(status))
        if os.WIFEXITED(status):
            return cls("status", os.WEXITSTATUS(status))
        return cls("status", status)

    def as_pair(self) -> tuple[str, int]:
        return (self.kind, self.value)

    def __str__(self) -> str:
        if self.kind == "signal":
            try:
                name = signal.Signals(self.value).name
            except ValueError:
                name = str(self.value)
            return f"terminated by {name}" + (" (core dumped)" if self.core_dumped else "")
        return f"exit status {self.value}"


@functools.lru_cache(maxsize=512)
def _decode(status: int) -> ExitStatus:
    return ExitStatus._decode_new(status)


@dataclass(slots=True)
class Child:
    """A running server process started by the master."""

    pid: int
    service: ServiceConfig
    peer: str
    start_time: float        # loop clock, for durations
    started_at: float        # wall clock, for reports
    on_reap: Callable[[Child, ExitStatus], None] | None = field(default=None, repr=False)
    # False once a reload removed its service: it is being terminated and no longer
    # counts toward a service of that id (it still counts toward the total).
    counted: bool = field(default=True, repr=False)
    # The client's port (0 when unknown), for the state dump's `remote_address`.
    peer_port: int = field(default=0, repr=False)


class Occupancy:
    """Running instances per service, per (service, peer), and overall.

    Services are counted by id, case-insensitively, as a reload matches them: a
    service whose id only changed case is the same service, with the same servers.
    Peers are counted by address: an IPv4 client a dual-stack socket sees as
    `::ffff:a.b.c.d` is the client `a.b.c.d` of an IPv4 socket (a reload may switch the
    service between the two while its servers run, and services sharing an id may
    listen on both)."""

    # Plain dicts rather than Counter: this runs twice per connection, and Counter's
    # Python-level __missing__ made it several times slower.
    def __init__(self) -> None:
        self._by_service: dict[str, int] = {}
        self._by_peer: dict[tuple[str, str], int] = {}
        self.total = 0
        # Called after every release while someone waits for a free slot (a refused
        # wait = yes request, pyxinetd.suspend); None otherwise.
        self.on_release: Callable[[], None] | None = None

    def add(self, service_id: str, peer: str) -> None:
        service_id = service_id.lower()
        peer = _source(peer)
        by_service = self._by_service
        by_service[service_id] = by_service.get(service_id, 0) + 1
        by_peer = self._by_peer
        key = (service_id, peer)
        by_peer[key] = by_peer.get(key, 0) + 1
        self.total += 1

    def remove(self, service_id: str, peer: str, *, released: bool = False) -> None:
        if not released:
            service_id = service_id.lower()
            self._decrement(self._by_service, service_id)
            self._decrement(self._by_peer, (service_id, _source(peer)))
        self.total -= 1
        if self.on_release is not None:
            self.on_release()

    def release(self, service_id: str, peer: str) -> None:
        """A server still running stops counting toward its service and peer (its
        service was removed); `remove(..., released=True)` ends it later."""
        service_id = service_id.lower()
        self._decrement(self._by_service, service_id)
        self._decrement(self._by_peer, (service_id, _source(peer)))
        if self.on_release is not None:
            self.on_release()

    @staticmethod
    def _decrement(counter: dict[K, int], key: K) -> None:
        # Drop zero entries so the counters never grow with the number of peers seen.
        count = counter.get(key, 0) - 1
        if count <= 0:
            counter.pop(key, None)
        else:
            counter[key] = count

    def of_service(self, service_id: str) -> int:
        return self._by_service.get(service_id.lower(), 0)

    def of_peer(self, service_id: str, peer: str) -> int:
        return self._by_peer.get((service_id.lower(), _source(peer)), 0)


def _source(peer: str) -> str:
    """The address `per_source` counts: an IPv4-mapped IPv6 peer as plain IPv4."""
    # A prefix test, not ipaddress: this runs on every connection. Peers are numeric
    # (pyxinetd.listener.peer_text), and the kernel writes the prefix in lower case.
    if peer.startswith("::ffff:") and "." in peer and ":" not in peer[7:]:
        return peer[7:]
    return peer


class ChildTable:
    """pid -> Child, with the occupancy counters kept in step."""

    def __init__(self) -> None:
        self._children: dict[int, Child] = {}
        self.occupancy = Occupancy()

    def add(self, child: Child) -> None:
        self._children[child.pid] = child
        self.occupancy.add(child.service.id, child.peer)

    def pop(self, pid: int) -> Child | None:
        child = self._children.pop(pid, None)
        if child is not None:
            self.occupancy.remove(child.service.id, child.peer, released=not child.counted)
        return child

    def release(self, child: Child) -> None:
        """`child` no longer counts toward its service: a reload removed the service,
        and a new service with the same id starts from zero, as in xinetd."""
        if child.counted and self._children.get(child.pid) is child:
            child.counted = False
            self.occupancy.release(child.service.id, child.peer)

    def get(self, pid: int) -> Child | None:
        return self._children.get(pid)

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Child]:
        return iter(list(self._children.values()))

    def of_service(self, service_id: str) -> list[Child]:
        return [c for c in self._children.values() if c.service.id == service_id]

    def rehome(self, moves: Mapping[int, ServiceConfig]) -> None:
        """A reload kept services (`moves`: id() of the old configuration -> the new
        one): their servers belong to the new ones now (their EXIT is logged with it),
        those a hosts.allow rule's options started as a copy of an old one too. The
        counters need no change (same id)."""
        for child in self._children.values():
            moved = child.service.moved(moves)
            if moved is not None:
                child.service = moved


def reap() -> Iterator[tuple[int, ExitStatus]]:
    """Yield (pid, status) for every exited child until none is left; never blocks."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, ExitStatus.decode(status)
