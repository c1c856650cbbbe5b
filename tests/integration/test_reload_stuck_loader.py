"""A reload whose configuration load never finishes is given up after a deadline.

The loader child blocks as long as the main file (or an `include`) is a FIFO nobody
writes, or sits on a hung network file system. The daemon keeps serving meanwhile,
but every later SIGHUP only asked for one more load after that one, so no reload could
ever happen again, and nothing said so. Past $PYXINETD_LOAD_TIMEOUT the loader is
killed, the failure is logged, and the next SIGHUP loads afresh.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_until
from tests.integration.test_reload import conf_path, defaults, greeting, replace_conf, service


def test_a_stuck_load_is_killed_and_the_next_reload_works(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_LOAD_TIMEOUT", "1")
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("a", port, "OLD"))
    fifo = tmp_path / "stuck.fifo"
    os.mkfifo(fifo)
    fifo.replace(conf_path(daemon))
    daemon.signal(signal.SIGHUP)
    # Two SIGHUPs sent back to back may be recorded as one; the second is sent once
    # the first load has started. Asked for during the stuck load (or just after it,
    # on the same FIFO): a second load, stuck as well.
    daemon.wait_for_log("Starting reconfiguration")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("reconfiguration failed", count=2)
    replace_conf(daemon, defaults(tmp_path) + service("a", port, "NEW"))
    daemon.signal(signal.SIGHUP)
    log = daemon.wait_for_log("Reconfigured: ")
    assert log.count("ERROR: the configuration loader gave no result within 1 s (killed); "
                     "the running configuration is kept") == 2
    assert greeting(port).startswith("NEW")
    assert "unknown child" not in log
    wait_until(lambda: not daemon.children(), what="the loader to be reaped")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
