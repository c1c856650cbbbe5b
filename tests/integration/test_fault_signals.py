"""Fault signals: sent with kill(1), logged or ignored as xinetd takes them while the
daemon serves on; raised by a real fault, they still end the process
(pyxinetd.faultsignals). The same lines as the real xinetd's:
tests/integration/test_signals_oracle.py."""

from __future__ import annotations

import platform
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


@guarded
def test_under_faulthandler_a_sigsegv_sent_with_kill_ends_the_daemon_with_its_traceback(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whoever set PYTHONFAULTHANDLER asked for tracebacks on faults: the guard stays
    # out of faulthandler's way, as it would have to on a real fault.
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    daemon = daemons.start_services([make_service(name="s", port=free_port())])
    daemon.signal(signal.SIGSEGV)
    assert daemon.wait_exit() == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in daemon.log_path.with_suffix(
        ".err").read_text()
    assert "Unexpected signal" not in daemon.log()


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


# SECCOMP_RET_TRAP on getppid(2): the kernel skips the call and raises SIGSYS with
# si_code SYS_SECCOMP (a real fault whose instruction is not run again).
_SECCOMP_TRAP = """
import ctypes, os, platform, signal, struct, sys
from pyxinetd import faultsignals
GETPPID = {"x86_64": 110, "aarch64": 173}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
filters = b"".join(struct.pack("HBBI", *insn) for insn in (
    (0x20, 0, 0, 0),                    # ld  [nr]
    (0x15, 0, 1, GETPPID),              # jeq GETPPID, trap, allow
    (0x06, 0, 0, 0x00030000),           # ret SECCOMP_RET_TRAP
    (0x06, 0, 0, 0x7fff0000),           # ret SECCOMP_RET_ALLOW
))
code = ctypes.create_string_buffer(filters)
prog = struct.pack("HxxxxxxQ", len(filters) // 8, ctypes.addressof(code))
prog_buf = ctypes.create_string_buffer(prog)
signal.signal(signal.SIGSYS, lambda *args: print("handler ran", flush=True))
faultsignals.guard([signal.SIGSYS])
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or \\
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog_buf, 0, 0):
    print("no seccomp", ctypes.get_errno(), flush=True)
    sys.exit(0)
os.getppid()
print("went on", flush=True)
"""


@guarded
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"),
                    reason="getppid's system call number is known for x86_64 and aarch64 only")
def test_a_seccomp_trap_under_the_guard_ends_the_process_with_sigsys() -> None:
    # The trapped system call is skipped and not run again: a handler that only
    # returned would let the process go on as if it had run.
    done = subprocess.run([sys.executable, "-c", _SECCOMP_TRAP], capture_output=True,
                          text=True, timeout=60)
    if done.stdout.startswith("no seccomp"):
        pytest.skip(f"seccomp filters are not available here: {done.stdout.strip()}")
    assert done.returncode == -signal.SIGSYS
    assert "handler ran" not in done.stdout and "went on" not in done.stdout


# A SIGSEGV sent to the process itself while the wakeup byte cannot be written (its
# socket full: EAGAIN): errno, set before the raise() that the signal interrupts, must
# be what it was once raise() returns.
_ERRNO_KEPT = """
import ctypes, errno, signal, socket
from pyxinetd import faultsignals
mine, peer = socket.socketpair()
mine.setblocking(False)
try:
    while True:
        mine.send(bytes(4096))
except BlockingIOError:
    pass
signal.set_wakeup_fd(mine.fileno(), warn_on_full_buffer=False)
signal.signal(signal.SIGSEGV, lambda *args: None)
faultsignals.guard([signal.SIGSEGV])
libc = ctypes.CDLL(None, use_errno=True)
ctypes.set_errno(errno.ENOENT)
libc["raise"](signal.SIGSEGV)
print(errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()), flush=True)
"""


@guarded
def test_a_fault_signal_sent_under_the_guard_leaves_errno_as_it_was() -> None:
    done = subprocess.run([sys.executable, "-c", _ERRNO_KEPT], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "ENOENT\n"), done.stderr


# int3; ret: the kernel raises SIGTRAP (si_code SI_KERNEL) with the instruction pointer
# past the breakpoint, so returning from a handler goes on after it.
_BREAKPOINT = """
import ctypes, mmap, signal
from pyxinetd import faultsignals
code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
code.write(b"\\xcc\\xc3")
address = ctypes.addressof(ctypes.c_char.from_buffer(code))
signal.signal(signal.SIGTRAP, lambda *args: print("handler ran", flush=True))
faultsignals.guard([signal.SIGTRAP])
ctypes.CFUNCTYPE(None)(address)()
print("went on", flush=True)
"""


@guarded
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the breakpoint is x86_64 code")
def test_a_breakpoint_trap_under_the_guard_ends_the_process_with_sigtrap() -> None:
    done = subprocess.run([sys.executable, "-c", _BREAKPOINT], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -signal.SIGTRAP, done.stderr
    assert "handler ran" not in done.stdout and "went on" not in done.stdout
