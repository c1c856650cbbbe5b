"""A daemon started by the interpreter's bare name with no PATH in its environment
(`env -i`, a minimal init's run script): Python cannot tell its own path then
(sys.executable is empty), and the name resolver helper, started from that path, failed
with a ValueError on every connection whose checks need the client's host name: each
was reset. pyxinetd.__main__ takes the path from the kernel instead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.daemon import DaemonFactory, free_port, wait_until

CONF = """service hello
{{
    type = UNLISTED
    port = {port}
    bind = 127.0.0.1
    socket_type = stream
    wait = no
    user = root
    server = /bin/echo
    server_args = hello
}}
"""


def test_a_check_by_host_name_is_served(daemons: DaemonFactory) -> None:
    tmp = daemons.tmp_path
    # `localhost` is a name: the helper must look 127.0.0.1 up.
    (tmp / "hosts.allow").write_text("echo: localhost\n")
    (tmp / "hosts.deny").write_text("echo: ALL\n")
    port = free_port()
    wrapper = ["env", "-i", f"PYXINETD_HOSTS_ALLOW={tmp / 'hosts.allow'}",
               f"PYXINETD_HOSTS_DENY={tmp / 'hosts.deny'}",
               f"PYXINETD_DUMP_FILE={tmp / 'dump'}",
               # The checkout under test (conftest.py), not the installed package.
               f"PYTHONPATH={os.environ['PYTHONPATH']}",
               # argv[0] a bare name and no PATH: sys.executable comes out empty.
               "bash", "-c", 'exec -a python3 "$0" "$@"']
    daemon = daemons.start_config(CONF.format(port=port), wrapper=wrapper)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        reply = b""
        while chunk := conn.recv(100):
            reply += chunk
    assert reply == b"hello\n", daemon.log()
    assert "internal error" not in daemon.log() and "name resolver" not in daemon.log()


def test_the_bare_name_case_leaves_sys_executable_empty() -> None:
    # The premise of the test above, on this interpreter.
    out = subprocess.run(["env", "-i", "bash", "-c", 'exec -a python3 "$0" "$@"',
                          sys.executable, "-S", "-c", "import sys; print(repr(sys.executable))"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "''"
