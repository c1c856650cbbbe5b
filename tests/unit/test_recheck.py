"""pyxinetd.recheck: the order of the checks, name lookups that answer later, cancelling."""

from __future__ import annotations

import time
from collections.abc import Callable

from pyxinetd.config.addresses import parse_address as parse_token
from pyxinetd.config.model import AddressEntry
from pyxinetd.config.model import TimeWindow
from pyxinetd.recheck import NOT_LOOKED_UP, Name, Recheck, Running
from tests.factories import make_service


def parse_address(token: str) -> AddressEntry:
    (entry,) = parse_token(token, lambda name: None).entries
    return entry


class Server:
    def __init__(self, peer: str, started: float) -> None:
        self.peer, self.started = peer, started
        self.reason: str | None = None

    def running(self) -> Running:
        return Running(self.peer, self.started, self.end, lambda: self.reason is None)

    def end(self, reason: str) -> None:
        assert self.reason is None
        self.reason = reason


class Lookups:
    def __init__(self) -> None:
        self.pending: list[tuple[str, Callable[[Name], None]]] = []

    def __call__(self, peer: str, done: Callable[[Name], None]) -> None:
        self.pending.append((peer, done))


def run(svc: object, servers: list[Server], lookup: Lookups | None = None) -> Recheck:
    job = Recheck(svc, [s.running() for s in servers], lookup or Lookups())  # type: ignore[arg-type]
    job.start()
    return job


def test_address_then_instances_newest_first() -> None:
    svc = make_service(only_from=(parse_address("127.0.0.1"),), instances=1)
    servers = [Server("127.0.0.1", 1.0), Server("127.0.0.2", 2.0),
               Server("127.0.0.1", 3.0), Server("<no address>", 4.0)]
    job = run(svc, servers)
    assert job.done
    # The refused one does not count: of the three left, the two newest end.
    assert [s.reason for s in servers] == [None, "address", "instances", "instances"]


def test_time_window_ends_every_server() -> None:
    minute = time.localtime().tm_hour * 60 + time.localtime().tm_min
    start = (minute + 120) % 1440
    window = TimeWindow(start, min(start + 30, 1439))
    svc = make_service(access_times=(window,), instances=5)
    servers = [Server("127.0.0.1", 1.0), Server("<no address>", 2.0)]
    run(svc, servers)
    assert [s.reason for s in servers] == ["time", "time"]


def test_names_are_waited_for_before_the_instance_limit() -> None:
    svc = make_service(only_from=(parse_address("good.example"),), instances=1)
    servers = [Server("127.0.0.1", 1.0), Server("127.0.0.2", 2.0), Server("127.0.0.3", 3.0)]
    lookups = Lookups()
    job = run(svc, servers, lookups)
    assert [peer for peer, _ in lookups.pending] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert not job.done and all(s.reason is None for s in servers)
    answers = {"127.0.0.1": "good.example", "127.0.0.2": None, "127.0.0.3": "GOOD.example."}
    for peer, done in lookups.pending:
        done(answers[peer])
    assert job.done
    assert [s.reason for s in servers] == [None, "address", "instances"]


def test_cancelled_recheck_ends_nothing_more() -> None:
    svc = make_service(only_from=(parse_address("good.example"),), instances=0)
    servers = [Server("127.0.0.1", 1.0)]
    lookups = Lookups()
    job = run(svc, servers, lookups)
    job.cancel()
    lookups.pending[0][1](None)
    assert servers[0].reason is None


def test_nothing_to_check_ends_nothing() -> None:
    servers = [Server("127.0.0.1", 1.0), Server("127.0.0.2", 2.0)]
    assert run(make_service(), servers).done
    assert all(s.reason is None for s in servers)


def test_a_name_never_looked_up_fails_a_server_only_where_a_name_would_decide() -> None:
    # A lookup that never ran (the resolver helper's queue stayed full) is no name the
    # DNS lacks: the no_access name would have ended the first server; the second
    # one's verdict is the same whatever its name (its exact address in only_from
    # outranks any domain), and the third is refused by address whatever its name.
    for lists, reason in (
            ({"no_access": (parse_address("bad.example"),)}, "address"),
            ({"only_from": (parse_address("127.0.0.1"),),
              "no_access": (parse_address(".bad.example"),)}, None),
            ({"only_from": (parse_address("good.example"),),
              "no_access": (parse_address("127.0.0.1"),)}, "address")):
        servers = [Server("127.0.0.1", 1.0)]
        lookups = Lookups()
        job = run(make_service(**lists), servers, lookups)
        for _, done in lookups.pending:
            done(NOT_LOOKED_UP)
        assert job.done
        assert [s.reason for s in servers] == [reason], lists
