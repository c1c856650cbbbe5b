"""Fault signals: sent with kill(1), logged or ignored as xinetd takes them while the
daemon serves on; raised by a real fault, they still end the process
(pyxinetd.faultsignals). The same lines as the real xinetd's:
tests/integration/test_signals_oracle.py."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from pyxinetd import faultsignals
from tests.daemon import DaemonFactory, free_port
from tests.factories import make_service
from tests.integration.test_dispatch import connect, read_all

guarded = pytest.mark.skipif(not faultsignals.guard_available(),
                             reason="the C extension's fault guard is not built or not enabled")


@guarded
def test_a_sigsegv_or_sigbus_sent_with_kill_is_logged_and_serving_goes_on(
        daemons: DaemonFactory) -> None:
    port = free_port()
    daemon = daemons.start_services([make_service(name="s", port=port, server="/bin/echo",
                                                  server_argv=("echo", "s"))])
    daemon.signal(signal.SIGSEGV)
    daemon.wait_for_log(re.escape("Unexpected signal: 11 (Segmentation fault)"))
    daemon.signal(signal.SIGBUS)
    daemon.wait_for_log(re.escape("Unexpected signal: 7 (Bus error)"))
    with connect(port) as conn:
        assert read_all(conn) == b"s\n"
    assert daemon.proc.poll() is None
    assert f"CRITICAL: {daemon.proc.pid} {{general_handler}} ({daemon.proc.pid}) " \
           "Unexpected signal: 11 (Segmentation fault)" in daemon.log()


@guarded
def test_the_other_fault_signals_sent_with_kill_are_ignored(daemons: DaemonFactory) -> None:
    port = free_port()
    daemon = daemons.start_services([make_service(name="s", port=port, server="/bin/echo",
                                                  server_argv=("echo", "s"))])
    for signum in faultsignals.IGNORED:
        daemon.signal(signum)
    # A SIGSEGV after them: its line shows the daemon took every one before it.
    daemon.signal(signal.SIGSEGV)
    daemon.wait_for_log("Unexpected signal: 11")
    with connect(port) as conn:
        assert read_all(conn) == b"s\n"
    assert daemon.proc.poll() is None
    assert "Unexpected signal" not in daemon.log().replace(
        "Unexpected signal: 11 (Segmentation fault)", "")


def test_without_the_guard_a_sigsegv_sent_with_kill_keeps_its_default_action(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # PYXINETD_NATIVE_SPAWN=0: the daemon behaves as one built without the extension.
    monkeypatch.setenv("PYXINETD_NATIVE_SPAWN", "0")
    daemon = daemons.start_services([make_service(name="s", port=free_port())])
    daemon.signal(signal.SIGSEGV)
    assert daemon.wait_exit() == -signal.SIGSEGV


_REAL_FAULT = """
import signal, sys, threading, ctypes
from pyxinetd import faultsignals
signal.signal(signal.SIGSEGV, lambda *args: print("handler ran", flush=True))
faultsignals.guard([signal.SIGSEGV])
if sys.argv[1] == "thread":
    thread = threading.Thread(target=ctypes.string_at, args=(0,))
    thread.start()
    thread.join()
else:
    ctypes.string_at(0)     # reads address 0: a real fault
print("went on", flush=True)
"""


@guarded
@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_real_fault_under_the_guard_still_ends_the_process_with_its_signal(
        where: str) -> None:
    # Not a hang on the faulting instruction, not a handler that lets it go on.
    done = subprocess.run([sys.executable, "-c", _REAL_FAULT, where], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -signal.SIGSEGV
    assert "handler ran" not in done.stdout and "went on" not in done.stdout
