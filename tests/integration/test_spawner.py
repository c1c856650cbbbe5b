"""The spawner against the real kernel: each attribute of the child, on every path.

Each test starts tests/helpers/report_server.py (or a shell probe) through the spawner
with a real socketpair, reads what the server reports, and reaps the child itself, as
the master does (which also proves the spawner left it unreaped).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.config.model import Rlimits
from pyxinetd.errors import SpawnError
from pyxinetd.posix import HAVE_FORK_EXEC, RealPosix
from pyxinetd.spawner import Method, Spawner, build_request, spawn
from tests.factories import make_service

HELPER = Path(__file__).resolve().parent.parent / "helpers" / "report_server.py"
# The system interpreter, so that a server running as nobody can execute it.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
NOBODY = 65534
ROOT = os.geteuid() == 0
CAN_RENICE = bool(RealPosix().effective_capabilities() & (1 << 23))  # CAP_SYS_NICE
root_only = pytest.mark.skipif(not ROOT, reason="needs root")
ENV = ("LC_ALL=C.UTF-8", "PATH=/usr/bin:/bin")
DEADLINE = 30.0

# None = let the spawner choose.
ALL_METHODS = [None, Method.SPAWN, Method.CHECKLIST] + (
    [Method.FORK_EXEC] if HAVE_FORK_EXEC else [])


@pytest.fixture(scope="module")
def helper() -> Iterator[str]:
    """A copy of the report server that any user can read (pytest's tmp dirs are 0700)."""
    directory = tempfile.mkdtemp(prefix="pyxinetd-spawner-")
    try:
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "report_server.py")
        shutil.copyfile(HELPER, path)
        os.chmod(path, 0o644)
        yield path
    finally:
        shutil.rmtree(directory)


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(DEADLINE)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def reap(pid: int) -> int:
    """Wait for our own child with a deadline; return its exit code."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not exit")


def zombies_of_me() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry))
    return found


def run(service: Any, method: Method | None, *, as_root: bool = ROOT,
        remote_host: str = "192.0.2.7") -> tuple[bytes, int]:
    ours, theirs = socket.socketpair()
    with ours:
        try:
            if method is None:
                pid = spawn(service, theirs, remote_host, as_root=as_root)
            else:
                pid = Spawner(RealPosix()).spawn(service, theirs, remote_host,
                                                 as_root=as_root, method=method)
        finally:
            theirs.close()
        out = read_all(ours)
    assert reap(pid) == 0, out
    return out, pid


def report(helper: str, method: Method | None, **overrides: Any) -> dict[str, Any]:
    as_root = overrides.pop("_as_root", ROOT)
    overrides.setdefault("environment", ENV)
    overrides.setdefault("server_argv", ("report-server", helper))
    service = make_service(server=PYTHON, **overrides)
    out, pid = run(service, method, as_root=as_root)
    data: dict[str, Any] = json.loads(out)
    assert data["pid"] == pid
    return data


@pytest.mark.parametrize("method", ALL_METHODS)
def test_only_the_socket_on_0_1_2(helper: str, method: Method | None) -> None:
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_r, True)  # an fd the launcher might have passed us
    try:
        data = report(helper, method)
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    assert data["fds"] == [0, 1, 2]
    kinds = {data["fd_info"][str(fd)]["kind"] for fd in (0, 1, 2)}
    inodes = {data["fd_info"][str(fd)]["ino"] for fd in (0, 1, 2)}
    assert kinds == {"socket"} and len(inodes) == 1


@pytest.mark.parametrize("method", ALL_METHODS)
def test_new_session(helper: str, method: Method | None) -> None:
    data = report(helper, method)
    assert data["sid"] == data["pid"] == data["pgid"]
    assert data["ppid"] == os.getpid()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_environment_and_argv(helper: str, method: Method | None) -> None:
    data = report(helper, method,
                  environment=ENV + ("REMOTE_HOST=stale", "EQ=a=b", "EMPTY="),
                  server_argv=("custom-name", helper, "one", "two words", ""))
    assert data["environ"] == {"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin", "EQ": "a=b",
                               "EMPTY": "", "REMOTE_HOST": "192.0.2.7"}
    assert data["argv"] == ["custom-name", helper, "one", "two words", ""]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_umask(helper: str, method: Method | None) -> None:
    mine = os.umask(0o022)
    os.umask(mine)
    assert report(helper, method, umask=0o027)["umask"] == 0o027
    assert report(helper, method)["umask"] == mine
    assert os.umask(mine) == mine  # the parent's umask was put back


@pytest.mark.parametrize("method", ALL_METHODS)
def test_nofile_defaults_to_the_daemon_hard_limit(helper: str, method: Method | None) -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = before[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("hard NOFILE limit is unlimited")
    lowered = (min(before[0], 64), hard)  # a soft limit below the hard one, as is common
    resource.setrlimit(resource.RLIMIT_NOFILE, lowered)
    try:
        data = report(helper, method)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    assert data["rlimits"]["files"] == [hard, hard]


@pytest.mark.parametrize("method", [None, Method.CHECKLIST])
def test_rlimit_files(helper: str, method: Method | None) -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    data = report(helper, method, rlimits=Rlimits(files=512))
    assert data["rlimits"]["files"] == [512, 512]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


@pytest.mark.parametrize("method", [None, Method.CHECKLIST])
def test_other_rlimits(helper: str, method: Method | None) -> None:
    limits = Rlimits(as_=4 << 30, cpu=100, data=2 << 30, rss=1 << 30, stack=16 << 20)
    service = make_service(server=PYTHON, rlimits=limits)
    assert Spawner(RealPosix()).choose(
        build_request(service, 0, "x", as_root=ROOT, posix=RealPosix())) is Method.CHECKLIST
    data = report(helper, method, rlimits=limits)
    assert data["rlimits"]["as"] == [4 << 30, 4 << 30]
    assert data["rlimits"]["cpu"] == [100, 100]
    assert data["rlimits"]["data"] == [2 << 30, 2 << 30]
    assert data["rlimits"]["rss"] == [1 << 30, 1 << 30]
    assert data["rlimits"]["stack"] == [16 << 20, 16 << 20]


@pytest.mark.parametrize("method", ALL_METHODS if CAN_RENICE else [None, Method.CHECKLIST])
def test_nice(helper: str, method: Method | None) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    data = report(helper, method, nice=5)
    assert data["nice"] == min(19, mine + 5)
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine


@root_only
@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m is not Method.SPAWN])
def test_credentials(helper: str, method: Method | None) -> None:
    data = report(helper, method, user=NOBODY, group=NOBODY, supplementary_groups=())
    assert data["uid"] == [NOBODY] * 3
    assert data["gid"] == [NOBODY] * 3
    assert data["groups"] == []
    assert data["cap_eff"] == 0 and data["cap_prm"] == 0
    assert os.getresuid() == (0, 0, 0) and os.getresgid() == (0, 0, 0)


@root_only
@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m is not Method.SPAWN])
def test_supplementary_groups(helper: str, method: Method | None) -> None:
    data = report(helper, method, user=NOBODY, group=NOBODY, supplementary_groups=(100, 4242))
    assert data["groups"] == [100, 4242]
    assert data["gid"] == [NOBODY] * 3


@root_only
def test_group_only_keeps_uid(helper: str) -> None:
    data = report(helper, None, group=4242)
    assert data["uid"] == [0, 0, 0]
    assert data["gid"] == [4242] * 3
    assert data["groups"] == []


@root_only
@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m is not Method.SPAWN])
def test_negative_nice_for_a_dropped_user(helper: str, method: Method | None) -> None:
    data = report(helper, method, user=NOBODY, group=NOBODY, nice=-3)
    assert data["nice"] == -3
    assert data["uid"] == [NOBODY] * 3


def test_unprivileged_ignores_user_and_group(helper: str) -> None:
    data = report(helper, None, user=NOBODY, group=NOBODY, _as_root=False)
    assert data["uid"] == list(os.getresuid())
    assert data["gid"] == list(os.getresgid())


@pytest.mark.parametrize("method", ALL_METHODS)
def test_real_tcp_connection(helper: str, method: Method | None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        with client:
            conn, peer = listener.accept()
            service = make_service(server=PYTHON, environment=ENV,
                                   server_argv=("report-server", helper))
            try:
                if method is None:
                    pid = spawn(service, conn, peer[0], as_root=ROOT)
                else:
                    pid = Spawner(RealPosix()).spawn(service, conn, peer[0], as_root=ROOT,
                                                     method=method)
            finally:
                conn.close()
            data = json.loads(read_all(client))
    assert reap(pid) == 0
    assert data["fds"] == [0, 1, 2]
    assert data["environ"]["REMOTE_HOST"] == "127.0.0.1"


# -- signals: the master's signal state is changed in a separate interpreter ----------

SIGNAL_DRIVER = r"""
import json, os, signal, socket, sys
sys.path.insert(0, sys.argv[1])
from tests.factories import make_service
from pyxinetd.posix import RealPosix
from pyxinetd.spawner import Method, Spawner
if sys.argv[5] == "ignoring":
    for name in ("SIGHUP", "SIGCONT", "SIGTTIN", "SIGTTOU", "SIGTSTP", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGTERM])
else:  # as the daemon: recording handlers, nothing blocked
    for name in ("SIGHUP", "SIGCONT", "SIGTTIN", "SIGTTOU", "SIGTSTP", "SIGUSR2"):
        signal.signal(getattr(signal, name), lambda signum, frame: None)
method = None if sys.argv[2] == "auto" else Method(sys.argv[2])
creds = dict(user=65534, group=65534) if sys.argv[3] == "nobody" else {}
probe = ("sh", "-c", "grep -E '^SigIgn' /proc/$$/status; "
         "exec " + sys.argv[4] + " -c 'import re; print(open(\"/proc/self/status\").read())'")
results = {}
ours, theirs = socket.socketpair()
service = make_service(server="/bin/sh", server_argv=probe, environment=("LC_ALL=C.UTF-8",), **creds)
pid = Spawner(RealPosix()).spawn(service, theirs, "peer", as_root=os.geteuid() == 0, method=method)
theirs.close()
out = b""
while True:
    chunk = ours.recv(65536)
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
print(out.decode())
"""


# glibc's posix_spawn leaves its internal signals 32 and 33 ignored (SIGIgn bits 31, 32).
GLIBC_INTERNAL = (1 << 31) | (1 << 32)


@pytest.mark.parametrize("method,who,state", [
    ("auto", "self", "plain"), ("auto", "self", "ignoring"),
    ("posix_spawn", "self", "ignoring"), ("checklist", "self", "ignoring"),
    pytest.param("fork_exec", "self", "plain",
                 marks=pytest.mark.skipif(not HAVE_FORK_EXEC, reason="no fork_exec")),
    pytest.param("auto", "nobody", "plain", marks=root_only),
    pytest.param("auto", "nobody", "ignoring", marks=root_only),
    pytest.param("checklist", "nobody", "ignoring", marks=root_only),
])
def test_signals_default_and_unblocked(method: str, who: str, state: str) -> None:
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", SIGNAL_DRIVER, root, method, who, PYTHON, state],
                         capture_output=True, text=True, timeout=DEADLINE, check=True).stdout
    lines = out.splitlines()
    # The shell saw every disposition at its default (dash keeps inherited SIG_IGN).
    assert lines[0].startswith("SigIgn:"), out
    ignored = int(lines[0].split()[1], 16)
    uses_posix_spawn = method == "posix_spawn" or (
        method == "auto" and state == "ignoring" and who == "self")
    if uses_posix_spawn:
        ignored &= ~GLIBC_INTERNAL
    assert ignored == 0, out
    # Python (which blocks nothing on its own) saw an empty mask.
    sigblk = [line for line in lines if line.startswith("SigBlk:")]
    assert sigblk and sigblk[0].split()[1] == "0000000000000000", out


# -- exec failures -----------------------------------------------------------------------

@pytest.fixture
def bad_servers(tmp_path: Path) -> dict[str, str]:
    noexec = tmp_path / "noexec"
    noexec.write_text("#!/bin/sh\necho hi\n")
    noexec.chmod(0o644)
    badinterp = tmp_path / "badinterp"
    badinterp.write_text("#!/nonexistent/interpreter\n")
    badinterp.chmod(0o755)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program\n")
    garbage.chmod(0o755)
    return {"missing": str(tmp_path / "missing"), "noexec": str(noexec),
            "badinterp": str(badinterp), "garbage": str(garbage)}


EXPECTED_ERRNO = {"missing": errno.ENOENT, "noexec": errno.EACCES,
                  "badinterp": errno.ENOENT, "garbage": errno.ENOEXEC}


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("kind", sorted(EXPECTED_ERRNO))
def test_exec_failure(bad_servers: dict[str, str], kind: str, method: Method | None) -> None:
    service = make_service(server=bad_servers[kind], environment=ENV)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(SpawnError) as info:
            if method is None:
                spawn(service, theirs, "peer", as_root=ROOT)
            else:
                Spawner(RealPosix()).spawn(service, theirs, "peer", as_root=ROOT, method=method)
    assert info.value.errno == EXPECTED_ERRNO[kind]
    assert info.value.step == "exec"
    assert bad_servers[kind] in str(info.value)
    assert zombies_of_me() == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@root_only
@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m is not Method.SPAWN])
def test_exec_failure_as_nobody(tmp_path: Path, method: Method | None) -> None:
    private = tmp_path / "private"  # pytest's tmp dirs are 0700: nobody cannot reach it
    private.write_text("#!/bin/sh\n")
    private.chmod(0o755)
    service = make_service(server=str(private), user=NOBODY, group=NOBODY, environment=ENV)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(SpawnError) as info:
            if method is None:
                spawn(service, theirs, "peer", as_root=True)
            else:
                Spawner(RealPosix()).spawn(service, theirs, "peer", as_root=True, method=method)
    assert info.value.errno == errno.EACCES
    assert zombies_of_me() == []

