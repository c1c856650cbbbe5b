"""The daemon as process 1 of a container (`docker run ... pyxinetd -dontfork`): the
signals that end it or that it ignores, when they arrive while it is still starting.

Process 1 of a pid namespace (`unshare -p -f --mount-proc`, as a container's init) is
never sent a signal whose action is the default one: the kernel drops it. The daemon's
configuration is read from a FIFO here, so that the test knows the daemon is in the
middle of its start-up (it waits for the file's text) when the signal is sent.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, wait_log_lines, wait_until
from tests.helpers.procs import children_of
from tests.integration.test_dispatch import read_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare for a pid namespace")

AS_PROCESS_ONE = ("unshare", "-p", "-f", "--mount-proc", "--")


def echo_service(port: int) -> str:
    return (f"service s\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n"
            f"\twait = no\n\tuser = nobody\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"\tserver = /bin/echo\n\tserver_args = s\n}}\n")


def start_reading_fifo(daemons: DaemonFactory, tmp_path: Path,
                       *args: str) -> tuple[Daemon, int, int]:
    """A daemon as process 1 whose configuration is a FIFO it is reading: (the
    daemon's wrapper, the daemon's pid, the FIFO's writing end, open once the daemon
    has opened the FIFO: its start-up is under way)."""
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    # The last -f is the one read.
    wrapper = daemons.start_config("", *args, "-f", str(fifo), ready=False,
                                   wrapper=AS_PROCESS_ONE)

    def open_writer() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:    # no reader yet
                raise
            return None

    writer = wait_until(open_writer, what="the daemon to open its configuration")
    [pid] = children_of(wrapper.pid)
    return wrapper, pid, writer


def finish_configuration(writer: int, text: str) -> None:
    os.set_blocking(writer, True)
    os.write(writer, text.encode())
    os.close(writer)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT])
def test_a_stop_sent_while_process_one_starts_is_not_lost(
        daemons: DaemonFactory, tmp_path: Path, signum: int) -> None:
    # `docker stop` right after `docker run`: the SIGTERM came while the daemon was
    # still importing or reading its configuration, was dropped, and the daemon served
    # on until docker's SIGKILL 10 s later. xinetd handles it once it has started.
    wrapper, pid, writer = start_reading_fifo(daemons, tmp_path)
    os.kill(pid, signum)
    finish_configuration(writer, echo_service(free_port()))
    assert wrapper.wait_exit() == 0
    log = wrapper.log()
    assert "Started working" in log
    assert log.rstrip().endswith("WARNING: Exiting...")


def test_sigint_while_process_one_starts_is_ignored_as_xinetd_ignores_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Ctrl-C in `docker run -it` during the start-up: xinetd ignores SIGINT (but
    # with -d); the daemon raised KeyboardInterrupt and died there.
    port = free_port()
    wrapper, pid, writer = start_reading_fifo(daemons, tmp_path)
    os.kill(pid, signal.SIGINT)
    finish_configuration(writer, echo_service(port))
    wrapper.wait_ready()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        assert read_all(conn) == b"s\n"
    assert wrapper.proc.poll() is None
    os.kill(pid, signal.SIGTERM)
    assert wrapper.wait_exit() == 0


def test_sigint_while_process_one_starts_in_debug_mode_ends_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    wrapper, pid, writer = start_reading_fifo(daemons, tmp_path, "-d")
    os.kill(pid, signal.SIGINT)
    finish_configuration(writer, echo_service(free_port()))
    assert wrapper.wait_exit() == 1


def test_as_process_one_a_grandchild_holding_the_connection_frees_the_slot_and_is_reaped(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # A challenge that double-forks: its setsid grandchild keeps the connection and
    # outlives it. As in xinetd, instances and per_source count the direct child only
    # (its exit frees the slot); the grandchild, handed to process 1, is reaped by the
    # daemon when it ends: no zombie is left in the container.
    server = tmp_path / "double-fork"
    server.write_text("#!/bin/sh\n"
                      "setsid sh -c 'echo grandchild; exec cat >/dev/null' &\n")
    server.chmod(0o755)
    port, service_log = free_port(), tmp_path / "services.log"
    conf = (f"service df\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = {server}\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"\tinstances = 1\n\tper_source = 1\n\tlog_type = FILE {service_log}\n"
            f"\tlog_on_success = PID EXIT\n}}\n")
    wrapper = daemons.start_config(conf, wrapper=AS_PROCESS_ONE)
    [pid] = children_of(wrapper.pid)
    clients = []
    for n in (1, 2):
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        clients.append(conn)
        assert conn.makefile("rb").readline() == b"grandchild\n"
        wait_log_lines(service_log, r"EXIT: df status=0", count=n)
    assert "FAIL" not in service_log.read_text()
    for conn in clients:
        conn.close()
    wait_until(lambda: not children_of(pid), what="the grandchildren to be reaped")
    assert wrapper.proc.poll() is None
