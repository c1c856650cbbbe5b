"""A bug in one handler, timer or callback is reported and the loop goes on serving."""

from __future__ import annotations

import signal
import socket

import pytest

from pyxinetd.log import internal_error_text
from pyxinetd.loop import READ, Loop
from pyxinetd.signals import SignalWakeup


def _divide_by_zero() -> None:
    print(1 // 0)


def _recording_loop() -> tuple[Loop, list[tuple[str, Exception]]]:
    loop = Loop()
    errors: list[tuple[str, Exception]] = []
    loop.on_error = lambda what, exc: errors.append((what, exc))
    return loop, errors


def test_failing_handler_is_reported_unwatched_and_others_still_run() -> None:
    loop, errors = _recording_loop()
    bad_r, bad_w = socket.socketpair()
    good_r, good_w = socket.socketpair()
    served: list[bytes] = []

    def bad(mask: int) -> None:
        raise RuntimeError("boom")  # before reading: readiness stays

    def good(mask: int) -> None:
        served.append(good_r.recv(100))

    try:
        loop.register(bad_r, READ, bad)
        loop.register(good_r, READ, good)
        bad_w.send(b"x")
        good_w.send(b"first")
        loop.run_once()
        assert [what for what, _ in errors] == [
            f"the handler of descriptor {bad_r.fileno()} (no longer watched)"]
        assert isinstance(errors[0][1], RuntimeError)
        assert not loop.is_registered(bad_r)
        assert served == [b"first"]
        # The unread byte no longer wakes the loop; the healthy socket still does.
        good_w.send(b"second")
        loop.run_once()
        assert served == [b"first", b"second"] and len(errors) == 1
    finally:
        for s in (bad_r, bad_w, good_r, good_w):
            s.close()
        loop.close()


def test_failing_timer_and_callback_are_reported_and_the_rest_run() -> None:
    loop, errors = _recording_loop()
    ran: list[str] = []

    def fail() -> None:
        raise ValueError("timer bug")

    loop.call_later(0, fail)
    loop.call_later(0, lambda: ran.append("timer"))
    loop.call_soon(_divide_by_zero)
    loop.call_soon(lambda: ran.append("soon"))
    loop.run_once()
    assert ran == ["timer", "soon"]
    assert [what for what, _ in errors] == ["a timer", "a callback"]
    loop.close()


def test_without_a_hook_the_exception_propagates() -> None:
    loop = Loop()
    loop.call_later(0, _divide_by_zero)
    with pytest.raises(ZeroDivisionError):
        loop.run_once()
    loop.close()


def test_failing_signal_action_keeps_the_wakeup_socket_and_the_other_actions() -> None:
    loop, errors = _recording_loop()
    done: list[str] = []

    def reload() -> None:
        raise KeyError("reload bug")

    wakeup = SignalWakeup(loop, {signal.SIGHUP: reload,
                                 signal.SIGUSR1: lambda: done.append("dump")})
    rsock, _ = wakeup.fds()
    loop.register(rsock, READ, wakeup._on_readable)
    try:
        for _ in range(2):
            wakeup.inject(signal.SIGHUP)
            wakeup.inject(signal.SIGUSR1)
            loop.run_once()
        assert done == ["dump", "dump"]
        assert [what for what, _ in errors] == ["the action for SIGHUP"] * 2
        assert loop.is_registered(rsock)
    finally:
        loop.unregister(rsock)
        wakeup.close()
        loop.close()


def test_internal_error_text_names_the_innermost_pyxinetd_frame() -> None:
    loop = Loop()
    try:
        loop.unregister(-5)  # harmless: a no-op for unknown descriptors
        loop.set_events(-1, READ, lambda mask: None)
    except ValueError as exc:
        text = internal_error_text("a timer", exc)
    else:
        pytest.fail("set_events on a negative descriptor must raise")
    finally:
        loop.close()
    assert text.startswith("internal error in a timer: ValueError: ")
    assert "(loop.py:" in text and text.endswith("; serving goes on")
