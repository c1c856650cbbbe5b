"""An aclexec check that never ran decides nothing: the request is refused.

A check that ran and failed (a non-zero status, or killed at its deadline) means its
rule does not apply, as Debian's libwrap has it: for a hosts.deny rule, the client is
let in. A check that never ran (the name resolver helper that runs it exited, could
not be started, or could not start the shell) is no such answer, and used to be taken
for one: a denying rule was skipped and the client served. Here the check itself ends
its helper (`kill -KILL $PPID`: the shell's parent is the helper), the one way to lose
the helper mid-check that needs no fault injected.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.daemon import Daemon, DaemonFactory, free_port, read_log, wait_until

TIMEOUT = 10.0


def start_guarded(daemons: DaemonFactory, tmp_path: Path, deny_rule: str
                  ) -> tuple[Daemon, int, Path]:
    """A daemon serving `guarded` (an exec'd /bin/echo, logged to services.log) under
    a hosts.deny of `deny_rule` and an empty hosts.allow: (daemon, port, service log)."""
    port = free_port()
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text(deny_rule + "\n")
    services = tmp_path / "services.log"
    conf = (f"service guarded\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = root\n\tserver = /bin/echo\n\tserver_args = served\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tlog_type = FILE {services}\n"
            f"\tlog_on_failure = HOST\n\tlog_on_success = HOST\n}}\n")
    daemon = daemons.start_config(conf, wrapper=[
        "env", f"PYXINETD_HOSTS_ALLOW={tmp_path / 'hosts.allow'}",
        f"PYXINETD_HOSTS_DENY={tmp_path / 'hosts.deny'}"])
    return daemon, port, services


def test_a_deny_rule_whose_check_lost_its_helper_refuses(daemons: DaemonFactory,
                                                         tmp_path: Path) -> None:
    daemon, port, services = start_guarded(daemons, tmp_path,
                                           "ALL: ALL: aclexec kill -KILL $PPID")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
        client.settimeout(TIMEOUT)
        assert client.recv(100) == b""
    daemon.wait_for_log(re.escape("WARNING: aclexec not run (the name resolver exited) "
                                  "(hosts.deny line 1) for guarded from 127.0.0.1: refused"))
    wait_until(lambda: "FAIL: guarded libwrap from=127.0.0.1" in read_log(services),
               what="FAIL: guarded libwrap")
    assert "START: guarded" not in read_log(services)
    assert "the rule does not apply" not in daemon.log()
