"""The spawner's call sequences, recorded through a fake posix facade (no process is created)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

import pytest

from pyxinetd.config.ceilings import Ceilings
from pyxinetd.config.model import Rlimits
from pyxinetd.errors import SpawnError
from pyxinetd.posix import HAVE_FORK_EXEC
from pyxinetd.spawner import Method, Spawner, build_request
from tests.factories import make_service

ERRPIPE = (40, 41)
ALL_CAPS = -1


class ChildExited(BaseException):
    def __init__(self, status: int) -> None:
        self.status = status


class RecordingPosix:
    """Records every call as (name, args); fork() returns `fork_result`."""

    def __init__(self, *, fork_result: int = 0, report: bytes = b"", euid: int = 0,
                 caps: int = ALL_CAPS, nofile: tuple[int, int] = (1024, 4096),
                 fail: Mapping[str, OSError] | None = None,
                 dispositions: Mapping[int, object] | None = None,
                 blocked: Sequence[int] = (), native: bool = False,
                 native_error: OSError | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.native = native
        self.native_error = native_error
        self.fork_result = fork_result
        self.report = report
        self.euid = euid
        self.caps = caps
        self.limits = {resource.RLIMIT_NOFILE: nofile}
        self.fail = dict(fail or {})
        self.dispositions = dict(dispositions or {})
        self.blocked = list(blocked)
        self.mask = 0o022
        self.priority = 0

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def fork(self) -> int:
        self._record("fork")
        return self.fork_result

    def posix_spawn(self, path: str, argv: Sequence[str], env: Mapping[str, str], *,
                    file_actions: Sequence[tuple[int, ...]], setsigdef: Sequence[int]) -> int:
        self._record("posix_spawn", path, tuple(argv), dict(env), list(file_actions))
        return 777

    def fork_exec(self, path: str, argv: Sequence[str], env: Sequence[str], *, fd: int,
                  errpipe: tuple[int, int], uid: int | None, gid: int | None,
                  groups: Sequence[int] | None, umask: int, stderr_fd: int = -1) -> int:
        self._record("fork_exec", path, tuple(argv), uid, gid,
                     None if groups is None else tuple(groups), umask)
        return 888

    def native_available(self) -> bool:
        return self.native

    def native_spawn(self, path: bytes, argv: Sequence[bytes], env: Sequence[bytes], *,
                     fd: int, groups: Sequence[int] | None, gid: int, uid: int, umask: int,
                     nice: int | None, rlimits: Sequence[tuple[int, int, int]],
                     stderr_fd: int = -1) -> int:
        self._record("native_spawn", path, tuple(argv), tuple(env), fd,
                     None if groups is None else tuple(groups), gid, uid, umask, nice,
                     list(rlimits))
        if self.native_error is not None:
            raise self.native_error
        return 999

    def execve(self, path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self._record("execve", path, tuple(argv), dict(env))

    def exit_now(self, status: int) -> NoReturn:
        self.calls.append(("exit_now", status))
        raise ChildExited(status)

    def waitpid(self, pid: int) -> None:
        self._record("waitpid", pid)

    def pipe(self) -> tuple[int, int]:
        self._record("pipe")
        return ERRPIPE

    def read_all(self, fd: int) -> bytes:
        self._record("read_all", fd)
        return self.report

    def write(self, fd: int, data: bytes) -> None:
        self._record("write", fd, data)

    def close(self, fd: int) -> None:
        self._record("close", fd)

    def dup2(self, fd: int, fd2: int) -> None:
        self._record("dup2", fd, fd2)

    def dup_above(self, fd: int, lowest: int) -> int:
        self._record("dup_above", fd, lowest)
        return 50

    def closerange(self, low: int, high: int) -> None:
        self._record("closerange", low, high)

    def open_fds(self) -> list[int]:
        return [0, 1, 2, 7, 8, 9]

    def is_cloexec(self, fd: int) -> bool:
        return fd != 8  # fd 8 was made inheritable by someone

    def reset_signal_dispositions(self) -> None:
        self._record("reset_signal_dispositions")

    def set_sigmask(self, signals: Sequence[int]) -> list[int]:
        self._record("set_sigmask", list(signals))
        return []

    def block_signals(self) -> list[int]:
        self._record("block_signals")
        return [int(signal.SIGUSR1)]

    def blocked_signals(self) -> list[int]:
        return self.blocked

    def disposition(self, signum: int) -> object:
        if signum in self.dispositions:
            return self.dispositions[signum]
        if signum in (signal.SIGPIPE, signal.SIGXFSZ):
            return signal.SIG_IGN
        return signal.SIG_DFL

    def setsid(self) -> None:
        self._record("setsid")

    def umask(self, mask: int) -> int:
        self._record("umask", mask)
        old, self.mask = self.mask, mask
        return old

    def nice(self, increment: int) -> None:
        self._record("nice", increment)

    def getpriority(self) -> int:
        return self.priority

    def setpriority(self, value: int) -> None:
        self._record("setpriority", value)
        self.priority = value

    def getrlimit(self, res: int) -> tuple[int, int]:
        return self.limits.get(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def setrlimit(self, res: int, limits: tuple[int, int]) -> None:
        self._record("setrlimit", res, limits)
        self.limits[res] = limits

    def setgroups(self, groups: Sequence[int]) -> None:
        self._record("setgroups", tuple(groups))

    def setgid(self, gid: int) -> None:
        self._record("setgid", gid)

    def setuid(self, uid: int) -> None:
        self._record("setuid", uid)

    def geteuid(self) -> int:
        return self.euid

    def effective_capabilities(self) -> int:
        return self.caps


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    a, b = socket.socketpair()
    with a, b:
        yield b


def full_service(**overrides: Any) -> Any:
    fields: dict[str, Any] = dict(
        server="/usr/sbin/in.fingerd", server_argv=("in.fingerd", "-w"),
        environment=("PATH=/bin", "REMOTE_HOST=stale"), user=65534, group=65533,
        supplementary_groups=(100, 200), umask=0o027, nice=-5,
        rlimits=Rlimits(files=64, as_=1 << 30, cpu=10, stack=1 << 23))
    fields.update(overrides)
    return make_service(**fields)


# The request is built from what this process may give a server (build_request reads
# pyxinetd.config.ceilings): full_service()'s nice = -5 is only asked for where lowering
# nice is allowed, as root with CAP_SYS_NICE.
gives_full_service = pytest.mark.skipif(
    Ceilings.of_this_process().granted_nice(-5) != -5,
    reason="nice = -5 needs a process that may lower its nice (root, CAP_SYS_NICE)")


@gives_full_service
def test_child_checklist_runs_in_order(sock: socket.socket) -> None:
    fake = RecordingPosix(fork_result=0)
    with pytest.raises(ChildExited) as exited:
        Spawner(fake).spawn(full_service(), sock, "10.0.0.9", as_root=True)
    assert exited.value.status == 127
    fd = sock.fileno()
    assert fake.calls == [
        ("pipe",),
        ("block_signals",),
        ("fork",),
        ("reset_signal_dispositions",),
        ("set_sigmask", []),
        ("dup2", fd, 0), ("dup2", fd, 1), ("dup2", fd, 2),
        ("closerange", 3, ERRPIPE[1]), ("closerange", ERRPIPE[1] + 1, 2**31 - 1),
        ("setsid",),
        ("umask", 0o027),
        ("nice", -5),
        ("setrlimit", resource.RLIMIT_NOFILE, (64, 64)),
        ("setrlimit", resource.RLIMIT_AS, (1 << 30, 1 << 30)),
        ("setrlimit", resource.RLIMIT_CPU, (10, 10)),
        ("setrlimit", resource.RLIMIT_STACK, (1 << 23, 1 << 23)),
        ("setgroups", (100, 200)),
        ("setgid", 65533),
        ("setuid", 65534),
        ("execve", "/usr/sbin/in.fingerd", ("in.fingerd", "-w"),
         {"PATH": "/bin", "REMOTE_HOST": "10.0.0.9"}),
        ("exit_now", 127),
    ]


def test_child_moves_a_low_socket_above_2_first() -> None:
    fake = RecordingPosix(fork_result=0)
    request = build_request(make_service(server="/bin/cat", rlimits=Rlimits(cpu=1)), 1, "h",
                            as_root=False, posix=fake)
    with pytest.raises(ChildExited):
        Spawner(fake).child_checklist(request, ERRPIPE[1])
    assert fake.calls[2:6] == [("dup_above", 1, 3), ("dup2", 50, 0), ("dup2", 50, 1),
                               ("dup2", 50, 2)]


def test_child_failure_reports_errno_and_step_then_exits(sock: socket.socket) -> None:
    fake = RecordingPosix(fork_result=0, fail={"setuid": PermissionError(errno.EPERM,
                                                                         "Operation not permitted")})
    with pytest.raises(ChildExited):
        Spawner(fake).spawn(full_service(), sock, "h", as_root=True)
    assert "execve" not in fake.names()
    assert fake.calls[-2:] == [("write", ERRPIPE[1], b"1:setuid:Operation not permitted"),
                               ("exit_now", 127)]


def test_no_credential_steps_when_unprivileged(sock: socket.socket) -> None:
    fake = RecordingPosix(fork_result=0, euid=1000, caps=0)
    with pytest.raises(ChildExited):
        Spawner(fake).spawn(full_service(), sock, "h", as_root=False)
    assert not {"setgroups", "setgid", "setuid"} & set(fake.names())


def test_parent_returns_pid_and_never_waits(sock: socket.socket) -> None:
    fake = RecordingPosix(fork_result=4242, report=b"")
    assert Spawner(fake).spawn(full_service(), sock, "h", as_root=True) == 4242
    assert fake.calls == [("pipe",), ("block_signals",), ("fork",),
                          ("set_sigmask", [int(signal.SIGUSR1)]), ("close", ERRPIPE[1]),
                          ("read_all", ERRPIPE[0]), ("close", ERRPIPE[0])]


def test_parent_reaps_a_child_that_failed_and_raises(sock: socket.socket) -> None:
    fake = RecordingPosix(fork_result=4242, report=b"2:exec:No such file or directory")
    with pytest.raises(SpawnError) as info:
        Spawner(fake).spawn(full_service(), sock, "h", as_root=True)
    assert (info.value.errno, info.value.step) == (errno.ENOENT, "exec")
    assert "/usr/sbin/in.fingerd" in str(info.value)
    assert fake.calls[-1] == ("waitpid", 4242)


def test_fork_failure(sock: socket.socket) -> None:
    fake = RecordingPosix(fail={"fork": BlockingIOError(errno.EAGAIN, "Resource busy")})
    with pytest.raises(SpawnError) as info:
        Spawner(fake).spawn(full_service(), sock, "h", as_root=True)
    assert (info.value.errno, info.value.step) == (errno.EAGAIN, "fork")
    assert ("set_sigmask", [int(signal.SIGUSR1)]) in fake.calls  # mask restored


# -- choosing the path ------------------------------------------------------------------

def choose(fake: RecordingPosix, as_root: bool = True, **overrides: Any) -> Method:
    request = build_request(make_service(server="/bin/cat", **overrides), 5, "h",
                            as_root=as_root, posix=fake)
    return Spawner(fake).choose(request)


FAST = Method.FORK_EXEC if HAVE_FORK_EXEC else Method.SPAWN


def test_choice_of_path() -> None:
    assert choose(RecordingPosix()) is FAST
    assert choose(RecordingPosix(), user=65534, group=65534) is (
        Method.FORK_EXEC if HAVE_FORK_EXEC else Method.CHECKLIST)
    assert choose(RecordingPosix(), rlimits=Rlimits(as_=1 << 30)) is Method.CHECKLIST
    assert choose(RecordingPosix(), nice=3, umask=0o077) is FAST
    # A master that ignores or blocks signals: the C path would leave them so.
    hup = {int(signal.SIGHUP): signal.SIG_IGN}
    assert choose(RecordingPosix(dispositions=hup)) is Method.SPAWN
    assert choose(RecordingPosix(dispositions=hup), user=65534) is Method.CHECKLIST
    assert choose(RecordingPosix(blocked=[int(signal.SIGTERM)]), group=5) is Method.CHECKLIST
    # Without CAP_SYS_NICE/CAP_SYS_RESOURCE nothing irreversible is lent by the parent.
    assert choose(RecordingPosix(euid=1000, caps=0), as_root=False, nice=3) is Method.CHECKLIST
    assert choose(RecordingPosix(caps=0), rlimits=Rlimits(files=64)) is Method.CHECKLIST
    assert choose(RecordingPosix(caps=0)) is FAST  # soft NOFILE raised to hard: reversible


def test_posix_spawn_lends_parent_state_and_puts_it_back(sock: socket.socket) -> None:
    fake = RecordingPosix(nofile=(1024, 4096))
    fake.priority = 2
    service = make_service(server="/bin/cat", umask=0o077, nice=4, environment=("A=1",))
    assert Spawner(fake).spawn(service, sock, "h", as_root=True, method=Method.SPAWN) == 777
    fd = sock.fileno()
    assert fake.calls == [
        ("umask", 0o077),
        ("setrlimit", resource.RLIMIT_NOFILE, (4096, 4096)),
        ("setpriority", 6),
        ("posix_spawn", "/bin/cat", ("cat",), {"A": "1", "REMOTE_HOST": "h"},
         [(os.POSIX_SPAWN_DUP2, fd, t) for t in (0, 1, 2)]
         + [(os.POSIX_SPAWN_CLOSE, 8)]),
        ("setpriority", 2),
        ("setrlimit", resource.RLIMIT_NOFILE, (1024, 4096)),
        ("umask", 0o022),
    ]


def test_fork_exec_passes_credentials_and_restores_parent(sock: socket.socket) -> None:
    fake = RecordingPosix(nofile=(4096, 4096))
    service = make_service(server="/bin/cat", user=65534, group=65533,
                           supplementary_groups=(7,), nice=1)
    assert Spawner(fake).spawn(service, sock, "h", as_root=True,
                               method=Method.FORK_EXEC) == 888
    assert fake.calls == [
        ("pipe",),
        ("setpriority", 1),
        ("fork_exec", "/bin/cat", ("cat",), 65534, 65533, (7,), -1),
        ("setpriority", 0),
        ("close", ERRPIPE[1]),
        ("read_all", ERRPIPE[0]),
        ("close", ERRPIPE[0]),
    ]


def test_fork_exec_error_is_decoded_and_child_reaped(sock: socket.socket) -> None:
    fake = RecordingPosix(report=b"OSError:d:noexec")
    with pytest.raises(SpawnError) as info:
        Spawner(fake).spawn(make_service(server="/bin/cat", user=1), sock, "h", as_root=True,
                            method=Method.FORK_EXEC)
    assert (info.value.errno, info.value.step) == (errno.EACCES, "credentials")
    assert fake.calls[-1] == ("waitpid", 888)


def test_environment_replaces_remote_host_in_its_place() -> None:
    # As xinetd: a REMOTE_HOST already in the service's environment keeps its place.
    request = build_request(make_service(environment=("A=1", "REMOTE_HOST=x", "B=2")), 3,
                            "::1", as_root=False, posix=RecordingPosix())
    assert request.env == ("A=1", "REMOTE_HOST=::1", "B=2")
    assert request.remote_at == 1
    request = build_request(make_service(environment=("A=1", "B=2")), 3, "::1",
                            as_root=False, posix=RecordingPosix())
    assert request.env == ("A=1", "B=2", "REMOTE_HOST=::1") and request.remote_at == 2


@pytest.mark.parametrize("planned", [True, False], ids=["plan", "request"])
def test_native_spawn_puts_remote_host_in_its_place(sock: socket.socket,
                                                    planned: bool) -> None:
    fake = RecordingPosix(native=True)
    service = make_service(environment=("A=1", "REMOTE_HOST=x", "B=2"))
    if planned:
        Spawner(fake).spawn(service, sock, "10.0.0.9", as_root=False)
    else:
        Spawner(fake).spawn(service, sock, "10.0.0.9", as_root=False, method=Method.NATIVE)
    (call,) = [c for c in fake.calls if c[0] == "native_spawn"]
    assert call[3] == (b"A=1", b"REMOTE_HOST=10.0.0.9", b"B=2")


def test_group_defaults_to_the_users_primary_group() -> None:
    request = build_request(make_service(user=0, group=None), 3, "h", as_root=True,
                            posix=RecordingPosix())
    assert request.credentials is not None and request.credentials.gid == 0


# -- the C extension ------------------------------------------------------------------

def test_native_is_first_choice_for_every_service() -> None:
    assert choose(RecordingPosix(native=True)) is Method.NATIVE
    assert choose(RecordingPosix(native=True), user=65534, group=65534) is Method.NATIVE
    assert choose(RecordingPosix(native=True), rlimits=Rlimits(as_=1 << 30)) is Method.NATIVE
    assert choose(RecordingPosix(caps=0, native=True), nice=-3,
                  rlimits=Rlimits(files=64)) is Method.NATIVE
    hup = {int(signal.SIGHUP): signal.SIG_IGN}
    assert choose(RecordingPosix(dispositions=hup, blocked=[int(signal.SIGTERM)], native=True),
                  user=1) is Method.NATIVE


@gives_full_service
def test_native_gets_the_whole_checklist_and_the_parent_lends_nothing(
        sock: socket.socket) -> None:
    fake = RecordingPosix(native=True, nofile=(1024, 4096))
    assert Spawner(fake).spawn(full_service(), sock, "10.0.0.9", as_root=True) == 999
    assert fake.calls == [
        ("native_spawn", b"/usr/sbin/in.fingerd", (b"in.fingerd", b"-w"),
         (b"PATH=/bin", b"REMOTE_HOST=10.0.0.9"), sock.fileno(), (100, 200), 65533, 65534,
         0o027, -5,
         [(resource.RLIMIT_NOFILE, 64, 64), (resource.RLIMIT_AS, 1 << 30, 1 << 30),
          (resource.RLIMIT_CPU, 10, 10), (resource.RLIMIT_STACK, 1 << 23, 1 << 23)]),
    ]


def test_native_without_credentials_or_extras(sock: socket.socket) -> None:
    fake = RecordingPosix(native=True, nofile=(1024, 4096))
    service = make_service(server="/bin/cat", environment=("A=1",), user=65534, nice=0)
    Spawner(fake).spawn(service, sock, "h", as_root=False)
    assert fake.calls[0][5:] == (None, -1, -1, -1, None,
                                 [(resource.RLIMIT_NOFILE, 4096, 4096)])


def test_native_group_only(sock: socket.socket) -> None:
    fake = RecordingPosix(native=True, nofile=(resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    Spawner(fake).spawn(make_service(server="/bin/cat", group=5), sock, "h", as_root=True)
    assert fake.calls[0][5:] == ((), 5, -1, -1, None, [])


def native_failure(step: str, code: int, index: int = -1) -> OSError:
    err = OSError(code, os.strerror(code))
    err.step = step  # type: ignore[attr-defined]
    err.rlimit_index = index  # type: ignore[attr-defined]
    return err


@pytest.mark.parametrize("step,index,expected", [
    ("setuid", -1, "setuid"), ("exec", -1, "exec"), ("rlimit", 0, "rlimit_files"),
    ("rlimit", 2, "rlimit_cpu"), ("fork", -1, "fork"),
])
def test_native_failure_names_the_step(sock: socket.socket, step: str, index: int,
                                       expected: str) -> None:
    fake = RecordingPosix(native=True, native_error=native_failure(step, errno.EPERM, index))
    with pytest.raises(SpawnError) as info:
        Spawner(fake).spawn(full_service(), sock, "h", as_root=True)
    assert (info.value.errno, info.value.step) == (errno.EPERM, expected)
    assert f"{expected}: Operation not permitted" in str(info.value)
    assert fake.names() == ["native_spawn"]  # the extension reaped its failed child


def test_native_embedded_nul_is_an_exec_error(sock: socket.socket) -> None:
    fake = RecordingPosix(native=True, native_error=None)

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise ValueError("embedded null byte")
    fake.native_spawn = refuse  # type: ignore[method-assign]
    with pytest.raises(SpawnError) as info:
        Spawner(fake).spawn(make_service(server="/bin/cat"), sock, "h", as_root=True)
    assert (info.value.errno, info.value.step) == (errno.EINVAL, "exec")
