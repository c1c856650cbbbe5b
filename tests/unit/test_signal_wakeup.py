"""The wakeup socket's bytes are the record of the signals that arrived.

The interpreter writes a signal's number to the wakeup socket at once, from its C-level
handler, and runs the Python-level handler later, at some bytecode boundary of the main
thread. A signal whose byte the loop reads must be dispatched in that round whether or
not the Python-level handler has run yet: otherwise it waits for the next wakeup, which
may never come (a SIGUSR1 dump asked for on an idle daemon).
"""

from __future__ import annotations

import os
import signal

from pyxinetd.loop import Loop
from pyxinetd.signals import SignalWakeup


def test_the_byte_alone_dispatches_its_signal_in_arrival_order_coalesced() -> None:
    loop = Loop()
    done: list[str] = []
    wakeup = SignalWakeup(loop, {signal.SIGHUP: lambda: done.append("reload"),
                                 signal.SIGUSR1: lambda: done.append("dump")})
    wakeup.install()
    try:
        # What the interpreter's C-level handler writes, before any Python code runs.
        os.write(wakeup.fds()[1], bytes([signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1]))
        loop.call_later(5.0, lambda: None)     # bounds the wait if nothing is read
        loop.run_once()
        assert done == ["dump", "reload"]
        # A real signal goes the same way, once.
        os.kill(os.getpid(), signal.SIGHUP)
        loop.run_once()
        assert done == ["dump", "reload", "reload"]
    finally:
        wakeup.close()
        loop.close()
