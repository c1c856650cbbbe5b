"""Signals to a running daemon: TERM/QUIT exit 0, INT ignored, HUP/USR1 kept running."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import (
    Daemon, DaemonFactory, free_port, process_state, read_log, wait_until,
)
from tests.integration.test_dispatch import connect, read_all
from tests.factories import make_service
from tests.helpers.procs import accept_queue, resolver_helpers


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT])
def test_terminating_signals_exit_0(daemons: DaemonFactory, signum: int) -> None:
    daemon = daemons.start_services([make_service(name="s", port=free_port())])
    daemon.signal(signum)
    assert daemon.wait_exit() == 0
    assert "WARNING: Exiting..." in daemon.log()


def test_other_signals_keep_serving(daemons: DaemonFactory, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(tmp_path / "xinetd.dump"))
    port = free_port()
    svc = make_service(name="s", port=port, server="/bin/echo", server_argv=("echo", "s"))
    daemon = daemons.start_services([svc])
    # Every catchable signal without a role is ignored, as xinetd ignores it: SIGXCPU
    # (a CPU limit's soft value passed), SIGPWR (a UPS daemon) and SIGSTKFLT ended the
    # daemon by their default action.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                   signal.SIGALRM, signal.SIGWINCH, signal.SIGXCPU, signal.SIGPWR,
                   signal.SIGSTKFLT, signal.SIGURG, signal.SIGVTALRM, signal.SIGPROF,
                   signal.SIGIO, signal.SIGABRT):
        daemon.signal(signum)
    daemon.wait_for_log("Consistency check passed")
    # The services were given directly: there is no file to read again.
    daemon.wait_for_log("reconfiguration failed", count=1)
    daemon.wait_for_log("generated state dump in file")
    with connect(port) as conn:
        assert read_all(conn) == b"s\n"
    assert daemon.proc.poll() is None


def test_sigint_exits_in_debug_mode(daemons: DaemonFactory) -> None:
    daemon = daemons.start_services([make_service(name="s", port=free_port())], debug=True)
    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit() == 1


def echo_service(port: int, services: Path) -> str:
    """A service answering `s`, its START and FAIL lines in `services`."""
    return (f"service s\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n\tuser = root\n"
            f"\tserver = /bin/echo\n\tserver_args = s\n\tcps = 1000 1\n"
            f"\tlog_type = FILE {services}\n\tlog_on_success = HOST\n"
            f"\tlog_on_failure = HOST\n}}\n")


@contextlib.contextmanager
def stopped_then_interrupted(daemon: Daemon) -> Iterator[None]:
    """The idle daemon stopped (SIGSTOP: asleep in its loop's wait) while the block
    runs, then sent SIGINT and resumed: the signal is taken in the loop's next turn,
    with whatever else is due by then."""
    wait_until(lambda: process_state(daemon.pid) == "S", what="the daemon idle")
    daemon.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(daemon.pid) == "T", what="the daemon stopped")
        yield
        daemon.signal(signal.SIGINT)
    finally:
        daemon.signal(signal.SIGCONT)


def test_a_debug_sigint_serves_no_connection_queued_with_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd exits from its handler; the rest of the loop's turn that took the SIGINT
    # accepted what the listener held and started servers after `Exiting...`.
    port, services = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(echo_service(port, services), "-d")
    with contextlib.ExitStack() as stack:
        with stopped_then_interrupted(daemon):
            queued = [stack.enter_context(connect(port)) for _ in range(3)]
            wait_until(lambda: accept_queue(port) == len(queued), what="3 queued")
        assert daemon.wait_exit() == 1
        for conn in queued:
            with contextlib.suppress(ConnectionResetError):
                assert read_all(conn) == b""
    assert re.search(r"\{quit_program\} Exiting\.\.\.\n\Z", daemon.log()), daemon.log()
    assert "START" not in read_log(services)


def test_no_signal_is_named_after_a_debug_sigint_taken_with_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Whatever order the kernel hands them over in, SIGHUP or SIGABRT is taken after
    # the SIGINT: `Got signal N` was logged after `Exiting...`, for a signal that does
    # nothing any more (xinetd exits from the handler that logs that line).
    daemon = daemons.start_config(echo_service(free_port(), tmp_path / "services.log"),
                                  "-d")
    with stopped_then_interrupted(daemon):
        daemon.signal(signal.SIGHUP)
        daemon.signal(signal.SIGABRT)
    assert daemon.wait_exit() == 1
    assert re.search(r"\{quit_program\} Exiting\.\.\.\n\Z", daemon.log()), daemon.log()


def answers_unread(daemon: Daemon) -> int:
    """The bytes the name resolver sent that wait on the daemon's end of its socket
    (its one SOCK_SEQPACKET socket: `ss`'s receive queue)."""
    out = subprocess.run(["ss", "-Hxp"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[0] == "u_seq" and f"pid={daemon.pid}," in line:
            return int(fields[2])
    return 0


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss is not installed")
def test_a_debug_sigint_judges_no_request_whose_name_came_with_it(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client's name comes back in the turn that takes the SIGINT: it was judged
    # then, after `Exiting...` (a refusal logged, or a server started).
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text("ALL: localhost\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port, services = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(echo_service(port, services), "-d")
    with connect(port) as first:
        read_all(first)     # judged by its name: the helper runs
    (helper,) = wait_until(lambda: resolver_helpers(daemon.pid), what="the name resolver")
    os.kill(helper, signal.SIGSTOP)
    try:
        with connect(port) as waiting:
            wait_until(lambda: accept_queue(port) == 0, what="the client accepted")
            judged = read_log(services)
            with stopped_then_interrupted(daemon):
                os.kill(helper, signal.SIGCONT)
                wait_until(lambda: answers_unread(daemon) > 0, what="its name sent back")
            assert daemon.wait_exit() == 1
            with contextlib.suppress(ConnectionResetError):
                assert read_all(waiting) == b""
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, signal.SIGCONT)
    assert re.search(r"\{quit_program\} Exiting\.\.\.\n\Z", daemon.log()), daemon.log()
    assert read_log(services) == judged


def test_a_stopped_name_resolver_ends_with_the_daemon(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its SIGTERM was held pending while it was stopped: it stayed behind, stopped.
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text("ALL: localhost\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port, services = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(echo_service(port, services))
    with connect(port) as first:
        read_all(first)     # judged by its name: the helper runs
    (helper,) = wait_until(lambda: resolver_helpers(daemon.pid), what="the name resolver")
    os.kill(helper, signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(helper) == "T", what="the helper stopped")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        wait_until(lambda: process_state(helper) in (None, "Z"), what="the helper gone")
    finally:
        if process_state(helper) == "T":
            os.kill(helper, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a PID namespace")
def test_as_process_one_orphans_are_reaped_quietly(daemons: DaemonFactory,
                                                   tmp_path: Path) -> None:
    # A container's init: the server leaves a background process behind, which the
    # kernel hands to process 1, the daemon, once the server has exited.
    server = tmp_path / "orphan-maker"
    server.write_text("#!/bin/sh\necho started\n(sleep 0.3) </dev/null >/dev/null 2>&1 &\n")
    server.chmod(0o755)
    port = free_port()
    conf = (f"service orphan-maker\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = root\n\tserver = {server}\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n}}\n")
    daemon = daemons.start_config(conf, "-d", wrapper=("unshare", "-p", "-f", "--"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        assert conn.makefile("rb").readline() == b"started\n"
    log = daemon.wait_for_log(r"reaped orphaned process \d+")
    assert ": 1 {main} Started working" in log  # -d lines carry the pid: process 1
    assert "unknown child process" not in log



def test_a_child_the_daemon_did_not_start_is_logged_as_xinetd_logs_it(
        daemons: DaemonFactory) -> None:
    # The program that exec'd the daemon left a child behind: it is the daemon's now.
    port = free_port()
    conf = (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tbind = 127.0.0.1\n\tport = {port}\n}}\n")
    daemon = daemons.start_config(conf, wrapper=("sh", "-c", 'sleep 300 & exec "$@"', "sh"))
    [stranger] = daemon.children()
    os.kill(stranger, signal.SIGKILL)
    log = daemon.wait_for_log(rf"unknown child process {stranger} died")
    # xinetd 2.3.15.3's level (child_exit()).
    assert f"NOTICE: unknown child process {stranger} died\n" in log
    with connect(port) as conn:
        conn.sendall(b"still here")
        conn.shutdown(socket.SHUT_WR)
        assert read_all(conn) == b"still here"


BLOCKING_WRAPPER = (sys.executable, "-c",
                    "import os, signal, sys\n"
                    "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD, signal.SIGHUP,"
                    " signal.SIGTERM])\n"
                    "os.execv(sys.argv[1], sys.argv[1:])\n")


def test_a_blocked_signal_mask_inherited_at_start_is_cleared(daemons: DaemonFactory,
                                                              tmp_path: Path) -> None:
    # Started by a program that blocks signals (the mask survives exec), the daemon
    # used to keep its servers as zombies and ignore SIGHUP and SIGTERM.
    port = free_port()
    conf = (f"service s\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n\tuser = nobody\n"
            f"\tserver = /bin/echo\n\tserver_args = s\n}}\n")
    daemon = daemons.start_config(conf, wrapper=BLOCKING_WRAPPER)
    with connect(port) as conn:
        assert read_all(conn) == b"s\n"
    wait_until(lambda: not daemon.children(), what="the server to be reaped")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("Reconfigured:")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


@pytest.mark.parametrize("late", [signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM])
def test_a_signal_right_behind_sigterm_does_not_kill_the_exiting_daemon(
        daemons: DaemonFactory, tmp_path: Path, late: int) -> None:
    # A reload (logrotate's SIGHUP, `systemctl reload`) racing a stop, or a second
    # SIGTERM: xinetd keeps its handlers until it exits, so it still exits 0. pyxinetd
    # used to restore the default actions while shutting down and die of the signal.
    for n in range(4):
        pidfile = tmp_path / f"x{n}.pid"
        conf = (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                f"\tprotocol = tcp\n\tport = {free_port()}\n\tbind = 127.0.0.1\n"
                f"\twait = no\n}}\n")
        daemon = daemons.start_config(conf, "-pidfile", str(pidfile))
        daemon.signal(signal.SIGTERM)
        # Keep sending until it is gone (poll() reaps it, so the pid is still ours).
        deadline = time.monotonic() + 10
        while daemon.proc.poll() is None and time.monotonic() < deadline:
            daemon.signal(late)
        assert daemon.wait_exit() == 0
        assert not pidfile.exists()


def test_sigterm_closes_an_open_echo_session_and_logs_its_exit(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd's forked echo child keeps xinetd's SIGTERM handler, which does nothing
    # there, and serves on after the daemon exited (compatibility.md); pyxinetd serves
    # its builtins in its loop and closes their sessions as it exits.
    port = free_port()
    services = tmp_path / "services.log"
    daemon = daemons.start_config(
        f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = echo\n\tsocket_type = stream\n"
        f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n"
        f"\tlog_type = FILE {services}\n\tlog_on_success = PID HOST EXIT\n}}\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"ping\n")
        assert conn.recv(100) == b"ping\n"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        assert conn.recv(100) == b""
    lines = read_log(services).splitlines()
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["START", "EXIT"]
    assert re.search(r"EXIT: echo status=0 pid=\d+$", lines[1])
