"""Every signal that arrives is dispatched once its handler has recorded it.

The interpreter writes a signal's number to the wakeup socket at once, from its C-level
handler, and runs the Python-level handler later, at some bytecode boundary of the main
thread, possibly after the loop read the byte. The record must still be dispatched without
waiting for another signal (a SIGUSR1 dump asked for on an idle daemon). And the socket
holds only a few hundred bytes: a signal whose byte did not fit must not be lost (a
SIGTERM after a burst of SIGUSR1 that never stopped the daemon).
"""

from __future__ import annotations

import os
import signal

from pyxinetd.loop import Loop
from pyxinetd.signals import SignalWakeup


def test_a_record_made_after_its_byte_was_read_is_dispatched_in_arrival_order() -> None:
    loop = Loop()
    done: list[str] = []
    wakeup = SignalWakeup(loop, {signal.SIGHUP: lambda: done.append("reload"),
                                 signal.SIGUSR1: lambda: done.append("dump")})
    wakeup.install()
    try:
        # What the interpreter's C-level handler writes, before any Python code runs;
        # the loop reads it before the Python-level handlers have recorded anything.
        os.write(wakeup.fds()[1], bytes([signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1]))
        loop.call_later(5.0, lambda: None)     # bounds the wait if nothing is read
        loop.run_once()
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler)
        handler(signal.SIGHUP, None)            # the late Python-level handlers
        handler(signal.SIGUSR1, None)
        for _ in range(2):
            if len(done) < 2:
                loop.call_later(5.0, lambda: None)
                loop.run_once()
        assert done == ["dump", "reload"]
        # A real signal goes the same way, once.
        os.kill(os.getpid(), signal.SIGHUP)
        loop.run_once()
        assert done == ["dump", "reload", "reload"]
    finally:
        wakeup.close()
        loop.close()


def test_a_signal_after_a_burst_that_filled_the_socket_is_not_lost() -> None:
    loop = Loop()
    done: list[str] = []
    wakeup = SignalWakeup(loop, {signal.SIGUSR1: lambda: done.append("dump"),
                                 signal.SIGTERM: lambda: done.append("exit")})
    wakeup.install()
    try:
        # The loop is busy meanwhile: every byte stays in the socket, which fills.
        for _ in range(2000):
            os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        loop.call_later(5.0, lambda: None)     # bounds the wait if nothing is read
        loop.run_once()
        assert done == ["dump", "exit"]
    finally:
        wakeup.close()
        loop.close()
