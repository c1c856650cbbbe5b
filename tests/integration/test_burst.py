"""2,000 connections leave no zombie and no leaked descriptor in the daemon."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, open_fds, wait_until
from tests.integration.test_dispatch import connect, read_all
from tests.factories import make_service

CONNECTIONS = 2000
CLIENTS = 4


def test_burst_leaves_no_zombie_and_no_leaked_fd(daemons: DaemonFactory) -> None:
    port = free_port()
    svc = make_service(name="burst", port=port, server="/bin/echo",
                       server_argv=("echo", "b"), cps=(100_000, 1))
    daemon = daemons.start_services([svc])
    with connect(port) as conn:
        assert read_all(conn) == b"b\n"
    wait_until(lambda: not daemon.children(), what="the warm-up server to be reaped")
    before = open_fds(daemon.pid)

    errors: list[BaseException] = []
    per_client = CONNECTIONS // CLIENTS

    def client() -> None:
        try:
            for _ in range(per_client):
                with connect(port) as c:
                    assert read_all(c) == b"b\n"
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors[:3]
    wait_until(lambda: not daemon.children(), timeout=30, what="every server to be reaped")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
    assert open_fds(daemon.pid) == before
    assert daemon.proc.poll() is None


IDLE_SCRIPT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from tests.factories import make_config, make_service
from pyxinetd.master import Master, MasterOptions
from pyxinetd.log import ProgramLog
services = [make_service(name="idle", port=0),
            make_service(name="idle2", port=0, cps=(1, 1))]
master = Master(make_config(*services), MasterOptions(dontfork=True),
                program_log=ProgramLog.to_file(sys.argv[2]))
master.start()
assert master.started and master.available_count() == 2
assert master.loop.timers.next_deadline() is None, master.loop.timers.next_deadline()
master.shutdown()
print("idle ok")
"""


def test_idle_master_has_no_timer_pending(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", IDLE_SCRIPT, root, str(tmp_path / "log")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "idle ok" in out.stdout
