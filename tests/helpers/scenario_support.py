"""What the one-daemon scenarios run inside a private network namespace share
(wait_refusal_scenario.py, intercept_scenario.py): `lo` up, a free port, bounded waits on
log files, and the daemon under test started and stopped. Standard library only: the
scenarios run as plain scripts (`unshare -n python3 SCRIPT WORKDIR DAEMON [ARG...]`)
and print one JSON object, read by tests.daemon.run_scenario().

A scenario whose daemon's processes may leave its process group and outlive it (an
xinetd interceptor) calls become_subreaper() first and end_descendants() last: such
orphans become its own children instead of init's, and are killed and reaped by pid."""

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import ports
from procs import children_of


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux >= 3.4; not inherited by children); False when
    the call is refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def own_children() -> list[int]:
    """The pids whose parent is this process (one pass over /proc)."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue    # gone meanwhile
        # The command name may hold spaces and parentheses: split after the last ')'.
        if int(stat[stat.rindex(b")") + 2:].split()[1]) == me:
            found.append(int(name))
    return found


def end_descendants(timeout: float = 10.0) -> list[int]:
    """SIGKILL and reap every child of this process, then the children of those that
    become ours as their parents die (a subreaper adopts them), until none is left or
    `timeout` seconds have passed; the pids ended."""
    deadline = time.monotonic() + timeout
    ended: list[int] = []
    while time.monotonic() < deadline:
        children = own_children()
        if not children:
            break
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.01)
        ended += children
    return ended


def bring_up_loopback() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


@dataclass(frozen=True)
class Scenario:
    """The daemon under test and the files of one run, in its work folder."""

    daemon: list[str]
    conf: str           # the configuration the scenario writes
    service_log: str    # for its `log_type = FILE`
    program_log: str    # the daemon's -filelog


def begin() -> Scenario:
    """Read `WORKDIR DAEMON [ARG...]` from the command line and bring `lo` up."""
    workdir, daemon = sys.argv[1], sys.argv[2:]
    bring_up_loopback()
    return Scenario(daemon, os.path.join(workdir, "xinetd.conf"),
                    os.path.join(workdir, "services.log"),
                    os.path.join(workdir, "program.log"))


def fake_load(workdir: str, load: str) -> None:
    """Mount a file over /proc/loadavg (the scenario runs in its own mount namespace)
    so that both daemons read `load` as the one-minute load average."""
    fake = os.path.join(workdir, "loadavg")
    with open(fake, "w") as f:
        f.write(f"{load} 9.00 8.00 1/100 1234\n")
    subprocess.run(["mount", "--bind", fake, "/proc/loadavg"], check=True)


def _private_layer(folder: str, n: int) -> None:
    upper, work = f"/run/scenario-priv/{n}/u", f"/run/scenario-priv/{n}/w"
    os.makedirs(upper)
    os.makedirs(work)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={folder},upperdir={upper},workdir={work}", folder], check=True)


def private_dev_and_etc() -> None:
    """Overlay /dev and /etc with private writable layers on a tmpfs (the scenario runs
    in its own mount namespace), so /dev/log can be a socket the scenario reads and
    /etc/hosts.deny a file it writes, without touching the host."""
    os.makedirs("/run/scenario-priv", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/scenario-priv"], check=True)
    _private_layer("/dev", 1)
    _private_layer("/etc", 2)


def far_window() -> str:
    """An `access_times` window of one minute about six hours from now: closed for the
    whole run."""
    t = time.localtime(time.time() + 6 * 3600)
    start = min(t.tm_hour * 60 + t.tm_min, 23 * 60 + 58)
    return (f"{start // 60:02d}:{start % 60:02d}-"
            f"{(start + 1) // 60:02d}:{(start + 1) % 60:02d}")


def second_to_spare(span: float) -> None:
    """Until neither the wall clock (xinetd's cps seconds) nor the monotonic clock
    (pyxinetd's) turns a second for `span` seconds (at most half a second), so that
    connections made within `span` count in one cps second for both daemons: the
    largest gap between the two clocks' turns is at least half a second, so two sleeps
    at most."""
    for _ in range(4):
        left = min(1 - time.time() % 1, 1 - time.monotonic() % 1)
        if left >= span:
            return
        time.sleep(left + 0.002)


class SyslogSink:
    """A datagram socket at /dev/log (the scenario's own, in its mount namespace: the
    caller has put a private /dev over the real one) collecting what the daemon sends
    to syslog; `drain()` takes in what has arrived, `messages` holds it, in order."""

    def __init__(self) -> None:
        if os.path.lexists("/dev/log"):
            os.unlink("/dev/log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("/dev/log")
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode(errors="replace"))
            except BlockingIOError:
                return


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 and not handed out before by this
    process (see ports.free_port)."""
    port = ports.free_port(_GIVEN_PORTS)
    _GIVEN_PORTS.add(port)
    return port


def write_file(path: str, text: str, mode: int | None = None) -> str:
    """Write a scenario's file (banner, script, configuration) and return its path."""
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path


def seen(conn: socket.socket, data: bytes = b"", wait: float = 1.0, *,
         reset_after_data_is_eof: bool = False) -> str:
    """What a stream client gets: the bytes, then EOF, `open` (nothing more within
    `wait`), or the error that ended the connection. `reset_after_data_is_eof`: a
    connection closed with the client's bytes unread ends with a reset rather than
    EOF depending on whether they arrived before the close (a race in both daemons),
    so that reset reads as EOF."""
    got = b""
    conn.settimeout(wait)
    closed = ("ConnectionResetError",) if data and reset_after_data_is_eof else ()
    try:
        if data:
            conn.sendall(data)
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                return f"{got!r} EOF"
            got += chunk
    except socket.timeout:
        return f"{got!r} open"
    except OSError as exc:
        name = type(exc).__name__
        return f"{got!r} {'EOF' if name in closed else name}"
    finally:
        conn.settimeout(None)


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(path: str, pattern: str, deadline: float) -> bool:
    """Whether `pattern` appears in the file at `path` before the monotonic `deadline`."""
    return wait_count(path, pattern, 1, deadline)


def wait_count(path: str, pattern: str, count: int, deadline: float) -> bool:
    """Whether `pattern` matches at least `count` times in the file at `path` before
    the monotonic `deadline` (a loaded machine writes log lines late: wait for them
    rather than for a fixed time)."""
    while time.monotonic() < deadline:
        if len(re.findall(pattern, read(path))) >= count:
            return True
        time.sleep(0.02)
    return False


def wait_children(pid: int, most: int, deadline: float) -> bool:
    """Whether the process `pid` has at most `most` children (the others exited and
    reaped: their slots free) before the monotonic `deadline`."""
    while time.monotonic() < deadline:
        if len(children_of(pid)) <= most:
            return True
        time.sleep(0.02)
    return False


def settled(pid: int, keep: Collection[int] = ()) -> bool:
    """Whether the process `pid` has no child left (its servers have exited and been
    reaped) but those in `keep`, and no orphan this process adopted as a subreaper
    (become_subreaper) is still running; such orphans are reaped here as they end.
    Any other child of this process counts as such an orphan (and is reaped): use it
    where the daemon is the scenario's only child of its own."""
    for child in own_children():
        if child != pid and child not in keep:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, os.WNOHANG)
    return not [child for child in children_of(pid) + own_children()
                if child != pid and child not in keep]


def wait_settled(pid: int, deadline: float, keep: Collection[int] = ()) -> bool:
    """Whether settled(pid, keep) holds before the monotonic `deadline`."""
    while time.monotonic() < deadline:
        if settled(pid, keep):
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def running(daemon: Sequence[str], conf: str, program_log: str,
            *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """`DAEMON -f CONF -dontfork -filelog LOG OPTIONS...`, ready (its `Started working`
    line, within 60 s) when the block starts; SIGTERM (SIGKILL after 10 s) when it
    ends."""
    proc = subprocess.Popen([*daemon, "-f", conf, "-dontfork", *options,
                             "-filelog", program_log], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # A generous bound: xinetd spends about 1.8 s of CPU on each address entry
        # with a `/-1` prefix (test_access_decisions_oracle.py has four), so a start
        # took 7 s alone and over 40 s with ten at once on two cores. A daemon that
        # starts costs no more for it.
        if not wait_for(program_log, "Started working", time.monotonic() + 60):
            raise SystemExit(f"the daemon did not start (exit status {proc.poll()}); "
                             f"its log: {read(program_log)[-2000:]!r}")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
