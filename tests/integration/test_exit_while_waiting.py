"""SIGTERM while a hosts.allow verdict (an aclexec command held by a FIFO) or a client's
name (a DNS that never answers) is awaited: the daemon exits, and what it abandons
acts for nobody. Before, closing the name resolver answered every check as failed and
every lookup as 'name unknown', as at their deadlines: an INFO line said the aclexec
command 'did not finish within 10 s (killed)', the rule it hands over to was applied
at exit (a 'libwrap refused connection' line for a client nobody refused), and a
reload's recheck ended a running server."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.daemon import HELPERS, DaemonFactory, free_port, namespace_problem, read_log, \
    run_scenario, wait_until
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


@pytest.mark.skipif(namespace_problem("ip") is not None, reason=str(namespace_problem("ip")))
def test_sigterm_while_a_recheck_awaits_a_name_leaves_the_server_running(
        tmp_path: Path) -> None:
    # A reload's recheck of a running server waits for its client's name (the DNS
    # never answers). Before, the exit answered the lookup 'name unknown': the recheck
    # refused the client and the server got SIGTERM from a daemon that leaves its
    # servers running when it exits.
    result = run_scenario(HELPERS / "recheck_exit_scenario.py", tmp_path,
                          sys.executable, "-m", "pyxinetd")
    assert result["status"] == 0, result["log"]
    assert result["server_runs"], result["log"]
    assert "no longer allowed" not in result["log"]
    assert "Sending signal" not in result["log"]
