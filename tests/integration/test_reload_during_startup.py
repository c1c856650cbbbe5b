"""SIGHUP, SIGUSR2, SIGUSR1 and the ignored signals sent while the daemon still loads
its configuration.

xinetd installs its signal handlers before it reads its configuration: a reload asked
for during the start-up load is done once it serves. Python leaves these signals at
their default action (terminate) until the loop's handlers are in place, so a SIGHUP
during the load (which takes seconds for a large configuration) killed the daemon
silently, before its first log line. They are now held back from the start of the
command and handled once the daemon serves.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_reload import conf_path, defaults, greeting, service


def loading_from_a_fifo(daemons: DaemonFactory, tmp_path: Path) -> tuple[Daemon, Path, str, int]:
    """A daemon whose start-up load waits on its main file, a FIFO (so signals surely
    arrive during the load): the daemon, the FIFO, the text to feed it, its port."""
    port = free_port()
    fifo = tmp_path / "main.fifo"
    os.mkfifo(fifo)
    text = defaults(tmp_path) + service("a", port, "A")
    daemon = daemons.start_config(text, "-f", str(fifo), ready=False)
    # The loader child of the start-up load is waiting for the FIFO's writer.
    wait_until(daemon.children, what="the start-up load")
    return daemon, fifo, text, port


@pytest.mark.parametrize("signals", [(signal.SIGHUP,), (signal.SIGUSR2, signal.SIGUSR1)])
def test_signals_during_the_start_up_load_are_handled_once_serving(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        signals: tuple[signal.Signals, ...]) -> None:
    dump = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump))
    daemon, fifo, text, port = loading_from_a_fifo(daemons, tmp_path)
    for signum in signals:
        daemon.signal(signum)
    with open(fifo, "w") as feed:
        # Reloads read a regular file; the load under way reads the FIFO.
        regular = tmp_path / "main.conf"
        regular.write_text(text)
        regular.replace(fifo)
        feed.write(text)
    log = daemon.wait_for_log("Reconfigured: ")
    assert log.index("Started working") < log.index("Starting reconfiguration")
    assert "Reconfigured: new=0 old=1 dropped=0 (services)" in log
    assert log.count("Starting reconfiguration") == 1
    if signal.SIGUSR1 in signals:
        wait_until(lambda: "END OF DUMP" in (dump.read_text() if dump.exists() else ""),
                   what="the state dump")
    assert greeting(port).startswith("A pid=")
    assert daemon.proc.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


def test_ignored_signals_during_the_start_up_load_do_not_end_it(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd ignores SIGALRM, SIGXCPU, SIGPWR... from before its configuration is read;
    # their default action used to end pyxinetd while it was still loading.
    daemon, fifo, text, port = loading_from_a_fifo(daemons, tmp_path)
    for signum in (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO,
                   signal.SIGXCPU, signal.SIGPWR, signal.SIGSTKFLT):
        daemon.signal(signum)
    with open(fifo, "w") as feed:
        feed.write(text)
    daemon.wait_for_log("Started working")
    assert greeting(port).startswith("A pid=")
    assert daemon.proc.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
