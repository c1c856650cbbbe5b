"""The master's reports on its own state: the SIGUSR1 state dump (reference §6.4) and
the SIGABRT consistency check, also run every N seconds with `-cc N`.

As xinetd's internals.c: they read the master's tables and only log or write the dump
file; nothing here changes what the daemon serves.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pyxinetd import dump

if TYPE_CHECKING:
    from pyxinetd.master import Master


class Internals:
    """The dump and the consistency check of one master."""

    def __init__(self, master: Master, version: str) -> None:
        self.master = master
        self.version = version
        # A relative path means the folder the daemon was started in, as the log line
        # that names it suggests: the command line resolves it before detaching.
        self.dump_path = master.options.dump_file or os.path.abspath(dump.dump_path())

    def dump(self) -> None:
        """SIGUSR1: append the state dump to the dump file (reference §6.4)."""
        m = self.master
        if m.stopping:
            return
        path = self.dump_path
        text = dump.render(m.config, m.services, m.children,
                           m.dispatcher.session_count(), self._socket_fds(),
                           version=self.version, process_limit=m.options.process_limit,
                           retries=m.dispatcher.retries.held())
        problem = dump.append(path, text)
        if problem is not None:
            m.program.error("dump_internal_state", problem)
            return
        m.program.info("dump_internal_state", f"generated state dump in file {path}")

    def _socket_fds(self) -> list[int]:
        """Descriptors the loop watches for requests: listeners and the signal wakeup."""
        m = self.master
        fds = [rt.sock.fileno() for rt in m.services
               if rt.sock is not None and rt.wants_events]
        return fds + [m.signals.fds()[0]]

    def consistency_check(self, periodic: bool = False) -> None:
        """SIGABRT (and -cc N): check the counters; a periodic pass is only logged with -d,
        as in xinetd, so `-cc 60` does not add a line to the log every minute."""
        m = self.master
        if m.stopping:
            return
        errors = 0
        occupancy = m.children.occupancy
        if occupancy.total != len(m.children) + m.dispatcher.session_count():
            errors += 1
            m.program.error("consistency_check",
                            f"running servers: counted {occupancy.total}, "
                            f"table {len(m.children)}, "
                            f"sessions {m.dispatcher.session_count()}")
        if errors:
            m.program.error("consistency_check", f"Consistency check detected {errors} errors")
        elif not periodic or m.options.debug:
            m.program.info("consistency_check", "Consistency check passed")

    def schedule_consistency_check(self) -> None:
        """`-cc N`: a periodic check every N seconds, from a timer."""
        interval = self.master.options.cc_interval
        assert interval is not None
        loop = self.master.loop

        def tick() -> None:
            self.consistency_check(periodic=True)
            loop.call_later(interval, tick)

        loop.call_later(interval, tick)
