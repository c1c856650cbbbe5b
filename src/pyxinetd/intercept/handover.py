"""A client admitted under rules a reload has since replaced, judged again before it
reaches a server.

A stream client or datagram sender waiting for an intercepted service's next server
(pyxinetd.intercept.registry) was admitted by the rules of the service as it was then:
its verdict was asked before a reload, or it was held for a server of the service's
old socket that a reload replaced. Before it is handed to the service as it is now, it
goes through the steps 1-2 of a reload's recheck (pyxinetd.recheck: access_times, then
only_from/no_access with its own address, the name from the non-blocking resolver when
the lists need one), as the clients of a running intercepted server are at a reload.
"""

from __future__ import annotations

from collections.abc import Callable

from pyxinetd.access.lists import tie_text
from pyxinetd.config.model import ServiceConfig
from pyxinetd.intercept.common import Host
from pyxinetd.recheck import Recheck, Running, resolver_lookup


class Judgement:
    """One client judged again by `svc`'s rules: `passed()` or `failed(reason)` is
    called once the verdict is in, unless the judgement was dropped first."""

    def __init__(self, host: Host, svc: ServiceConfig, peer: str,
                 passed: Callable[[], None], failed: Callable[[str], None]) -> None:
        self.svc = svc
        self.dropped = False
        self._reason: str | None = None
        self._passed = passed
        self._failed = failed

        def tie(address: str) -> None:
            host.program.error("check_access", tie_text(svc, address))

        self._recheck = Recheck(svc, [Running(peer, 0.0, self._refused, self._pending)],
                                resolver_lookup(host.access.resolver), on_tie=tie,
                                instances=False, on_done=self._done)

    def start(self) -> None:
        self._recheck.start()

    def drop(self) -> None:
        """Shutdown: no verdict is wanted any more."""
        self.dropped = True
        self._recheck.cancel()

    def _pending(self) -> bool:
        return not self.dropped

    def _refused(self, reason: str) -> None:
        self._reason = reason

    def _done(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        if self._reason is None:
            self._passed()
        else:
            self._failed(self._reason)
