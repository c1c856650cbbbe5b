"""A bind still being retried, abandoned (shutdown, or a reload replaced its service)."""

from __future__ import annotations

import socket

from pyxinetd.listener import Binder
from pyxinetd.loop import Loop
from tests.factories import make_service


def test_a_cancelled_binder_tries_no_more_and_reports_nothing() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        loop = Loop()
        lines: list[str] = []
        outcomes: list[str] = []
        try:
            binder = Binder(loop, make_service(name="late", port=port),
                            lambda sock: outcomes.append("bound"),
                            lambda: outcomes.append("failed"), lines.append, delay=0.0)
            binder.start()
            assert lines == ["bind failed (Address already in use (errno = 98)). "
                             "service = late", "bind retry attempt 1"]
            binder.cancel()
            # A timer due after the retry: once it has run, so would have the retry.
            later: list[bool] = []
            loop.call_later(0.0, lambda: later.append(True))
            for _ in range(20):
                if later:
                    break
                loop.run_once()
            assert later
            assert lines == ["bind failed (Address already in use (errno = 98)). "
                             "service = late", "bind retry attempt 1"]
            assert outcomes == []
        finally:
            loop.close()
