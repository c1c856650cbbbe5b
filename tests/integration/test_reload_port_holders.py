"""A reload that rebinds the port a running wait = yes server still holds.

An external `wait = yes` server owns the service's listening socket. When a reload
replaces that socket (the service is removed and added again with a different `wait`,
or its `bind` or socket flags change), the server is terminated, but the port stays
taken until it is gone: binding the new socket at once failed every retry and left the
service deactivated. xinetd kills the server and pauses before binding, so the new
socket is bound there; here the bind waits for the server's exit instead.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_reload import defaults, greeting, reload, replace_conf, service

WAIT_SERVER = {"wait": "yes"}


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "0.5")


@pytest.mark.parametrize("change", [
    {"wait": "no"},                                    # removed and added again
    {"wait": "yes", "bind": "0.0.0.0"},                # the socket changes
    {"wait": "yes", "flags": "KEEPALIVE"},
])
@pytest.mark.parametrize("server_words", [("wait", "hold"), ("wait", "hold", "ignore-term")])
def test_the_new_socket_is_bound_once_the_holder_is_gone(
        daemons: DaemonFactory, tmp_path: Path, change: dict[str, str],
        server_words: tuple[str, ...]) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path)
                                  + service("w", port, "OLD", *server_words, **WAIT_SERVER))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as held:
        held.settimeout(10)
        assert held.recv(100).startswith(b"OLD")
        words = ("wait",) if change["wait"] == "yes" else ()
        log = reload(daemon, defaults(tmp_path) + service("w", port, "NEW", *words, **change), 1)
    assert "failed to start" not in log and "bind failed" not in log
    assert "Reconfigured: " in log
    assert greeting(port).startswith("NEW")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
    assert daemon.proc.poll() is None


@contextlib.contextmanager
def old_server_held(daemons: DaemonFactory, tmp_path: Path, port: int) -> Iterator[Daemon]:
    """A daemon whose wait = yes service `w` on `port` has its server (greeting OLD,
    ignoring SIGTERM) busy with a client held open for the duration."""
    daemon = daemons.start_config(defaults(tmp_path) + service(
        "w", port, "OLD", "wait", "hold", "ignore-term", wait="yes"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as held:
        held.settimeout(10)
        assert held.recv(100).startswith(b"OLD")
        yield daemon


def test_a_reload_during_the_wait_binds_the_last_configuration(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The service changes again while its new socket still waits for the old server
    # (which only SIGKILL ends, after the grace period): the last configuration is
    # the one that serves.
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "3")
    port = free_port()
    with old_server_held(daemons, tmp_path, port) as daemon:
        replace_conf(daemon, defaults(tmp_path) + service("w", port, "MID"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Sending signal 15 to w server")
        replace_conf(daemon, defaults(tmp_path) + service("w", port, "NEW", bind="0.0.0.0"))
        daemon.signal(signal.SIGHUP)
        log = daemon.wait_for_log("Reconfigured: ", count=2)
    assert "failed to start" not in log and "bind failed" not in log
    assert greeting(port).startswith("NEW")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


def test_a_server_already_terminating_is_not_signalled_again(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its SIGTERM was sent by the first reload and its SIGKILL timer runs; a later
    # reload that drops its service again sends nothing more (a second SIGTERM means
    # "now" to many servers) and logs no second line for it.
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "60")
    port = free_port()
    with old_server_held(daemons, tmp_path, port) as daemon:
        replace_conf(daemon, defaults(tmp_path)
                     + service("w", port, "MID", "wait", wait="yes", bind="0.0.0.0"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Sending signal 15 to w server")
        replace_conf(daemon, defaults(tmp_path) + service("w", port, "NEW"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Swapping defaults", count=2)
        daemon.wait_for_log("service w deactivated")
    # The client gone, the server ends by itself; both reloads then bind.
    log = daemon.wait_for_log("Reconfigured: ", count=2)
    assert log.count("Sending signal 15 to w server") == 1
    assert "Sending signal 9" not in log
    assert greeting(port).startswith("NEW")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
