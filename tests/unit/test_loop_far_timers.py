"""A timer due far in the future (`-cc 2147483647`, a cps pause of a month) must not end
the loop: the selector takes at most about 24.8 days (epoll's timeout is a C int of
milliseconds), so the loop never asks it for more."""

from __future__ import annotations

import socket

import pytest

from pyxinetd.loop import READ, Loop


@pytest.mark.parametrize("delay", [2_147_484.0, 1e10, 1e11, 1e300])
def test_a_timer_far_away_does_not_break_a_turn(delay: float) -> None:
    loop = Loop()
    reader, writer = socket.socketpair()
    fired: list[str] = []
    seen: list[int] = []
    loop.call_later(delay, lambda: fired.append("far"))
    loop.register(reader, READ, seen.append)
    writer.send(b"x")   # the turn ends at once, on this event
    try:
        loop.run_once()
        assert seen == [READ]
        assert fired == []
    finally:
        reader.close()
        writer.close()
        loop.close()


def test_a_far_timer_still_fires_when_its_time_comes() -> None:
    now = [0.0]
    loop = Loop(clock=lambda: now[0])
    fired: list[str] = []
    loop.call_later(1e10, lambda: fired.append("far"))
    now[0] = 1e10 + 1   # the clock jumps past the deadline
    try:
        loop.run_once()
        assert fired == ["far"]
    finally:
        loop.close()
