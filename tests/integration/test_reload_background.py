"""The reload's configuration load runs beside the loop: serving never waits for it.

To hold a load in progress for as long as a test needs, without any timing, the main
configuration file is replaced by a FIFO: the loader child blocks opening and reading
it until the test writes the new configuration into it. Opening the FIFO for writing
succeeds only once the loader has opened it, so the test knows the load is under way.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, children_of, free_port, wait_until
from tests.integration.test_reload import conf_path, defaults, read_line

STARTING = "Starting reconfiguration"
DONE = "Reconfigured: "


def echo_service(port: int) -> str:
    return ("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-stream\n"
            "\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n}}\n")


def generated(count: int, first_port: int) -> str:
    """`count` small external services (bound on 127.0.0.3, so they never clash)."""
    return "".join(
        f"service gen{n}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
        f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = /bin/true\n"
        f"\tport = {first_port + n}\n\tbind = 127.0.0.3\n\tinstances = 5\n"
        f"\tonly_from = 127.0.0.0/8\n}}\n" for n in range(count))


def echo(port: int, text: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(text.encode() + b"\n")
        return read_line(conn)


def fifo_conf(daemon: Daemon, name: str = "fifo") -> Path:
    """Put a FIFO in place of the daemon's configuration file."""
    fifo = conf_path(daemon).with_suffix(f".{name}")
    os.mkfifo(fifo)
    fifo.replace(conf_path(daemon))
    return conf_path(daemon)


def open_writer(path: Path, timeout: float = 10.0) -> int:
    """Open the FIFO for writing once a reader (the loader) has it open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd


def feed(fd: int, text: str) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(text.encode())


def test_serving_goes_on_while_a_large_configuration_loads(daemons: DaemonFactory,
                                                           tmp_path: Path) -> None:
    port = free_port()
    text = defaults(tmp_path) + echo_service(port)
    daemon = daemons.start_config(text)
    fifo = fifo_conf(daemon)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(STARTING)
    writer = open_writer(fifo)
    # The load is in progress (the loader waits on the FIFO): requests are answered.
    for n in range(5):
        assert echo(port, f"during {n}") == f"during {n}\n"
    assert DONE not in daemon.log()
    # Now the loader gets a few hundred services to parse; a request sent right away
    # is answered too, whether before or after the load ends.
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    with conn:
        feed(writer, text + generated(300, 20000))
        conn.sendall(b"after\n")
        assert read_line(conn) == "after\n"
    log = daemon.wait_for_log(DONE)
    # (new= counts the generated services that could be bound: all, unless some port
    # on 127.0.0.3 is taken by something else on this machine.)
    assert re.search(r"Reconfigured: new=\d+ old=1 dropped=0 \(services\)", log)
    assert log.count("readjusting service") == 1
    assert echo(port, "end") == "end\n"
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")


def test_reload_asked_during_a_load_runs_once_more(daemons: DaemonFactory,
                                                   tmp_path: Path) -> None:
    port, extra = free_port(), free_port()
    text = defaults(tmp_path) + echo_service(port)
    daemon = daemons.start_config(text)
    first = open_writer_after_hup(daemon)
    # Written after the first load opened its file: only a second load can see it.
    second_fifo = fifo_conf(daemon, "second")
    daemon.signal(signal.SIGHUP)
    daemon.signal(signal.SIGHUP)
    assert echo(port, "x") == "x\n"
    feed(first, text)
    second = open_writer(second_fifo)
    log = daemon.log()
    assert log.count(STARTING) == 2 and log.count(DONE) == 1
    more = text + ("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-extra\n"
                   "\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
                   f"\tport = {extra}\n\tbind = 127.0.0.1\n}}\n")
    feed(second, more)
    log = daemon.wait_for_log(DONE, count=2)
    assert "Reconfigured: new=1 old=1 dropped=0 (services)" in log
    assert echo(extra, "y") == "y\n"
    # The two signals sent during the first load made one more load, not two.
    conf_path(daemon).unlink()
    conf_path(daemon).write_text(more)
    daemon.signal(signal.SIGHUP)
    log = daemon.wait_for_log(DONE, count=3)
    assert log.count(STARTING) == 3


def open_writer_after_hup(daemon: Daemon) -> int:
    fifo = fifo_conf(daemon)
    daemon.signal(signal.SIGHUP)
    return open_writer(fifo)


def test_sigterm_during_a_load_kills_and_reaps_the_loader(daemons: DaemonFactory,
                                                          tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + echo_service(port))
    writer = open_writer_after_hup(daemon)
    try:
        (loader,) = children_of(daemon.pid)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        # Reaped by the daemon before it exited: no process, not even a zombie.
        assert not os.path.exists(f"/proc/{loader}")
    finally:
        os.close(writer)
    assert DONE not in daemon.log()


def test_loader_that_dies_keeps_the_running_configuration(daemons: DaemonFactory,
                                                          tmp_path: Path) -> None:
    port = free_port()
    text = defaults(tmp_path) + echo_service(port)
    daemon = daemons.start_config(text)
    writer = open_writer_after_hup(daemon)
    try:
        (loader,) = children_of(daemon.pid)
        os.kill(loader, signal.SIGKILL)
        log = daemon.wait_for_log("reconfiguration failed")
    finally:
        os.close(writer)
    # The OOM killer is what sends SIGKILL unasked, under a memory limit.
    assert ("the configuration loader exited without a result (terminated by SIGKILL: "
            "out of memory?); the running configuration is kept") in log
    assert DONE not in log and "unknown child process" not in log
    assert echo(port, "still") == "still\n"
    # The next reload works.
    conf_path(daemon).unlink()
    conf_path(daemon).write_text(text)
    daemon.signal(signal.SIGHUP)
    assert "Reconfigured: new=0 old=1 dropped=0" in daemon.wait_for_log(DONE)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                    signal.SIGALRM])
def test_a_signal_to_the_process_group_spares_the_loader(daemons: DaemonFactory,
                                                         tmp_path: Path,
                                                         signum: signal.Signals) -> None:
    # The loader is in the daemon's process group: a Ctrl-C or hang-up of the terminal
    # a -dontfork daemon runs in, or a `kill -- -PGID`, reached it too and ended it:
    # `reconfiguration failed`, and after a SIGINT the reload was lost for good.
    port, extra = free_port(), free_port()
    text = defaults(tmp_path) + echo_service(port)
    daemon = daemons.start_config(text)
    writer = open_writer_after_hup(daemon)
    loaders = daemon.children()
    assert len(loaders) == 1
    os.kill(loaders[0], signum)     # as the group's signal reaches it
    daemon.signal(signum)
    more = text + ("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-extra\n"
                   "\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
                   f"\tport = {extra}\n\tbind = 127.0.0.1\n}}\n")
    feed(writer, more)
    log = daemon.wait_for_log(r"Reconfigured: new=1 old=1 dropped=0")
    assert "reconfiguration failed" not in log
    assert echo(extra, "y") == "y\n"
    assert daemon.proc.poll() is None
