"""Run pyxinetd's command line with a daemon that holds back its `ready` report until a
file appears (GO_FILE, bounded by 30 s): a daemon slow to start, for a test that must
interrupt the start command while it waits. Everything else is the real program."""

from __future__ import annotations

import os
import sys
import time

from pyxinetd import daemonize
from pyxinetd.cli import main

_real_ready = daemonize.StartupReport.ready


def _held_ready(self: daemonize.StartupReport) -> None:
    deadline = time.monotonic() + 30.0
    while not os.path.exists(os.environ["GO_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    _real_ready(self)


daemonize.StartupReport.ready = _held_ready  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "pyxinetd"
    main()
