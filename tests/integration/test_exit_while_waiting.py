"""SIGTERM while a request waits for its hosts.allow verdict (an aclexec command held by
a FIFO): the daemon exits, and the check it abandons acts for nobody. Before, closing
the name resolver answered the check as if it had timed out: an INFO line said the
command 'did not finish within 10 s (killed)', and the rule it hands over to was
applied at exit (here a hosts.deny rule: a 'libwrap refused connection' line for a
client nobody refused, and its spawn command sent to a resolver helper started again)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, read_log, wait_until
from tests.integration.test_intercept import closed, gated_aclexec, tcp_from
from tests.integration.test_reload_pending_verdicts import config


def command_reading(gate: Path) -> int | None:
    """The gate's write end once the aclexec command reads it (its verdict awaited)."""
    try:
        return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:     # ENXIO: the command has not opened it yet
        return None


def test_sigterm_while_an_aclexec_verdict_is_awaited_ends_the_check_without_a_verdict(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = gated_aclexec(tmp_path, monkeypatch, "127.0.0.5")
    # What a failed aclexec hands over to: hosts.deny's rule for the client.
    (tmp_path / "hosts.deny").write_text(
        f"in.icept: 127.0.0.5: spawn echo %a > {tmp_path / 'spawned'}\n")
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port))
    with tcp_from("127.0.0.5", port) as waiting:
        reader = wait_until(lambda: command_reading(gate))
        try:
            daemon.signal(signal.SIGTERM)
            assert daemon.wait_exit() == 0
        finally:
            os.close(reader)
        assert closed(waiting)
    log = daemon.log()
    assert "Exiting..." in log
    assert "aclexec" not in log, log
    assert "libwrap refused" not in log, log
    assert "START: plain" not in read_log(tmp_path / "services.log")
