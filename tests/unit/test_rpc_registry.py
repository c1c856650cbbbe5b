"""pyxinetd.rpc.RpcRegistry against a real UDP 'portmapper' on 127.0.0.1 driven by the
same Loop (tests/unit/test_portmap.py's Responder)."""

from __future__ import annotations

import dataclasses
import io
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyxinetd.log import ProgramLog
from pyxinetd.loop import Loop
from pyxinetd.portmap import PortmapClient
from pyxinetd.rpc import Registration, RpcRegistry
from pyxinetd.service import ServiceRuntime
from tests.factories import make_service
from tests.unit.test_portmap import Responder, reply, run_until


@contextmanager
def portmapped(answer: Callable[[list[int]], bytes | None], program: io.StringIO | None = None,
               **options: int) -> Iterator[tuple[Loop, Responder, RpcRegistry]]:
    """A loop, a UDP portmapper on it answering with `answer(call)`, and a registry
    calling it (its program log to `program`); all closed afterwards."""
    loop = Loop()
    responder = Responder(loop, answer)
    registry = RpcRegistry(loop, ProgramLog(stream=program or io.StringIO()),
                           PortmapClient(loop, responder.address, interval=5.0), **options)
    try:
        yield loop, responder, registry
    finally:
        registry.close()
        responder.sock.close()
        loop.close()


def test_a_service_stopped_while_its_set_is_in_flight_logs_no_failed_registration(
) -> None:
    # The SET is refused once a reload has stopped the service: its `pmap_set failed`
    # is logged, but not `No RPC versions registered`, the line of a service that
    # cannot start.
    calls: list[list[int]] = []
    program = io.StringIO()
    rt = ServiceRuntime(make_service(name="rpcsvc", types=frozenset({"RPC"}),
                                     socket_type="dgram", wait=True,
                                     rpc_number=0x20000200, rpc_version=(1, 1)))
    with portmapped(lambda call: calls.append(call), program) as (loop, responder, registry), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        rt.sock = sock
        registry.follow(rt)
        run_until(loop, lambda: bool(calls))
        rt.sock = None      # stopped by a reload
        client = registry.client._sock
        assert client is not None
        responder.sock.sendto(reply(calls[0][0], 0), client.getsockname())
        run_until(loop, lambda: "pmap_set failed. service=rpcsvc" in program.getvalue())
        run_until(loop, lambda: registry.client.pending == 0)
        assert "No RPC versions registered" not in program.getvalue()
        assert registry.registration(rt) is None


def _rpc_runtime(program: int, versions: tuple[int, int]) -> ServiceRuntime:
    return ServiceRuntime(make_service(name="moving", types=frozenset({"RPC"}),
                                       rpc_number=program, rpc_version=versions))


def test_a_claim_whose_entry_a_withdrawn_claims_set_put_there_settles() -> None:
    # A service removed while its SET is unanswered and added again at the same (fixed)
    # port: the late TRUE registers exactly what the new claim wants, so the new claim
    # settles with it (no SET is due, and none is sent).
    calls: list[list[int]] = []
    settled: list[Registration | None] = []
    with portmapped(lambda call: calls.append(call)) as (loop, responder, registry):
        removed = registry.claim(_rpc_runtime(0x20000201, (1, 1)), 4711, None)
        run_until(loop, lambda: len(calls) == 1)
        registry.withdraw(removed)
        again = _rpc_runtime(0x20000201, (1, 1))
        registry.claim(again, 4711, settled.append)
        client = registry.client._sock
        assert client is not None
        responder.sock.sendto(reply(calls[0][0], 1), client.getsockname())
        run_until(loop, lambda: registry.client.pending == 0)
        assert settled == [Registration(0x20000201, 6, 4711, (1,))]
        assert len(calls) == 1


def test_the_window_bounds_the_calls_and_gives_free_slots_to_each_program_in_turn(
) -> None:
    # Window 2: program A's six versions take both slots; B's single version, due
    # while A's other four wait, gets the second slot freed, not the sixth.
    settled: list[Registration | None] = []
    in_flight: list[int] = []
    with portmapped(lambda call: reply(call[0], 1), window=2) as (loop, responder, registry):
        registry.claim(_rpc_runtime(0x20000202, (1, 6)), 4711, settled.append)
        registry.claim(_rpc_runtime(0x20000203, (1, 1)), 4712, settled.append)

        def both_settled() -> bool:
            in_flight.append(registry.client.pending)
            return len(settled) == 2
        run_until(loop, both_settled)
        assert max(in_flight) == 2
        assert [(call[10], call[11]) for call in responder.calls] == [
            (0x20000202, 1), (0x20000202, 2), (0x20000202, 3), (0x20000203, 1),
            (0x20000202, 4), (0x20000202, 5), (0x20000202, 6)]
        assert sorted(settled, key=lambda r: r.program if r else 0) == [
            Registration(0x20000202, 6, 4711, (1, 2, 3, 4, 5, 6)),
            Registration(0x20000203, 6, 4712, (1,))]


def test_versions_a_narrowed_range_dropped_count_as_registered_again_only_once_set_again(
) -> None:
    # 1-6 registered; a reload narrows the range to 2-3 (1, 4-6 UNSET), another widens
    # it back to 1-6 while the portmapper does not answer: until the SETs of 1 and 4-6
    # are answered, only 2-3 are registered, and what the claim keeps of the narrowed
    # range is its versions alone.
    answering = [True]
    settled: list[Registration | None] = []
    rt = _rpc_runtime(0x20000204, (1, 6))
    with portmapped(lambda call: reply(call[0], 1) if answering[0] else None) \
            as (loop, responder, registry):
        claim = registry.claim(rt, 4711, settled.append)
        run_until(loop, lambda: bool(settled))
        assert registry.registration(rt) == Registration(0x20000204, 6, 4711,
                                                         (1, 2, 3, 4, 5, 6))
        old = rt.config
        rt.config = dataclasses.replace(old, rpc_version=(2, 3))
        registry.reregister(rt, old)
        run_until(loop, lambda: registry.client.pending == 0)
        assert [(call[5], call[11]) for call in responder.calls[6:]] == [
            (2, 1), (2, 4), (2, 5), (2, 6)]
        assert registry.registration(rt) == Registration(0x20000204, 6, 4711, (2, 3))
        assert sorted(claim.outcome) == [2, 3]
        answering[0] = False
        old = rt.config
        rt.config = dataclasses.replace(old, rpc_version=(1, 6))
        registry.reregister(rt, old)
        run_until(loop, lambda: registry.client.pending == 4)
        assert registry.registration(rt) == Registration(0x20000204, 6, 4711, (2, 3))
