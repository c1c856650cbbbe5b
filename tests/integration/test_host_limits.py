"""The host's process and memory limits, for real: the daemon runs in a cgroup of its
own (cgroup v1 `pids` or `memory` controller), or under an RLIMIT_NPROC its servers'
user has reached.

- pids.max at the daemon's own count: every fork fails with EAGAIN, root or not (the
  RLIMIT_NPROC tests of test_fork_retry.py need a daemon that is not root). Requests
  are held and retried (reference §4.15), a reload cannot start its loader child and
  keeps the running configuration;
- a memory limit a reload's loader child runs into: the OOM killer takes the loader,
  not the daemon (pyxinetd.oomscore);
- RLIMIT_NPROC of a server's user: setuid() succeeds, exec fails with EAGAIN.

Each cgroup is made for one test, the daemon moved into it by the command that starts
it (`sh` writes its own pid to cgroup.procs, then execs the daemon), and removed at
the end once the processes the test started in it are gone. Without root, or without
the controller, the tests skip.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, read_log, wait_until

CGROUP_ROOT = Path("/sys/fs/cgroup")
PRLIMIT = shutil.which("prlimit")
SETPRIV = shutil.which("setpriv")
_numbers = itertools.count()

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to make cgroups and change users")


class Cgroup:
    """A child cgroup of one controller, made for a test."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def wrapper(self) -> list[str]:
        """A command prefix that runs what follows in this cgroup (exec keeps the pid)."""
        return ["sh", "-c", f'echo $$ > {self.path / "cgroup.procs"} && exec "$@"', "sh"]

    def read(self, name: str) -> str:
        return (self.path / name).read_text().strip()

    def write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def pids(self) -> list[int]:
        return [int(pid) for pid in self.read("cgroup.procs").split()]


def _cgroup(controller: str, limit: str, unlimited: str) -> Iterator[Cgroup]:
    base = CGROUP_ROOT / controller
    if not (base / limit).exists() and not (base / "cgroup.procs").exists():
        pytest.skip(f"no cgroup v1 {controller} controller at {base}")
    path = base / f"pyxinetd-test-{os.getpid()}-{next(_numbers)}"
    try:
        path.mkdir()
    except OSError as err:
        pytest.skip(f"cannot make a {controller} cgroup: {err}")
    group = Cgroup(path)
    try:
        yield group
    finally:
        group.write(limit, unlimited)
        # Whatever the test started in it and left running (the daemon, its servers).
        for pid in group.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not group.pids(), what=f"{path} emptied")
        path.rmdir()


@pytest.fixture
def pids_cgroup() -> Iterator[Cgroup]:
    yield from _cgroup("pids", "pids.max", "max")


@pytest.fixture
def memory_cgroup() -> Iterator[Cgroup]:
    yield from _cgroup("memory", "memory.limit_in_bytes", "-1")


def _service(name: str, port: int, block: str | None = None, **attrs: str) -> str:
    lines = {"type": "UNLISTED", "socket_type": "stream", "protocol": "tcp",
             "port": str(port), "bind": "127.0.0.1", "wait": "no", **attrs}
    body = "".join(f"\t{key} = {value}\n" for key, value in lines.items())
    return f"service {block or name}\n{{\n{body}}}\n"


def _config(tmp_path: Path, *services: str) -> str:
    return (f"defaults\n{{\n\tlog_type = FILE {tmp_path / 'services.log'}\n"
            "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}\n"
            + "".join(services))


def _echo(name: str, port: int) -> str:
    """The echo builtin: served in the daemon's loop, without a process."""
    return _service(name, port, "echo", type="INTERNAL UNLISTED", id=name)


def _cat(name: str, port: int, **attrs: str) -> str:
    """A server that echoes its client until end of file, so it holds its instance."""
    return _service(name, port, user="root", server="/bin/cat", **attrs)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _echoes(port: int, sock: socket.socket | None = None) -> bool:
    """Whether the service at `port` (or the open connection `sock`) echoes a line."""
    conn = sock or _connect(port)
    try:
        conn.sendall(b"ping\n")
        return conn.recv(100) == b"ping\n"
    finally:
        if sock is None:
            conn.close()


def _services_log(tmp_path: Path) -> str:
    return read_log(tmp_path / "services.log")


def test_forks_failing_at_the_pids_limit_are_retried_and_no_instance_slot_is_lost(
        daemons: DaemonFactory, pids_cgroup: Cgroup, tmp_path: Path) -> None:
    gives, held = free_port(), free_port()
    wrapper = ["env", "PYXINETD_FORK_RETRY_INTERVAL=1", *pids_cgroup.wrapper]
    daemon = daemons.start_config(
        _config(tmp_path, _cat("gives", gives, instances="1"),
                _cat("held", held, instances="1")), wrapper=wrapper)
    # The daemon alone: no fork can succeed (a root daemon too, unlike RLIMIT_NPROC).
    pids_cgroup.write("pids.max", "1")

    # Given up after 5 failed forks, one line each, as xinetd (one request).
    with _connect(gives) as client:
        daemon.wait_for_log(r"service gives: too many consecutive fork failures")
        assert client.recv(100) == b""
    wait_until(lambda: "FAIL: gives fork from=127.0.0.1" in _services_log(tmp_path),
               what="FAIL: gives fork")
    assert daemon.log().count(
        "ERROR: gives: fork failed: Resource temporarily unavailable (errno = 11)\n") == 5

    # Held: the connection stays open while its fork is retried.
    with _connect(held) as client:
        daemon.wait_for_log(r"held: fork failed: Resource temporarily unavailable")
        pids_cgroup.write("pids.max", "max")
        assert _echoes(held, client)
        # Its slot is the server's now: instances = 1 refuses a second client.
        with _connect(held) as second:
            assert second.recv(100) == b""
    wait_until(lambda: "FAIL: held service_limit" in _services_log(tmp_path),
               what="FAIL: held service_limit")
    wait_until(lambda: "EXIT: held status=0" in _services_log(tmp_path), what="EXIT: held")

    # The request given up left no slot behind, nor did the one served.
    with _connect(gives) as client:
        assert _echoes(gives, client)
    with _connect(held) as client:
        assert _echoes(held, client)


def _named(tmp_path: Path, port: int, interval: str, cgroup: Cgroup,
           daemons: DaemonFactory) -> Daemon:
    """A daemon in `cgroup` whose service admits clients by name (only_from = localhost):
    each request needs the resolver helper, a process of its own."""
    wrapper = ["env", f"PYXINETD_FORK_RETRY_INTERVAL={interval}", *cgroup.wrapper]
    return daemons.start_config(
        _config(tmp_path, _cat("named", port, instances="1", only_from="localhost")),
        wrapper=wrapper)


def test_a_name_lookup_at_the_pids_limit_waits_for_the_resolver_like_a_failed_fork(
        daemons: DaemonFactory, pids_cgroup: Cgroup, tmp_path: Path) -> None:
    port = free_port()
    # Retried every 3 s: the limit is raised well before the 5th attempt gives up,
    # however slowly a loaded machine runs this test.
    daemon = _named(tmp_path, port, "3", pids_cgroup, daemons)
    pids_cgroup.write("pids.max", "1")
    with _connect(port) as client:
        daemon.wait_for_log(r"ERROR: cannot start the name resolver: Resource temporarily "
                            r"unavailable \(errno = 11\); 1 request waits, tried again "
                            r"in 3 s")
        pids_cgroup.write("pids.max", "max")
        # Held, not refused for want of a name: admitted once the helper could start.
        assert _echoes(port, client)
    assert "FAIL" not in _services_log(tmp_path)


def test_a_name_lookup_gives_up_after_five_resolver_starts_with_fail_fork(
        daemons: DaemonFactory, pids_cgroup: Cgroup, tmp_path: Path) -> None:
    port = free_port()
    daemon = _named(tmp_path, port, "0.05", pids_cgroup, daemons)
    pids_cgroup.write("pids.max", "1")
    with _connect(port) as client:
        daemon.wait_for_log(r"ERROR: cannot start the name resolver: Resource temporarily "
                            r"unavailable \(errno = 11\) \(the name of 127\.0\.0\.1 is "
                            r"not looked up\)")
        assert client.recv(100) == b""
    wait_until(lambda: "FAIL: named fork from=127.0.0.1" in _services_log(tmp_path),
               what="FAIL: named fork")
    assert daemon.log().count("cannot start the name resolver") == 5
    assert "FAIL: named address" not in _services_log(tmp_path)
    pids_cgroup.write("pids.max", "max")
    # Its instance slot was given back.
    with _connect(port) as client:
        assert _echoes(port, client)


def test_a_deny_rule_whose_aclexec_check_found_no_process_does_not_let_the_client_in(
        daemons: DaemonFactory, pids_cgroup: Cgroup, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text("cat: ALL: aclexec /bin/true\n")
    wrapper = ["env", "PYXINETD_FORK_RETRY_INTERVAL=1",
               f"PYXINETD_HOSTS_ALLOW={tmp_path / 'hosts.allow'}",
               f"PYXINETD_HOSTS_DENY={tmp_path / 'hosts.deny'}", *pids_cgroup.wrapper]
    daemon = daemons.start_config(_config(tmp_path, _cat("gated", port)), wrapper=wrapper)
    pids_cgroup.write("pids.max", "1")
    with _connect(port) as client:
        daemon.wait_for_log(r"cannot start the name resolver: Resource temporarily "
                            r"unavailable \(errno = 11\) \(aclexec not run: /bin/true\)")
        # Room again before a server's fork would have been given up: the check that
        # never ran must not count as one that failed (its deny rule skipped).
        pids_cgroup.write("pids.max", "max")
        assert client.recv(100) == b""
    wait_until(lambda: "FAIL: gated fork from=127.0.0.1" in _services_log(tmp_path),
               what="FAIL: gated fork")
    assert "START: gated" not in _services_log(tmp_path)


def test_a_reload_at_the_pids_limit_keeps_the_running_configuration(
        daemons: DaemonFactory, pids_cgroup: Cgroup, tmp_path: Path) -> None:
    old, new = free_port(), free_port()
    daemon = daemons.start_config(_config(tmp_path, _echo("old", old)),
                                  wrapper=pids_cgroup.wrapper)
    conf = tmp_path / "daemon1.conf"
    conf.write_text(_config(tmp_path, _echo("old", old), _echo("new", new)))
    pids_cgroup.write("pids.max", "1")

    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"WARNING: reconfiguration failed")
    assert ("ERROR: cannot start the configuration loader: Resource temporarily "
            "unavailable (errno = 11); the running configuration is kept\n") in daemon.log()
    assert _echoes(old)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", new), timeout=10).close()

    # Room again: the next reload loads the file.
    pids_cgroup.write("pids.max", "max")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: new=1 old=1 dropped=0")
    assert _echoes(old) and _echoes(new)


def test_the_oom_killer_takes_the_reload_loader_not_the_daemon(
        daemons: DaemonFactory, memory_cgroup: Cgroup, tmp_path: Path) -> None:
    port, new = free_port(), free_port()
    daemon = daemons.start_config(_config(tmp_path, _echo("kept", port)),
                                  wrapper=memory_cgroup.wrapper)
    (tmp_path / "daemon1.conf").write_text(
        _config(tmp_path, _echo("kept", port), _echo("new", new)))
    # Room for the daemon, not for a loader that imports the parser and parses (it
    # needs 12 to 20 MiB more).
    used = int(memory_cgroup.read("memory.usage_in_bytes"))
    memory_cgroup.write("memory.limit_in_bytes", str(used + 6 * 1024 * 1024))

    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"WARNING: reconfiguration failed")
    assert ("ERROR: the configuration loader exited without a result (terminated by "
            "SIGKILL: out of memory?); the running configuration is kept\n") in daemon.log()
    assert int(memory_cgroup.read("memory.oom_control").split()[-1]) >= 1  # oom_kill
    assert daemon.proc.poll() is None
    assert _echoes(port)

    memory_cgroup.write("memory.limit_in_bytes", "-1")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: new=1 old=1 dropped=0")
    assert _echoes(new)


@pytest.mark.skipif(PRLIMIT is None or SETPRIV is None, reason="needs util-linux")
def test_exec_refused_by_the_server_users_process_limit_names_the_limit(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    limited, kept = free_port(), free_port()
    assert PRLIMIT is not None and SETPRIV is not None
    # A process of nobody's, so that nobody is over a limit of 0 whatever else runs.
    sleeper = subprocess.Popen([SETPRIV, f"--reuid={nobody.pw_uid}",
                                f"--regid={nobody.pw_gid}", "--clear-groups",
                                "sleep", "600"], start_new_session=True)
    try:
        # Root forks whatever its RLIMIT_NPROC; its servers inherit the limit.
        daemon = daemons.start_config(
            _config(tmp_path, _service("limited", limited, user="nobody",
                                       server="/bin/echo", server_args="hello"),
                    _cat("kept", kept)),
            wrapper=[PRLIMIT, "--nproc=0:0", "--"])
        with _connect(limited) as client:
            assert client.recv(100) == b""
        daemon.wait_for_log(
            rf"ERROR: limited: cannot start /bin/echo: exec: Resource temporarily "
            rf"unavailable \(uid {nobody.pw_uid} has reached its process limit, "
            rf"RLIMIT_NPROC\)")
        wait_until(lambda: "FAIL: limited fork from=127.0.0.1" in _services_log(tmp_path),
                   what="FAIL: limited fork")
        # Not retried (the fork worked), and the daemon goes on serving.
        assert "limited: fork failed" not in daemon.log()
        assert _echoes(kept)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_deny_rule_whose_aclexec_check_got_no_thread_in_the_resolver_refuses(
        daemons: DaemonFactory, pids_cgroup: Cgroup, tmp_path: Path) -> None:
    """The helper runs each check on a thread of its own: at the pids limit none can be
    started, and the check never runs. Taken for a failed check, the denying rule was
    skipped and the client served once its server could be forked."""
    port = free_port()
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text("cat: ALL: aclexec /bin/true\n")
    wrapper = ["env", f"PYXINETD_HOSTS_ALLOW={tmp_path / 'hosts.allow'}",
               f"PYXINETD_HOSTS_DENY={tmp_path / 'hosts.deny'}", *pids_cgroup.wrapper]
    daemon = daemons.start_config(_config(tmp_path, _cat("gated", port)), wrapper=wrapper)
    # A first check starts the helper; refused by the rule its check confirms.
    with _connect(port) as client:
        assert client.recv(100) == b""
    wait_until(lambda: "FAIL: gated libwrap" in _services_log(tmp_path),
               what="the first request refused")
    # The daemon and its helper, the check's thread and shell gone: nothing more fits.
    wait_until(lambda: len(pids_cgroup.read("tasks").split()) == 2,
               what="the daemon and the helper alone in the cgroup")
    pids_cgroup.write("pids.max", "2")
    with _connect(port) as client:
        daemon.wait_for_log(r"(aclexec not run|aclexec did not finish).* for gated from "
                            r"127\.0\.0\.1")
        # Room for a server, were the request admitted.
        pids_cgroup.write("pids.max", "max")
        assert client.recv(100) == b""
    assert ("WARNING: aclexec not run (no thread could be started for it) (hosts.deny "
            "line 1) for gated from 127.0.0.1: refused\n") in daemon.log()
    wait_until(lambda: _services_log(tmp_path).count("FAIL: gated libwrap") == 2,
               what="the second request refused")
    assert "START: gated" not in _services_log(tmp_path)
