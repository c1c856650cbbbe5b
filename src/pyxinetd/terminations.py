"""Ending the servers a reload lets go: SIGTERM now, SIGKILL after a grace period.

The servers of a removed service, the `wait = yes` servers holding a kept service's old
socket, and the running servers a recheck no longer allows (pyxinetd.reconfig) get
SIGTERM at once; those not reaped once $PYXINETD_KILL_GRACE seconds (default 3) have
passed get SIGKILL from a timer, so the loop never waits. xinetd instead sends SIGKILL at
once to external servers and blocks about 0.5 s per server. A daemon that exits within
the grace period sends the SIGKILL then (`kill_now`): the timer would never run, and a
server that ignores SIGTERM would outlive a decision already taken.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

from pyxinetd.children import Child

if TYPE_CHECKING:
    from pyxinetd.master import Master

# Seconds between SIGTERM and SIGKILL for the servers of a removed service.
KILL_GRACE_ENV = "PYXINETD_KILL_GRACE"
DEFAULT_KILL_GRACE = 3.0
MAX_KILL_GRACE = 3600.0


def kill_grace(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """The SIGTERM -> SIGKILL delay in seconds, from $PYXINETD_KILL_GRACE."""
    try:
        value = float(environ.get(KILL_GRACE_ENV, DEFAULT_KILL_GRACE))
    except ValueError:
        return DEFAULT_KILL_GRACE
    if value != value:  # NaN
        return DEFAULT_KILL_GRACE
    return max(0.0, min(value, MAX_KILL_GRACE))


class Terminations:
    """The servers sent SIGTERM by the reloads of one master, until their SIGKILL timer."""

    def __init__(self, master: Master) -> None:
        self.master = master
        # Servers sent SIGTERM and not yet past their SIGKILL timer, by pid.
        self._terminating: dict[int, Child] = {}

    def terminate(self, children: list[Child]) -> None:
        """SIGTERM now; SIGKILL after the grace period to those not reaped by then.

        A server an earlier reload is already ending (a later reload drops its
        service again) is left to the SIGKILL timer it has: a second SIGTERM means
        "at once" to many servers, and the reload has nothing new to tell it."""
        children = [child for child in children if not self.is_terminating(child)]
        if not children:
            return
        for child in children:
            self._terminating[child.pid] = child
            self._send(child, signal.SIGTERM)
        self.master.loop.call_later(kill_grace(), lambda: self._kill_survivors(children))

    def is_terminating(self, child: Child) -> bool:
        return self._terminating.get(child.pid) is child

    def kill_now(self) -> None:
        """The daemon exits: SIGKILL every server still within its grace period."""
        pending = list(self._terminating.values())
        self._kill_survivors(pending)

    def _kill_survivors(self, children: list[Child]) -> None:
        for child in children:
            if self._terminating.get(child.pid) is child:
                del self._terminating[child.pid]
            # Still our child (not reaped): the pid cannot have been reused.
            if self.master.children.get(child.pid) is child:
                self._send(child, signal.SIGKILL)

    def _send(self, child: Child, signum: int) -> None:
        self.master.program.warning(
            "terminate_servers",
            f"Sending signal {int(signum)} to {child.service.id} server {child.pid}")
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass
