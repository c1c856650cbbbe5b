"""The spawner against the real kernel: each attribute of the child, on every path.

Each test starts tests/helpers/report_server.py (or a shell probe) through the spawner
with a real socketpair, reads what the server reports, and reaps the child itself, as
the master does (which also proves the spawner left it unreaped).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pwd
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

from pyxinetd.config import load
from pyxinetd.config.model import Rlimits
from pyxinetd.errors import SpawnError
from pyxinetd.posix import HAVE_FORK_EXEC, HAVE_NATIVE, NATIVE_ENABLED, RealPosix
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

# None = let the default spawner choose (the C extension when it was built);
# FALLBACK = let a spawner that does not use the C extension choose.
FALLBACK = "auto-fallback"
SpawnPath = Method | None | str
ALL_METHODS: list[SpawnPath] = [None, FALLBACK, Method.SPAWN, Method.CHECKLIST] + (
    [Method.FORK_EXEC] if HAVE_FORK_EXEC else []) + ([Method.NATIVE] if HAVE_NATIVE else [])
# The paths that can change credentials, and those that can set every rlimit.
CRED_METHODS = [m for m in ALL_METHODS if m is not Method.SPAWN]
RLIMIT_METHODS = [m for m in ALL_METHODS if m in (None, FALLBACK, Method.CHECKLIST,
                                                  Method.NATIVE)]


def start(service: Any, sock: socket.socket, remote_host: str, method: SpawnPath, *,
          as_root: bool) -> int:
    """Spawn through the path named by a test parameter."""
    if method is None:
        return spawn(service, sock, remote_host, as_root=as_root)
    if method == FALLBACK:
        return Spawner(RealPosix(native=False)).spawn(service, sock, remote_host,
                                                      as_root=as_root)
    assert isinstance(method, Method)
    return Spawner(RealPosix()).spawn(service, sock, remote_host, as_root=as_root,
                                      method=method)


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
    chunks: list[bytes] = []
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


def run(service: Any, method: SpawnPath, *, as_root: bool = ROOT,
        remote_host: str = "192.0.2.7") -> tuple[bytes, int]:
    ours, theirs = socket.socketpair()
    with ours:
        try:
            pid = start(service, theirs, remote_host, method, as_root=as_root)
        finally:
            theirs.close()
        out = read_all(ours)
    assert reap(pid) == 0, out
    return out, pid


def report(helper: str, method: SpawnPath, **overrides: Any) -> dict[str, Any]:
    as_root = overrides.pop("_as_root", ROOT)
    overrides.setdefault("environment", ENV)
    overrides.setdefault("server_argv", ("report-server", helper))
    service = make_service(server=PYTHON, **overrides)
    out, pid = run(service, method, as_root=as_root)
    data: dict[str, Any] = json.loads(out)
    assert data["pid"] == pid
    return data


@pytest.mark.parametrize("method", ALL_METHODS)
def test_only_the_socket_on_0_1_2(helper: str, method: SpawnPath) -> None:
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
@pytest.mark.parametrize("low", [False, True], ids=["file-above-2", "file-on-0"])
def test_stderr_to_a_file_instead_of_the_client(tmp_path: Path, method: SpawnPath,
                                                low: bool) -> None:
    # `stderr = FILE`: descriptor 2 is the file, 0 and 1 stay the connection. With
    # `low`, the file's own descriptor is 0 in the parent (a daemon started with
    # descriptors 0-2 closed), which the child must not overwrite before using it.
    path = tmp_path / "stderr.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    saved = None
    if low:
        saved = os.dup(0)
        os.dup2(fd, 0, inheritable=False)
        os.close(fd)
        fd = 0
    service = make_service(server="/bin/sh", environment=ENV,
                           server_argv=("sh", "-c",
                                        "echo out; echo err >&2; ls -l /proc/self/fd/2 >&2"))
    ours, theirs = socket.socketpair()
    try:
        with ours:
            try:
                pid = start_with_stderr(service, theirs, method, fd)
            finally:
                theirs.close()
            out = read_all(ours)
        assert reap(pid) == 0
    finally:
        if saved is not None:
            os.dup2(saved, 0)
            os.close(saved)
        else:
            os.close(fd)
    assert out == b"out\n"
    written = path.read_text().splitlines()
    assert written[0] == "err" and written[1].endswith(str(path))


def start_with_stderr(service: Any, sock: socket.socket, method: SpawnPath,
                      stderr_fd: int) -> int:
    if method is None:
        return spawn(service, sock, "peer", as_root=ROOT, stderr_fd=stderr_fd)
    if method == FALLBACK:
        return Spawner(RealPosix(native=False)).spawn(service, sock, "peer", as_root=ROOT,
                                                      stderr_fd=stderr_fd)
    assert isinstance(method, Method)
    return Spawner(RealPosix()).spawn(service, sock, "peer", as_root=ROOT, method=method,
                                      stderr_fd=stderr_fd)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_new_session(helper: str, method: SpawnPath) -> None:
    data = report(helper, method)
    assert data["sid"] == data["pid"] == data["pgid"]
    assert data["ppid"] == os.getpid()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_environment_and_argv(helper: str, method: SpawnPath) -> None:
    data = report(helper, method,
                  environment=ENV + ("REMOTE_HOST=stale", "EQ=a=b", "EMPTY="),
                  server_argv=("custom-name", helper, "one", "two words", ""))
    assert data["environ"] == {"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin", "EQ": "a=b",
                               "EMPTY": "", "REMOTE_HOST": "192.0.2.7"}
    assert data["argv"] == ["custom-name", helper, "one", "two words", ""]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_umask(helper: str, method: SpawnPath) -> None:
    mine = os.umask(0o022)
    os.umask(mine)
    assert report(helper, method, umask=0o027)["umask"] == 0o027
    assert report(helper, method)["umask"] == mine
    assert os.umask(mine) == mine  # the parent's umask was put back


@pytest.mark.parametrize("method", ALL_METHODS)
def test_nofile_defaults_to_the_daemon_hard_limit(helper: str, method: SpawnPath) -> None:
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


@pytest.mark.parametrize("method", RLIMIT_METHODS)
def test_rlimit_files(helper: str, method: SpawnPath) -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    data = report(helper, method, rlimits=Rlimits(files=512))
    assert data["rlimits"]["files"] == [512, 512]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


@pytest.mark.parametrize("method", ALL_METHODS)
def test_rlimit_files_unlimited_is_the_daemon_hard_limit(helper: str, method: SpawnPath) -> None:
    # The kernel refuses RLIM_INFINITY for RLIMIT_NOFILE (above fs.nr_open) even with
    # CAP_SYS_RESOURCE: `rlimit_files = UNLIMITED` must not fail every start; it gives
    # what an unset rlimit_files gives, the most the daemon may hand out.
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = before[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("hard NOFILE limit is unlimited")
    lowered = (min(before[0], 64), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, lowered)
    try:
        data = report(helper, method, rlimits=Rlimits(files=resource.RLIM_INFINITY))
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    assert data["rlimits"]["files"] == [hard, hard]


@pytest.mark.parametrize("method", RLIMIT_METHODS)
def test_other_rlimits(helper: str, method: SpawnPath) -> None:
    limits = Rlimits(as_=4 << 30, cpu=100, data=2 << 30, rss=1 << 30, stack=16 << 20)
    service = make_service(server=PYTHON, rlimits=limits)
    assert Spawner(RealPosix(native=False)).choose(
        build_request(service, 0, "x", as_root=ROOT, posix=RealPosix())) is Method.CHECKLIST
    data = report(helper, method, rlimits=limits)
    assert data["rlimits"]["as"] == [4 << 30, 4 << 30]
    assert data["rlimits"]["cpu"] == [100, 100]
    assert data["rlimits"]["data"] == [2 << 30, 2 << 30]
    assert data["rlimits"]["rss"] == [1 << 30, 1 << 30]
    assert data["rlimits"]["stack"] == [16 << 20, 16 << 20]


@pytest.mark.parametrize("method", ALL_METHODS if CAN_RENICE else [
    m for m in ALL_METHODS if m in (FALLBACK, Method.CHECKLIST, Method.NATIVE)
    or (m is None and NATIVE_ENABLED)])
def test_nice(helper: str, method: SpawnPath) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    data = report(helper, method, nice=5)
    assert data["nice"] == min(19, mine + 5)
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine


@pytest.mark.parametrize("method", ALL_METHODS if CAN_RENICE else [
    m for m in ALL_METHODS if m in (FALLBACK, Method.CHECKLIST, Method.NATIVE)
    or (m is None and NATIVE_ENABLED)])
def test_nice_beyond_the_priority_range(helper: str, method: SpawnPath) -> None:
    # xinetd accepts `nice = 100` (nice(2) clamps); the native spawn refused any
    # increment beyond 40 and the server never started.
    data = report(helper, method, nice=100)
    assert data["nice"] == 19


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_credentials(helper: str, method: SpawnPath) -> None:
    data = report(helper, method, user=NOBODY, group=NOBODY, supplementary_groups=())
    assert data["uid"] == [NOBODY] * 3
    assert data["gid"] == [NOBODY] * 3
    assert data["groups"] == []
    assert data["cap_eff"] == 0 and data["cap_prm"] == 0
    assert os.getresuid() == (0, 0, 0) and os.getresgid() == (0, 0, 0)


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_supplementary_groups(helper: str, method: SpawnPath) -> None:
    data = report(helper, method, user=NOBODY, group=NOBODY, supplementary_groups=(100, 4242))
    assert data["groups"] == [100, 4242]
    assert data["gid"] == [NOBODY] * 3


def user_with_other_gid() -> Any:
    """A passwd entry whose gid differs from its uid and is not a group numbered like
    the uid, or None."""
    for entry in pwd.getpwall():
        if entry.pw_uid != entry.pw_gid and entry.pw_uid not in os.getgrouplist(
                entry.pw_name, entry.pw_gid):
            return entry
    return None


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_numeric_user_with_groups_gets_the_users_own_groups(
        tmp_path: Path, helper: str, method: SpawnPath) -> None:
    # `user = UID` makes the primary gid the same number (xinetd), but `groups = yes`
    # is initgroups(name, the passwd gid): the user's groups, not the uid's number.
    entry = user_with_other_gid()
    if entry is None:
        pytest.skip("no user whose gid differs from its uid")
    conf = tmp_path / "conf"
    conf.write_text(f"service probe\n{{\n\ttype = UNLISTED\n\tport = 7\n"
                    f"\tsocket_type = stream\n\twait = no\n\tuser = {entry.pw_uid}\n"
                    f"\tgroups = yes\n\tserver = {PYTHON}\n"
                    f"\tserver_args = {helper}\n\tpassenv =\n}}\n")
    service = next(s for s in load(str(conf)).services if s.id == "probe")
    out, _ = run(service, method)
    data = json.loads(out)
    assert data["uid"] == [entry.pw_uid] * 3
    assert data["gid"] == [entry.pw_uid] * 3
    assert data["groups"] == sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_group_only_keeps_uid(helper: str, method: SpawnPath) -> None:
    data = report(helper, method, group=4242)
    assert data["uid"] == [0, 0, 0]
    assert data["gid"] == [4242] * 3
    assert data["groups"] == []


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_negative_nice_for_a_dropped_user(helper: str, method: SpawnPath) -> None:
    data = report(helper, method, user=NOBODY, group=NOBODY, nice=-3)
    assert data["nice"] == -3
    assert data["uid"] == [NOBODY] * 3


def test_unprivileged_ignores_user_and_group(helper: str) -> None:
    data = report(helper, None, user=NOBODY, group=NOBODY, _as_root=False)
    assert data["uid"] == list(os.getresuid())
    assert data["gid"] == list(os.getresgid())


@pytest.mark.parametrize("method", ALL_METHODS)
def test_real_tcp_connection(helper: str, method: SpawnPath) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        with client:
            conn, peer = listener.accept()
            service = make_service(server=PYTHON, environment=ENV,
                                   server_argv=("report-server", helper))
            try:
                pid = start(service, conn, peer[0], method, as_root=ROOT)
            finally:
                conn.close()
            data = json.loads(read_all(client))
    assert reap(pid) == 0
    assert data["fds"] == [0, 1, 2]
    assert data["environ"]["REMOTE_HOST"] == "127.0.0.1"


@pytest.mark.parametrize("method", ALL_METHODS)
def test_peerenv_replaces_earlier_values(helper: str, method: SpawnPath) -> None:
    # A name set twice would leave the older value first, where getenv() finds it.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        with client:
            conn, peer = listener.accept()
            service = make_service(server=PYTHON, flags=frozenset({"PEERENV"}),
                                   environment=ENV + ("PROTO=stale", "REMOTE_PORT=1",
                                                      "KEPT=yes"),
                                   server_argv=("report-server", helper))
            try:
                pid = start(service, conn, peer[0], method, as_root=ROOT)
            finally:
                conn.close()
            data = json.loads(read_all(client))
            port = client.getsockname()[1]
    assert reap(pid) == 0
    env = data["environ"]
    assert (env["PROTO"], env["REMOTE_PORT"], env["KEPT"]) == ("TCP", str(port), "yes")


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
method = None if sys.argv[2] in ("auto", "fallback") else Method(sys.argv[2])
posix = RealPosix(native=False) if sys.argv[2] == "fallback" else RealPosix()
creds = dict(user=65534, group=65534) if sys.argv[3] == "nobody" else {}
probe = ("sh", "-c", "grep -E '^SigIgn' /proc/$$/status; "
         "exec " + sys.argv[4] + " -c 'import re; print(open(\"/proc/self/status\").read())'")
results = {}
ours, theirs = socket.socketpair()
service = make_service(server="/bin/sh", server_argv=probe, environment=("LC_ALL=C.UTF-8",), **creds)
pid = Spawner(posix).spawn(service, theirs, "peer", as_root=os.geteuid() == 0, method=method)
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
    ("fallback", "self", "plain"), ("fallback", "self", "ignoring"),
    ("posix_spawn", "self", "ignoring"), ("checklist", "self", "ignoring"),
    pytest.param("native", "self", "ignoring",
                 marks=pytest.mark.skipif(not HAVE_NATIVE, reason="C extension not built")),
    pytest.param("native", "nobody", "ignoring",
                 marks=[root_only, pytest.mark.skipif(not HAVE_NATIVE, reason="not built")]),
    pytest.param("fork_exec", "self", "plain",
                 marks=pytest.mark.skipif(not HAVE_FORK_EXEC, reason="no fork_exec")),
    pytest.param("auto", "nobody", "plain", marks=root_only),
    pytest.param("auto", "nobody", "ignoring", marks=root_only),
    pytest.param("fallback", "nobody", "ignoring", marks=root_only),
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
    auto_fallback = method == "fallback" or (method == "auto" and not NATIVE_ENABLED)
    uses_posix_spawn = method == "posix_spawn" or (
        auto_fallback and state == "ignoring" and who == "self")
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
def test_exec_failure(bad_servers: dict[str, str], kind: str, method: SpawnPath) -> None:
    service = make_service(server=bad_servers[kind], environment=ENV)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(SpawnError) as info:
            start(service, theirs, "peer", method, as_root=ROOT)
    assert info.value.errno == EXPECTED_ERRNO[kind]
    assert info.value.step == "exec"
    assert bad_servers[kind] in str(info.value)
    # ENOENT for a file that is there: the message says which file is missing.
    assert (str(info.value).endswith("; its #! interpreter /nonexistent/interpreter does "
                                     "not exist")) == (kind == "badinterp"), str(info.value)
    assert zombies_of_me() == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_exec_failure_as_nobody(tmp_path: Path, method: SpawnPath) -> None:
    private = tmp_path / "private"  # pytest's tmp dirs are 0700: nobody cannot reach it
    private.write_text("#!/bin/sh\n")
    private.chmod(0o755)
    service = make_service(server=str(private), user=NOBODY, group=NOBODY, environment=ENV)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(SpawnError) as info:
            start(service, theirs, "peer", method, as_root=True)
    assert info.value.errno == errno.EACCES
    assert zombies_of_me() == []


@root_only
@pytest.mark.parametrize("method", CRED_METHODS)
def test_exec_failure_names_the_interpreter_the_user_cannot_reach(
        tmp_path: Path, method: SpawnPath) -> None:
    # The script is readable and executable by nobody, its #! interpreter is not
    # reachable (a Python under /root): the bare EACCES gets its cause.
    sh = tmp_path / "sh"        # pytest's tmp dirs are 0700
    sh.write_bytes(Path("/bin/sh").read_bytes())
    sh.chmod(0o755)
    closed = next(str(f) for f in reversed(sh.parents) if not os.stat(f).st_mode & 0o001)
    public = Path(tempfile.mkdtemp(prefix="pyxinetd-interp-"))
    try:
        public.chmod(0o755)
        script = public / "hello"
        script.write_text(f"#!{sh}\necho hi\n")
        script.chmod(0o755)
        service = make_service(server=str(script), user=NOBODY, group=NOBODY,
                               environment=ENV)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            with pytest.raises(SpawnError) as info:
                start(service, theirs, "peer", method, as_root=True)
    finally:
        shutil.rmtree(public)
    assert info.value.errno == errno.EACCES
    assert str(info.value).endswith(f"; uid {NOBODY} cannot run it: its #! interpreter "
                                    f"{sh}: no search permission on {closed}"), info.value
    assert zombies_of_me() == []


CHILD_RLIMIT_PATHS = [Method.CHECKLIST] + ([Method.NATIVE] if HAVE_NATIVE else [])


@pytest.mark.parametrize("method", CHILD_RLIMIT_PATHS)
def test_failing_rlimit_names_its_step(method: Method) -> None:
    # build_request asks only for what the daemon can give (test_ceilings.py), so the
    # child is handed a limit the kernel refuses directly, as one that the daemon's own
    # limits fell below since its start-up was prepared: above fs.nr_open (2**20 by
    # default) even root cannot set RLIMIT_NOFILE.
    service = make_service(server="/bin/true", environment=ENV)
    spawner = Spawner(RealPosix())
    ours, theirs = socket.socketpair()
    with ours, theirs:
        request = dataclasses.replace(
            build_request(service, theirs.fileno(), "peer", as_root=ROOT, posix=RealPosix()),
            nofile=(1 << 30, 1 << 30))
        run = spawner.run_native if method is Method.NATIVE else spawner.run_checklist
        with pytest.raises(SpawnError) as info:
            run(request)
    assert (info.value.errno, info.value.step) == (errno.EPERM, "rlimit_files")
    assert zombies_of_me() == []
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1 << 30


@pytest.mark.parametrize("method", RLIMIT_METHODS)
def test_a_limit_above_fs_nr_open_is_given_as_the_most_the_daemon_can(
        helper: str, method: SpawnPath) -> None:
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    capable = bool(RealPosix().effective_capabilities() & (1 << 24))  # CAP_SYS_RESOURCE
    given = nr_open if capable else min(hard, nr_open)
    data = report(helper, method, rlimits=Rlimits(files=1 << 30))
    assert data["rlimits"]["files"] == [given, given]


# A socket that is already fd 0, 1 or 2 (and close-on-exec, as Python makes it) must still
# end up on all three without close-on-exec: dup2(fd, fd) would leave the flag set.
LOW_FD_DRIVER = r"""
import fcntl, json, os, socket, sys
sys.path.insert(0, sys.argv[1])
from tests.factories import make_service
from pyxinetd.posix import RealPosix
from pyxinetd.spawner import Method, Spawner
low = int(sys.argv[3])
ours, theirs = socket.socketpair()
os.dup2(theirs.fileno(), low)
fcntl.fcntl(low, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
theirs.close()
service = make_service(server=sys.argv[4], server_argv=("report-server", sys.argv[5]),
                       environment=("LC_ALL=C.UTF-8",))
sock = socket.socket(fileno=low)
pid = Spawner(RealPosix()).spawn(service, sock, "peer", as_root=False, method=Method(sys.argv[2]))
sock.close()
out = b""
while True:
    chunk = ours.recv(65536)
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
os.write(int(sys.argv[6]), out)
"""


@pytest.mark.parametrize("low", [0, 2])
@pytest.mark.parametrize("method", [m for m in ALL_METHODS if isinstance(m, Method)])
def test_socket_already_on_a_low_descriptor(helper: str, method: Method, low: int) -> None:
    root = str(Path(__file__).resolve().parents[2])
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", LOW_FD_DRIVER, root, method.value, str(low), PYTHON, helper,
             str(write_end)], pass_fds=(write_end,), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL)
        os.close(write_end)
        write_end = -1
        with os.fdopen(read_end, "rb") as pipe:
            read_end = -1
            out = pipe.read()
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    data = json.loads(out)
    assert data["fds"] == [0, 1, 2]
    assert {data["fd_info"][str(fd)]["kind"] for fd in (0, 1, 2)} == {"socket"}
    assert len({data["fd_info"][str(fd)]["ino"] for fd in (0, 1, 2)}) == 1


def test_native_path_can_be_switched_off() -> None:
    env = dict(os.environ, PYXINETD_NATIVE_SPAWN="0")
    code = ("from pyxinetd.posix import NATIVE_ENABLED, RealPosix; "
            "print(NATIVE_ENABLED, RealPosix().native_available())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=DEADLINE, check=True).stdout
    assert out.split() == ["False", "False"]


# -- the C extension itself ------------------------------------------------------------

native_only = pytest.mark.skipif(not HAVE_NATIVE, reason="C extension not built")

NATIVE_PARENT_STATE = r"""
import os, signal, socket, sys
from pyxinetd import _spawn
got = []
signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
before = ({s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGHUP, signal.SIGPIPE)},
          signal.pthread_sigmask(signal.SIG_BLOCK, []))
ours, theirs = socket.socketpair()
for _ in range(20):
    pid = _spawn.spawn(b"/bin/true", [b"true"], [], theirs.fileno(), uid=65534 if os.geteuid() == 0 else -1)
    os.waitpid(pid, 0)
after = ({s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGHUP, signal.SIGPIPE)},
         signal.pthread_sigmask(signal.SIG_BLOCK, []))
assert before == after, (before, after)
os.kill(os.getpid(), signal.SIGUSR1)
assert got == [signal.SIGUSR1], got
assert os.getresuid() == (os.getuid(),) * 3
print("ok")
"""


@native_only
def test_native_leaves_the_parent_signal_state_and_ids_alone() -> None:
    # The child resets every disposition and its mask while sharing the parent's memory:
    # none of it may reach the parent (CLONE_VM without CLONE_SIGHAND).
    out = subprocess.run([sys.executable, "-c", NATIVE_PARENT_STATE], capture_output=True,
                         text=True, timeout=DEADLINE)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@native_only
def test_native_argument_errors_create_no_child() -> None:
    from pyxinetd import _spawn
    ours, theirs = socket.socketpair()
    with ours, theirs:
        fd = theirs.fileno()
        with pytest.raises(ValueError):
            _spawn.spawn(b"/bin/true", [b"tr\0ue"], [], fd)
        with pytest.raises(ValueError):
            _spawn.spawn(b"/bin/true", [b"true"], [b"A=\0"], fd)
        with pytest.raises(ValueError):
            _spawn.spawn(b"/bin/true", [], [], fd)
        with pytest.raises(ValueError):
            _spawn.spawn(b"/bin/true", [b"true"], [], fd, uid=2**32 - 1)
        with pytest.raises(ValueError):
            _spawn.spawn(b"/bin/true", [b"true"], [], fd, groups=[-5])
        with pytest.raises(TypeError):
            _spawn.spawn(b"/bin/true", ["true"], [], fd)  # type: ignore[list-item]
        with pytest.raises(TypeError):
            _spawn.spawn(b"/bin/true", [b"true"], [], fd, rlimits=[(1, 2)])  # type: ignore[list-item]
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@native_only
def test_native_reports_the_step_and_reaps() -> None:
    from pyxinetd import _spawn
    ours, theirs = socket.socketpair()
    with ours, theirs:
        fd = theirs.fileno()
        with pytest.raises(FileNotFoundError) as missing:
            _spawn.spawn(b"/nonexistent/server", [b"x"], [], fd)
        assert getattr(missing.value, "step") == "exec"
        with pytest.raises(OSError) as bad_fd:
            _spawn.spawn(b"/bin/true", [b"true"], [], 1 << 20)
        assert (bad_fd.value.errno, getattr(bad_fd.value, "step")) == (errno.EBADF,
                                                                        "descriptors")
        with pytest.raises(PermissionError) as limit:
            _spawn.spawn(b"/bin/true", [b"true"], [], fd, rlimits=[
                (resource.RLIMIT_CPU, 100, 100), (resource.RLIMIT_NOFILE, 1 << 30, 1 << 30)])
        assert getattr(limit.value, "step") == "rlimit"
        assert getattr(limit.value, "rlimit_index") == 1
        if not ROOT:
            with pytest.raises(PermissionError) as ids:
                _spawn.spawn(b"/bin/true", [b"true"], [], fd, groups=[])
            assert getattr(ids.value, "step") == "setgroups"
    assert zombies_of_me() == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
