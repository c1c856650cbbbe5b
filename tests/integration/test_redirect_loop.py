"""A redirect whose target leads back to its own service: its connections are closed
with an error line instead of relayed to the daemon again and again, and every other
service keeps serving. Real daemon, real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, without_ids_ignored
from tests.factories import service_text

TIMEOUT = 10.0


def relay(name: str, port: int, target: int, bind: str = "") -> str:
    bound = {"bind": bind} if bind else {}
    return service_text(name, type="UNLISTED", socket_type="stream", wait="no", user="root",
                        port=port, **bound, redirect=f"127.0.0.1 {target}", cps="0 0")


def echo(port: int) -> str:
    return service_text("echo", type="INTERNAL UNLISTED", socket_type="stream", wait="no",
                        port=port, bind="127.0.0.1")


def ended_at_once(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
        return client.recv(100) == b""


def test_loops_are_named_at_start_and_their_connections_closed(
        daemons: DaemonFactory) -> None:
    me, a, b, echo_port, into_echo = (free_port() for _ in range(5))
    daemon = daemons.start_config(relay("me", me, me) + relay("a", a, b)
                                  + relay("b", b, a, bind="127.0.0.1")
                                  + relay("fine", into_echo, echo_port) + echo(echo_port))
    log = daemon.log()
    assert f"ERROR: me: redirect target leads back to this service (me -> me)" in log
    assert "ERROR: a: redirect target leads back to this service (a -> b -> a)" in log
    assert "ERROR: b: redirect target leads back to this service (b -> a -> b)" in log
    # A chain that ends at a service is no loop.
    assert "fine:" not in without_ids_ignored(log)
    fds = len(os.listdir(f"/proc/{daemon.pid}/fd"))
    for _ in range(20):
        assert ended_at_once(me)
        assert ended_at_once(a)
    daemon.wait_for_log(r"can't connect to remote host 127\.0\.0\.1: redirect loop "
                        r"\(me -> me\)", TIMEOUT)
    daemon.wait_for_log(r"can't connect to remote host 127\.0\.0\.1: redirect loop "
                        r"\(a -> b -> a\)", TIMEOUT)
    # Nothing held: no chain of relays was built.
    assert len(os.listdir(f"/proc/{daemon.pid}/fd")) == fds
    with socket.create_connection(("127.0.0.1", into_echo), timeout=TIMEOUT) as client:
        client.sendall(b"through")
        assert client.recv(100) == b"through"


def test_check_reports_the_loops_the_daemon_would_report(tmp_path: Path) -> None:
    # `pyxinetd check` names each loop at its service's line, as an error (the service
    # closes every connection), and leaves a chain that ends at a service alone.
    me, a, b, echo_port, into_echo = (free_port() for _ in range(5))
    conf = tmp_path / "xinetd.conf"
    conf.write_text(relay("me", me, me) + relay("a", a, b) + relay("b", b, a)
                    + relay("fine", into_echo, echo_port) + echo(echo_port))
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    lines = conf.read_text().splitlines()
    at = {name: lines.index(f"service {name}") + 1 for name in ("me", "a", "b")}
    assert errors == [
        f"{conf}:{at['me']}: error: me: redirect target leads back to this service (me -> me)"
        ": its connections are closed, not relayed to this daemon again until it runs out "
        "of descriptors",
        f"{conf}:{at['a']}: error: a: redirect target leads back to this service "
        "(a -> b -> a): its connections are closed, not relayed to this daemon again "
        "until it runs out of descriptors",
        f"{conf}:{at['b']}: error: b: redirect target leads back to this service "
        "(b -> a -> b): its connections are closed, not relayed to this daemon again "
        "until it runs out of descriptors",
    ]
