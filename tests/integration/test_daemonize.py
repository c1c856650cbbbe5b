"""Detached start: readiness, exit status, detachment, pidfile and its lock.

Every daemon is started the way an operator would (`pyxinetd -f FILE -pidfile FILE`,
no -dontfork) and is killed at the end through the pid in its pidfile, with its process
group (fixture `detached`).
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.daemon import (DaemonFactory, alive, free_port, kill_detached, namespace_problem,
                          read_pid, syslog_until, wait_until)

START_TIMEOUT = 30.0


def echo_conf(port: int) -> str:
    return (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n}}\n")


class Detached:
    """Starts detached daemons and remembers their pids for the final kill."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pids: set[int] = set()
        self.pidfiles: list[Path] = []
        self.n = 0

    def start(self, conf_text: str | None, *args: str, pidfile: Path | None = None,
              umask: int | None = None, prefix: Sequence[str] = ()
              ) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
        """Run the start command to completion; returns (result, pidfile, log).
        `prefix` is a command that execs the rest (the pid stays the start command's)."""
        self.n += 1
        conf = self.tmp_path / f"d{self.n}.conf"
        if conf_text is not None:
            conf.write_text(conf_text)
        log = self.tmp_path / f"d{self.n}.log"
        pidfile = pidfile or self.tmp_path / f"d{self.n}.pid"
        self.pidfiles.append(pidfile)
        argv = [sys.executable, "-m", "pyxinetd", "-f", str(conf), "-filelog", str(log),
                "-pidfile", str(pidfile), *args]
        if umask is not None:
            argv = ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *argv]
        argv = [*prefix, *argv]
        # Captured output: if the daemon kept the start command's stdout or stderr
        # open, run() would wait for the timeout instead of returning.
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=START_TIMEOUT, cwd=self.tmp_path)
        pid = read_pid(pidfile)
        if pid is not None:
            self.pids.add(pid)
        return result, pidfile, log

    def kill_all(self) -> None:
        kill_detached(self.pids, self.pidfiles)


@pytest.fixture
def detached(tmp_path: Path) -> Iterator[Detached]:
    factory = Detached(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


def echo_roundtrip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"ping\n")
        return conn.recv(100)


def stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_start_returns_once_serving_and_the_daemon_is_detached(detached: Detached) -> None:
    port = free_port()
    result, pidfile, log = detached.start(echo_conf(port), umask=0o027)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # No waiting: the start command returned, so the service answers now.
    assert echo_roundtrip(port) == b"ping\n"

    pid = read_pid(pidfile)
    assert pid is not None
    assert pidfile.read_text() == f"{pid}\n"
    assert pidfile.stat().st_mode & 0o777 == 0o644
    # The pid in the pidfile is the process that serves and logs.
    assert f"xinetd[{pid}]: NOTICE: Started working: 1 available service" in log.read_text()

    # Detached: not our child, not in our session, not a session leader (so it can
    # never acquire a controlling terminal), and it has no controlling terminal.
    fields = stat_fields(pid)
    ppid, pgrp, session, tty_nr = (int(x) for x in fields[1:5])
    assert ppid != os.getpid()
    assert session != os.getsid(0)
    assert session != pid and pgrp != pid
    assert tty_nr == 0
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    # The readiness pipe is closed once the daemon reported: right after writing its
    # report, so possibly just after the start command returned.
    def pipes() -> list[str]:
        found = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if int(fd) > 2:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except FileNotFoundError:
                    continue    # closed between the listing and the reading
                if target.startswith("pipe:"):
                    found.append(target)
        return found
    wait_until(lambda: not pipes(), 5, what="the readiness pipe to be closed")
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Umask:\t0027" in status


def test_sigterm_removes_the_pidfile(detached: Detached) -> None:
    port = free_port()
    result, pidfile, log = detached.start(echo_conf(port))
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), what="the daemon to exit")
    assert not pidfile.exists()
    assert "WARNING: Exiting..." in log.read_text()


def test_sigquit_removes_the_pidfile(detached: Detached) -> None:
    result, pidfile, _ = detached.start(echo_conf(free_port()))
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGQUIT)
    wait_until(lambda: not alive(pid), what="the daemon to exit")
    assert not pidfile.exists()


def test_nothing_to_serve_fails_with_the_reason_on_stderr(detached: Detached) -> None:
    port = free_port()
    # Someone else listens on the service's port: every bind attempt fails.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result, pidfile, log = detached.start(echo_conf(port))
    assert result.returncode == 1
    assert "Service echo failed to start and is deactivated." in result.stderr
    assert "CRITICAL: no services. Exiting..." in result.stderr
    # The pidfile written by the daemon is removed on "no services".
    assert not pidfile.exists()
    assert "no services. Exiting..." in log.read_text()


@pytest.mark.skipif(namespace_problem("ip") is not None, reason=str(namespace_problem("ip")))
def test_a_service_waiting_for_its_address_is_said_to_wait(detached: Detached) -> None:
    # A boot where the network comes up after the daemon: the start command showed only
    # xinetd's `failed to start and is deactivated`, which reads as a dead service,
    # and not the line saying it is bound once the address appears.
    conf = echo_conf(free_port()).replace("bind = 127.0.0.1", "bind = 10.77.0.1")
    result, _, _ = detached.start(conf, prefix=(
        "unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    deactivated = lines.index("pyxinetd: ERROR: Service echo failed to start and is deactivated.")
    assert lines[deactivated + 1] == ("pyxinetd: NOTICE: Service echo will be activated when "
                                      "address 10.77.0.1 appears"), result.stderr


def test_unreadable_configuration_fails_before_detaching(detached: Detached) -> None:
    result, pidfile, log = detached.start(None)
    assert result.returncode == 1
    assert "couldn't get configuration" in result.stderr
    assert not pidfile.exists()
    assert "couldn't get configuration" in log.read_text()


def test_a_second_daemon_on_the_same_pidfile_refuses(detached: Detached) -> None:
    port = free_port()
    first, pidfile, _ = detached.start(echo_conf(port))
    assert first.returncode == 0, first.stderr
    pid = read_pid(pidfile)

    second, _, log2 = detached.start(echo_conf(free_port()), pidfile=pidfile)
    assert second.returncode == 1
    assert f"pidfile {pidfile} is locked by pid {pid}" in second.stderr
    assert "already running" in second.stderr
    foreground, _, _ = detached.start(echo_conf(free_port()), "-dontfork", pidfile=pidfile)
    assert foreground.returncode == 1
    assert "already running" in foreground.stderr

    # The first daemon and its pidfile are untouched.
    assert read_pid(pidfile) == pid
    assert echo_roundtrip(port) == b"ping\n"


@pytest.mark.parametrize("closing", ["<&- >&- 2>&-", ">&-", "<&-", "2>&-"])
def test_start_with_standard_descriptors_closed(detached: Detached, tmp_path: Path,
                                                closing: str) -> None:
    # xinetd points a closed 0, 1 or 2 at /dev/null first thing. pyxinetd used to die
    # with a traceback (sys.stdout is None), or lose its readiness pipe to /dev/null.
    port = free_port()
    conf, log, pidfile = tmp_path / "c.conf", tmp_path / "c.log", tmp_path / "c.pid"
    conf.write_text(echo_conf(port))
    detached.pidfiles.append(pidfile)
    result = subprocess.run(
        ["sh", "-c", f'exec "$@" {closing}', "sh", sys.executable, "-m", "pyxinetd",
         "-f", str(conf), "-filelog", str(log), "-pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT)
    pid = read_pid(pidfile)
    if pid is not None:
        detached.pids.add(pid)
    assert result.returncode == 0, result.stderr
    assert pid is not None and alive(pid)
    assert echo_roundtrip(port) == b"ping\n"
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"


def _run_with_stderr_unread(argv: list[str]) -> int:
    """Run argv with stderr a pipe whose reader is gone (every write fails: EPIPE)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=writer, timeout=START_TIMEOUT).returncode
    finally:
        os.close(writer)


@pytest.mark.parametrize("extra", [("-inetd_ipv6",), ("-syslog", "no-such-facility")])
def test_a_stderr_nobody_reads_does_not_change_the_start(detached: Detached, tmp_path: Path,
                                                         extra: tuple[str, ...]) -> None:
    # Each option makes the start command say something on stderr (an unknown option
    # is ignored; a bad facility is reported by the daemon). With nobody left to read
    # it, pyxinetd used to die on the write: no daemon at all for the first, a daemon
    # serving behind an exit status of 1 for the second. xinetd starts in both cases.
    port = free_port()
    conf, pidfile = tmp_path / "u.conf", tmp_path / "u.pid"
    conf.write_text(echo_conf(port))
    detached.pidfiles.append(pidfile)
    status = _run_with_stderr_unread([sys.executable, "-m", "pyxinetd", "-f", str(conf),
                                      "-pidfile", str(pidfile), *extra])
    pid = read_pid(pidfile)
    if pid is not None:
        detached.pids.add(pid)
    assert status == 0
    assert pid is not None and alive(pid)
    assert echo_roundtrip(port) == b"ping\n"


def test_version_with_a_stderr_nobody_reads_still_exits_0() -> None:
    assert _run_with_stderr_unread([sys.executable, "-m", "pyxinetd", "-version"]) == 0


def test_a_stale_pidfile_is_taken_over(detached: Detached, tmp_path: Path) -> None:
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text("999999999\n")
    result, _, _ = detached.start(echo_conf(free_port()), pidfile=pidfile)
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None and pid != 999999999 and alive(pid)


def test_stayalive_with_no_services_still_reports_ready(detached: Detached) -> None:
    conf = "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tdisable = yes\n" \
           "\tsocket_type = stream\n\tprotocol = tcp\n\tport = 7\n\twait = no\n}\n"
    result, pidfile, log = detached.start(conf, "-stayalive")
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None and alive(pid)
    assert "Started working: 0 available services" in log.read_text()


def test_dontfork_writes_and_removes_the_pidfile_too(daemons: DaemonFactory,
                                                      tmp_path: Path) -> None:
    pidfile = tmp_path / "fg.pid"
    daemon = daemons.start_config(echo_conf(free_port()), "-pidfile", str(pidfile))
    assert pidfile.read_text() == f"{daemon.pid}\n"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert not pidfile.exists()


@pytest.mark.parametrize("mode", ["-dontfork", "-d"])
def test_a_foreground_daemon_keeps_none_of_its_starters_descriptors(
        daemons: DaemonFactory, mode: str) -> None:
    # xinetd closes every inherited descriptor above 2 first thing; a detaching
    # pyxinetd does it too. A foreground one kept them for its whole life: the write
    # end of a pipe its starter reads to the end (which then never ends), a file.
    read_end, write_end = os.pipe()
    other_read, other_write = os.pipe()
    try:
        daemon = daemons.start_config(echo_conf(free_port()), mode,
                                      pass_fds=(write_end, other_read))
        os.close(write_end)
        write_end = -1
        # End of file once the only other writer, the daemon, has closed its copy
        # (it has: the daemon is ready; the wait is only a bound on a failure).
        readable, _, _ = select.select([read_end], [], [], 10)
        assert readable and os.read(read_end, 1) == b""
        held = {os.readlink(f"/proc/{daemon.pid}/fd/{fd}")
                for fd in os.listdir(f"/proc/{daemon.pid}/fd")}
        assert f"pipe:[{os.fstat(other_read).st_ino}]" not in held
    finally:
        for fd in (read_end, write_end, other_read, other_write):
            if fd >= 0:
                os.close(fd)


def detached_on_syslog(detached: Detached, tmp_path: Path, *options: str
                       ) -> tuple[int, list[str]]:
    """Start a detached daemon (with `options`) logging to a syslog socket of the test's;
    its pid and the syslog datagrams up to its `Started working`."""
    conf = tmp_path / "syslog.conf"
    conf.write_text(echo_conf(free_port()))
    pidfile = tmp_path / "syslog.pid"
    detached.pidfiles.append(pidfile)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "log.sock"))
        syslog.settimeout(10)
        env = {**os.environ, "PYXINETD_SYSLOG_SOCKET": str(tmp_path / "log.sock")}
        result = subprocess.run([sys.executable, "-m", "pyxinetd", "-f", str(conf),
                                 "-pidfile", str(pidfile), *options], env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=START_TIMEOUT)
        assert result.returncode == 0, result.stderr
        pid = read_pid(pidfile)
        assert pid is not None
        return pid, syslog_until(syslog, f"xinetd[{pid}]: Started working")


def test_detached_program_log_goes_to_syslog_facility_daemon(detached: Detached,
                                                             tmp_path: Path) -> None:
    pid, messages = detached_on_syslog(detached, tmp_path)
    # daemon (3) * 8 + notice (5)
    wanted = f"xinetd[{pid}]: Started working: 1 available service"
    assert messages[-1].startswith("<29>") and wanted in messages[-1], messages


def test_debug_lines_go_to_syslog_with_dash_syslog(tmp_path: Path) -> None:
    # -d -syslog: the program log, DEBUG lines included, goes to syslog (xinetd sends
    # -d output to /dev/tty whatever -syslog says; xinetd-org PR 27 asked for this).
    port = free_port()
    conf = tmp_path / "debug.conf"
    conf.write_text(echo_conf(port))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "log.sock"))
        syslog.settimeout(10)
        env = {**os.environ, "PYXINETD_SYSLOG_SOCKET": str(tmp_path / "log.sock")}
        proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-d", "-syslog", "local3",
                                 "-f", str(conf)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            messages: list[str] = []
            for _ in range(20):  # bounded: a few start-up lines
                messages.append(syslog.recv(4096).decode())
                if "Started working" in messages[-1]:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate(timeout=10)
    # local3 (19) * 8 + debug (7) = 159; the debug prefix "PID {function}" as in -d.
    listening = [m for m in messages if f"listens on 127.0.0.1 port {port}" in m]
    assert listening and listening[0].startswith("<159>"), messages
    assert f"xinetd[{proc.pid}]: {proc.pid} {{activate_normal}} Service" in listening[0]
    assert any(m.startswith("<157>") and "Started working: 1 available service" in m
               for m in messages), messages
    assert b"Started working" not in stderr


def test_a_relative_dump_file_is_in_the_folder_the_start_command_ran_in(
        detached: Detached, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The detached daemon works from `/`; PYXINETD_DUMP_FILE=name still means the
    # folder the command was started in (the fixture runs it in tmp_path).
    monkeypatch.setenv("PYXINETD_DUMP_FILE", "relative.dump")
    result, pidfile, log = detached.start(echo_conf(free_port()))
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGUSR1)
    target = tmp_path / "relative.dump"
    wait_until(lambda: "generated state dump" in log.read_text(), timeout=10)
    assert f"generated state dump in file {target}" in log.read_text()
    assert "INTERNAL STATE DUMP" in target.read_text()


def test_ctrl_c_while_waiting_names_the_daemon_that_goes_on(detached: Detached,
                                                            tmp_path: Path) -> None:
    """SIGINT reaches only the start command (the daemon is in a session of its own):
    it says which daemon goes on starting, exits 130, and the daemon then serves."""
    port = free_port()
    conf = tmp_path / "slow.conf"
    conf.write_text(echo_conf(port))
    pidfile = tmp_path / "slow.pid"
    detached.pidfiles.append(pidfile)
    go = tmp_path / "go"
    helper = Path(__file__).resolve().parents[1] / "helpers" / "slow_ready.py"
    start = subprocess.Popen(
        [sys.executable, str(helper), "-f", str(conf), "-filelog", str(tmp_path / "slow.log"),
         "-pidfile", str(pidfile)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "GO_FILE": str(go)})
    try:
        # The pidfile is written before the daemon reports that it serves, which it
        # holds back until `go` exists: the start command is waiting now.
        pid = wait_until(lambda: read_pid(pidfile), 20, what="the daemon's pidfile")
        start.send_signal(signal.SIGINT)
        out, err = start.communicate(timeout=20)
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
    assert start.returncode == 130, err
    assert out == ""
    assert err == (f"pyxinetd: interrupted before the daemon (pid {pid}) reported that it "
                   "serves; it goes on starting on its own (see the program log)\n")
    assert alive(pid)
    go.touch()
    assert wait_until(lambda: _answers(port), 20, what="the echo service") == b"ping\n"


def _interrupt_at_exec() -> None:
    """In the start command's process before its exec: a Ctrl-C that arrives while it
    imports and loads its configuration, held (blocked, pending) as the command holds
    it then; both survive the exec."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_while_the_command_loads_names_the_daemon_that_goes_on(
        detached: Detached, tmp_path: Path) -> None:
    """A Ctrl-C held while the start command loads the configuration reaches it once
    it waits for the daemon it forked: the daemon goes on (it ignores SIGINT, as
    xinetd does), so the command says so and exits 130, as for a Ctrl-C while it
    waits, rather than exiting 1 in silence over a daemon that serves."""
    port = free_port()
    conf = tmp_path / "held.conf"
    conf.write_text(echo_conf(port))
    pidfile = tmp_path / "held.pid"
    detached.pidfiles.append(pidfile)
    start = subprocess.run(
        [sys.executable, "-m", "pyxinetd", "-f", str(conf), "-filelog",
         str(tmp_path / "held.log"), "-pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT,
        preexec_fn=_interrupt_at_exec, restore_signals=True)
    pid = wait_until(lambda: read_pid(pidfile), 20, what="the daemon's pidfile")
    detached.pids.add(pid)
    assert start.returncode == 130, start.stderr
    assert start.stdout == ""
    assert re.fullmatch(r"pyxinetd: interrupted before the daemon( \(pid \d+\))? reported "
                        r"that it serves; it goes on starting on its own \(see the "
                        r"program log\)\n", start.stderr), start.stderr
    assert wait_until(lambda: _answers(port), 20, what="the echo service") == b"ping\n"


def _answers(port: int) -> bytes | None:
    try:
        return echo_roundtrip(port)
    except OSError:
        return None


def test_a_relative_pidfile_in_a_removed_folder_is_not_written_elsewhere(
        detached: Detached, tmp_path: Path) -> None:
    # The folder the start command ran in was removed: a relative pidfile can no longer
    # be created there. As xinetd (which opens it in that folder and fails), the daemon
    # serves without it and says so; it must not land in `/`, where the detached daemon
    # works, nor must the start command die on the way (getcwd: a traceback).
    port = free_port()
    conf, log = tmp_path / "r.conf", tmp_path / "r.log"
    conf.write_text(echo_conf(port))
    name = f"pyxinetd-test-{os.getpid()}-{port}.pid"
    try:
        result = subprocess.run(
            ["sh", "-c", 'mkdir "$1" && cd "$1" && rmdir "$1" && shift && exec "$@"', "sh",
             str(tmp_path / "gone"), sys.executable, "-m", "pyxinetd", "-f", str(conf),
             "-filelog", str(log), "-pidfile", name],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT)
        pids = [int(line.split("[")[1].split("]")[0]) for line in
                log.read_text().splitlines() if "Started working" in line] if log.exists() else []
        detached.pids.update(pids)
        assert not os.path.lexists(f"/{name}")
        assert result.returncode == 0, result.stderr
        assert result.stderr == (f"pyxinetd: ERROR: cannot open pidfile {name}: No such file "
                                 "or directory; serving without a pidfile\n")
        assert echo_roundtrip(port) == b"ping\n"
    finally:
        if os.path.lexists(f"/{name}"):
            os.unlink(f"/{name}")


@pytest.mark.parametrize("name", ["/dev/stderr", "/proc/self/fd/2"])
def test_a_log_on_the_start_commands_stderr_is_said_to_be_lost(detached: Detached,
                                                               tmp_path: Path,
                                                               name: str) -> None:
    # The detached daemon's descriptors 0-2 are /dev/null, so `-filelog /dev/stderr`
    # names /dev/null there: its program log vanished without a word (xinetd, which
    # opens it before leaving its stderr, writes there).
    port = free_port()
    conf, pidfile, err = tmp_path / "e.conf", tmp_path / "e.pid", tmp_path / "e.err"
    conf.write_text(echo_conf(port))
    detached.pidfiles.append(pidfile)
    with err.open("w") as stderr:
        status = subprocess.run([sys.executable, "-m", "pyxinetd", "-f", str(conf),
                                 "-filelog", name, "-pidfile", str(pidfile)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, timeout=START_TIMEOUT).returncode
    pid = read_pid(pidfile)
    if pid is not None:
        detached.pids.add(pid)
    assert status == 0
    assert err.read_text() == (f"pyxinetd: -filelog {name} is this command's stderr, which "
                               "the detached daemon does not keep (its descriptors 0-2 are "
                               "/dev/null): its program log is lost; -dontfork keeps it\n")
    assert echo_roundtrip(port) == b"ping\n"


@pytest.mark.parametrize("facility", ["kern", "syslog", "cron"])
def test_a_facility_xinetd_does_not_know_is_refused(detached: Detached, tmp_path: Path,
                                                    facility: str) -> None:
    # xinetd's -syslog takes the facilities of `log_type = SYSLOG` only: a daemon's lines
    # filed as the kernel's (kern is 0) would go where nobody looks for them.
    _, messages = detached_on_syslog(detached, tmp_path, "-syslog", facility)
    # daemon (3) * 8 + err (3), then notice (5)
    assert any(m.startswith("<27>") and f"Bad syslog facility: {facility}" in m
               for m in messages), messages
    assert messages[-1].startswith("<29>"), messages
