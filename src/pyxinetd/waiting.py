"""Requests admitted by the limits that wait for something before their server starts.

A request waits while its client's name is looked up or an aclexec check runs (the
access checks, pyxinetd.access.gate), or while a PEERENV server waits for its client's
name. xinetd forks first and checks in the child, which counts as a running server
from the start; here the request holds its slot of `instances`, `per_source` and
`-limit` until it goes on (its server or session then counts instead) or is refused.
A reload that removes its service drops it, as it ends that service's servers: the
connection is closed and nothing is started.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyxinetd.children import Occupancy
from pyxinetd.config.model import ServiceConfig


@dataclass
class _Request:
    service: ServiceConfig
    peer: str
    drop: Callable[[], None]


class Waiting:
    def __init__(self, occupancy: Occupancy) -> None:
        self._occupancy = occupancy
        self._requests: dict[int, _Request] = {}
        self._keys = itertools.count(1)

    def hold(self, svc: ServiceConfig, peer: str, drop: Callable[[], None]
             ) -> Callable[[], bool]:
        """Hold `svc`'s slot for `peer`. Returns `resume`, to call when the wait ends:
        it frees the slot and answers whether the request may go on; False when a
        reload removed its service meanwhile (then `drop` has been called)."""
        key = next(self._keys)
        self._requests[key] = _Request(svc, peer, drop)
        self._occupancy.add(svc.id, peer)

        def resume() -> bool:
            request = self._requests.pop(key, None)
            if request is None:
                return False
            self._occupancy.remove(request.service.id, request.peer)
            return True
        return resume

    def __len__(self) -> int:
        return len(self._requests)

    def rehome(self, moves: Mapping[int, ServiceConfig]) -> None:
        """A reload kept services (`moves`, ServiceConfig.moved): their waiting
        requests count toward the new ones."""
        for request in self._requests.values():
            moved = request.service.moved(moves)
            if moved is not None:
                request.service = moved

    def cancel(self, selected: Callable[[ServiceConfig], bool]) -> int:
        """Drop the requests of the services `selected` picks; returns how many."""
        doomed = [key for key, r in self._requests.items() if selected(r.service)]
        for key in doomed:
            request = self._requests.pop(key)
            self._occupancy.remove(request.service.id, request.peer)
            request.drop()
        return len(doomed)
