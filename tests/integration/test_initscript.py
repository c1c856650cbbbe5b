"""etc/init.d/xinetd, run for real with /bin/sh on a temporary pidfile and configuration.

The script's paths come from PYXINETD_* variables (defaulting to /run, /etc/default):
here they point into tmp_path, and PYXINETD_DAEMON at a wrapper running this checkout.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import (alive, free_port, kill_detached, syslog_until, wait_log_lines,
                          wait_until)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the init script is run as root")

SCRIPT = Path(__file__).resolve().parents[2] / "etc" / "init.d" / "xinetd"


class InitScript:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.pidfile = tmp_path / "xinetd.pid"
        self.log = tmp_path / "xinetd.log"
        conf = tmp_path / "xinetd.conf"
        conf.write_text(f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                        f"\tprotocol = tcp\n\tport = {self.port}\n\tbind = 127.0.0.1\n"
                        f"\twait = no\n}}\n")
        defaults = tmp_path / "default-xinetd"
        defaults.write_text(f'XINETD_OPTS="-f {conf} -filelog {self.log}"\n')
        wrapper = tmp_path / "pyxinetd"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m pyxinetd "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        self.env = {**os.environ, "PYXINETD_DAEMON": str(wrapper),
                    "PYXINETD_PIDFILE": str(self.pidfile),
                    "PYXINETD_DEFAULTS": str(defaults),
                    "PYXINETD_DUMP_FILE": str(tmp_path / "xinetd.dump")}
        self.pids: set[int] = set()

    def run(self, action: str, *, merged: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the script; with `merged`, stderr goes to stdout, as on a terminal."""
        before = self.pid()
        result = subprocess.run(["/bin/sh", str(SCRIPT), action], env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merged else subprocess.PIPE,
                                text=True, timeout=30)
        for pid in (before, self.pid()):
            if pid is not None:
                self.pids.add(pid)
        return result

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def serves(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(b"hello\n")
            return conn.recv(100) == b"hello\n"

    def kill_all(self) -> None:
        kill_detached(self.pids, [self.pidfile])


@pytest.fixture
def script(tmp_path: Path) -> Iterator[InitScript]:
    it = InitScript(tmp_path)
    try:
        yield it
    finally:
        it.kill_all()


def test_start_status_reload_stop(script: InitScript) -> None:
    status = script.run("status")
    assert status.returncode == 3, status
    assert "not running" in status.stdout

    start = script.run("start")
    assert start.returncode == 0, start
    pid = script.pid()
    assert pid is not None and alive(pid)
    assert script.serves()

    status = script.run("status")
    assert status.returncode == 0, status
    assert f"is running (pid {pid})" in status.stdout

    reload = script.run("reload")
    assert reload.returncode == 0, reload
    assert script.run("force-reload").returncode == 0
    assert script.pid() == pid and alive(pid)
    assert script.serves()

    stop = script.run("stop")
    assert stop.returncode == 0, stop
    assert not alive(pid)
    assert not script.pidfile.exists()
    status = script.run("status")
    assert status.returncode == 3, status
    assert "not running" in status.stdout
    assert script.run("reload").returncode == 7
    # Stopping what is not running succeeds (LSB).
    assert script.run("stop").returncode == 0


@pytest.mark.parametrize("foreground", [False, True], ids=["detached", "dontfork"])
def test_a_start_that_loses_the_race_to_another_start_succeeds(script: InitScript,
                                                               foreground: bool) -> None:
    # Two starts at once (a boot script and a monitor): both find no daemon, both start
    # one, the second's finds the pidfile locked by the first's and exits. The service
    # runs: LSB wants 0 for that start too, not `failed` and 1. The loser is held until
    # the winner has written its pidfile, so the race always goes that way.
    if foreground:
        defaults = Path(script.env["PYXINETD_DEFAULTS"])
        defaults.write_text(defaults.read_text().replace('XINETD_OPTS="',
                                                         'XINETD_OPTS="-dontfork '))
    held = Path(script.env["PYXINETD_DAEMON"]).with_name("held-pyxinetd")
    marker = held.with_name("held-started")
    held.write_text(f'#!/bin/sh\n: > "{marker}"\nn=0\n'
                    f'while [ ! -s "{script.pidfile}" ] && [ $n -lt 300 ]; '
                    f'do sleep 0.1; n=$((n+1)); done\nexec {sys.executable} -m pyxinetd "$@"\n')
    held.chmod(held.stat().st_mode | stat.S_IXUSR)
    loser = subprocess.Popen(["/bin/sh", str(SCRIPT), "start"],
                             env={**script.env, "PYXINETD_DAEMON": str(held)},
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # The loser has found no daemon and started its own before the winner begins.
        wait_until(marker.exists, timeout=30)
        winner = script.run("start")
        out, err = loser.communicate(timeout=60)
    finally:
        if loser.poll() is None:
            loser.kill()
            loser.wait()
    assert winner.returncode == 0, winner
    pid = script.pid()
    assert loser.returncode == 0, (out, err)
    assert f"is already running (pid {pid}): started by another start meanwhile" in out, \
        (out, err)
    assert "failed" not in out, (out, err)
    assert pid is not None and alive(pid) and script.serves()


def test_start_twice_is_a_no_op_and_restart_replaces_the_daemon(script: InitScript) -> None:
    assert script.run("start").returncode == 0
    first = script.pid()
    again = script.run("start")
    assert again.returncode == 0, again
    assert "already running" in again.stdout
    assert script.pid() == first

    restart = script.run("restart")
    assert restart.returncode == 0, restart
    second = script.pid()
    assert second is not None and second != first
    assert first is not None and not alive(first)
    assert script.serves()


def refused_for_each_broken_configuration(script: InitScript, conf: Path,
                                          actions: tuple[str, ...], said: str,
                                          kept: str) -> int:
    """Start the daemon, then break its main file in two ways (missing; every service
    disabled, with no -stayalive); each `action` must say `said` and `kept` with status
    1 and leave the daemon serving. Returns its pid, with the file mended."""
    assert script.run("start").returncode == 0
    first = script.pid()
    assert first is not None
    text = conf.read_text()
    for broken, reason in (("missing", "open( "), ("disabled", "no service to activate")):
        if broken == "missing":
            conf.unlink()
        else:
            conf.write_text(text.replace("\twait = no\n", "\twait = no\n\tdisable = yes\n"))
        for action in actions:
            result = script.run(action)
            assert result.returncode == 1, result
            assert said in result.stderr and reason in result.stderr, result
            assert kept in result.stderr
            assert script.pid() == first and alive(first)
            assert script.serves()
    conf.write_text(text)
    return first


def test_restart_keeps_the_running_daemon_when_the_new_configuration_cannot_start(
        script: InitScript, tmp_path: Path) -> None:
    first = refused_for_each_broken_configuration(
        script, tmp_path / "xinetd.conf", ("restart", "try-restart"),
        "Not restarting xinetd: ", "the running daemon is kept")
    # Options the daemon would refuse.
    defaults = tmp_path / "default-xinetd"
    good = defaults.read_text()
    defaults.write_text(good.replace('"\n', ' -limit x"\n'))
    result = script.run("restart")
    assert result.returncode == 1 and "option -limit: bad number 'x'" in result.stderr, result
    assert script.pid() == first and script.serves()
    # Mended, it restarts.
    defaults.write_text(good)
    assert script.run("restart").returncode == 0
    assert script.pid() != first and script.serves()


def test_reload_reports_a_configuration_the_daemon_would_not_take(
        script: InitScript, tmp_path: Path) -> None:
    # Unreadable, the daemon would keep its configuration; with no service left (no
    # -stayalive here) it would exit. Neither is a reload: 1, and the daemon is not
    # signalled.
    first = refused_for_each_broken_configuration(
        script, tmp_path / "xinetd.conf", ("reload", "force-reload"),
        "Not reloading xinetd: ", "the running configuration is kept")
    assert "Starting reconfiguration" not in script.log.read_text()
    # Mended, it reloads.
    result = script.run("reload")
    assert result.returncode == 0, result
    assert result.stderr == ""
    wait_log_lines(script.log, "Reconfigured: ")
    assert script.pid() == first and script.serves()
    # With a broken service beside the working one, it reloads (the daemon serves what
    # it can) and says what `pyxinetd check` found, which only the log told before.
    conf = tmp_path / "xinetd.conf"
    conf.write_text(conf.read_text() + "service broken\n{\n\tsocket_type = stream\n}\n")
    result = script.run("reload")
    assert result.returncode == 0, result
    assert result.stderr == (f"xinetd: the configuration has problems ({conf}: 1 service(s) "
                             "to activate, 1 dropped, 0 warning(s), 1 error(s)); pyxinetd "
                             "check lists them.\n"), result
    wait_log_lines(script.log, "Reconfigured: ", count=2)
    assert script.serves()


def test_restart_keeps_the_running_daemon_when_the_new_one_cannot_open_its_log(
        script: InitScript, tmp_path: Path) -> None:
    # The new daemon would stop at `msg_init failed: can't open log file`: the folder of
    # its -filelog is gone. Stopping the running one first would leave nothing serving.
    folder = tmp_path / "logs"
    folder.mkdir()
    defaults = tmp_path / "default-xinetd"
    defaults.write_text(defaults.read_text().replace(str(script.log), str(folder / "x.log")))
    assert script.run("start").returncode == 0
    first = script.pid()
    (folder / "x.log").unlink()
    folder.rmdir()
    result = script.run("restart")
    assert result.returncode == 1, result
    assert ("Not restarting xinetd: pyxinetd: msg_init failed: can't open log file "
            "(No such file or directory); the running daemon is kept.") in result.stderr
    assert script.pid() == first and first is not None and alive(first)
    assert script.serves()
    assert not folder.exists()
    # A log that can be created (the file is missing, its folder is there) is no obstacle.
    folder.mkdir()
    assert script.run("restart").returncode == 0
    assert script.pid() != first and script.serves()


def test_a_failing_start_reports_failure(script: InitScript) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", script.port))
        squatter.listen()
        start = script.run("start")
    assert start.returncode == 1
    assert "no services" in start.stderr
    assert "failed" in start.stdout
    assert script.run("status").returncode == 3


def test_start_messages_follow_the_outcome_on_their_own_lines(script: InitScript) -> None:
    # On a terminal, the daemon's start-up errors used to land in the middle of the
    # "Starting ...: xinetd" line, before its "." or "failed".
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", script.port))
        squatter.listen()
        failed = script.run("start", merged=True)
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    assert lines[0] == "Starting internet superserver: xinetd failed.", lines
    assert "pyxinetd: CRITICAL: no services. Exiting..." in lines[1:]

    conf = Path(script.env["PYXINETD_DEFAULTS"]).read_text().split()[1]
    with open(conf, "a") as extra:
        extra.write("service nosuch\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                    "\tprotocol = tcp\n\tport = 1\n\twait = no\n}\n")
    started = script.run("start", merged=True)
    assert started.returncode == 0, started
    lines = started.stdout.splitlines()
    assert lines[0] == "Starting internet superserver: xinetd.", lines
    assert lines[1].startswith("pyxinetd: ERROR: No such internal service: nosuch"), lines
    assert script.serves()


def test_status_ignores_a_pidfile_naming_another_program(script: InitScript) -> None:
    # A stale pidfile whose pid now belongs to an unrelated, running process.
    other = subprocess.Popen(["sleep", "60"])
    try:
        script.pidfile.write_text(f"{other.pid}\n")
        status = script.run("status")
        assert status.returncode == 1, status
        start = script.run("start")
        assert start.returncode == 0, start
        pid = script.pid()
        assert pid is not None and pid != other.pid
        wait_until(script.serves, what="the echo service")
    finally:
        other.kill()
        other.wait()


def test_an_xinetd_running_under_another_name_is_recognised(script: InitScript) -> None:
    # The xinetd being replaced (or pyxinetd installed as `xinetd`), still running on
    # the pidfile: status sees it and stop stops it, rather than start adding a second
    # daemon beside it.
    other = subprocess.Popen(["xinetd", "60"], executable="sleep")
    try:
        script.pidfile.write_text(f"{other.pid}\n")
        status = script.run("status")
        assert status.returncode == 0 and f"pid {other.pid}" in status.stdout, status
        start = script.run("start")
        assert start.returncode == 0 and "already running" in start.stdout, start
        stop = script.run("stop")
        assert stop.returncode == 0, stop
        assert other.wait(timeout=10) == -15
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder other users can read (pytest's tmp_path is not)."""
    path = Path(tempfile.mkdtemp(prefix="pyxinetd-initscript-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_user_other_than_root_sees_the_daemon_running(script: InitScript,
                                                        shared_dir: Path) -> None:
    # `service xinetd status` run by an ordinary user: `kill -0` on root's daemon fails
    # with EPERM, which must not make the script report it dead (LSB status 1).
    script.pidfile = shared_dir / "xinetd.pid"
    script.env["PYXINETD_PIDFILE"] = str(script.pidfile)
    assert script.run("start").returncode == 0
    pid = script.pid()
    assert pid is not None and alive(pid)

    def as_nobody(action: str) -> subprocess.CompletedProcess[str]:
        # The script comes on stdin: the checkout may not be readable by that user.
        return subprocess.run(["/bin/sh", "-s", action], input=SCRIPT.read_text(),
                              env=script.env, user=65534, group=65534, extra_groups=[],
                              capture_output=True, text=True, timeout=30, cwd="/")

    status = as_nobody("status")
    assert status.returncode == 0, status
    assert f"is running (pid {pid})" in status.stdout
    # Not allowed to signal it: LSB status 4 at once, no 10 s wait for an exit.
    stop = as_nobody("stop")
    assert stop.returncode == 4, stop
    assert as_nobody("reload").returncode == 4
    # restart stops first, so cannot either: 4 as well, and nothing is started.
    for action in ("restart", "try-restart"):
        result = as_nobody(action)
        assert result.returncode == 4, (action, result)
    assert alive(pid) and script.serves()
    assert script.run("status").returncode == 0


@pytest.mark.parametrize("option", ["-dontfork", "-d"])
def test_options_keeping_the_daemon_in_the_foreground_start_it_in_the_background(
        script: InitScript, tmp_path: Path, option: str) -> None:
    # With -dontfork or -d the start command never returns: the script used to wait for
    # it (at boot, for ever). Debian's script runs xinetd with start-stop-daemon
    # --background, where both work; so do they here.
    defaults = tmp_path / "default-xinetd"
    good = defaults.read_text()
    defaults.write_text(good.replace('"\n', f' {option}"\n'))
    start = script.run("start")
    assert (start.returncode, start.stdout, start.stderr) == (
        0, "Starting internet superserver: xinetd.\n", ""), start
    pid = script.pid()
    assert pid is not None and alive(pid)
    assert script.serves()
    # In a session of its own, its streams on /dev/null.
    assert os.getsid(pid) == pid
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    assert script.run("status").returncode == 0
    assert script.run("reload").returncode == 0
    assert script.run("stop").returncode == 0
    assert not alive(pid) and script.pid() is None
    # One that exits at once is a failed start.
    defaults.write_text(good.replace('"\n', f' {option} -limit x"\n'))
    start = script.run("start")
    assert start.returncode == 1, start
    assert start.stdout == "Starting internet superserver: xinetd failed.\n"
    assert start.stderr.startswith("xinetd exited at once (status 1)"), start


def test_dontfork_in_the_options_logs_to_syslog_as_xinetd(script: InitScript,
                                                          tmp_path: Path) -> None:
    # The background daemon's stderr is /dev/null; with -dontfork pyxinetd's program
    # log would go there, and every start-up or reload error with it. xinetd logs to
    # syslog with -dontfork as without: the script asks for that.
    defaults = tmp_path / "default-xinetd"
    conf = tmp_path / "xinetd.conf"
    defaults.write_text(f'XINETD_OPTS="-f {conf} -dontfork"\n')
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "log.sock"))
        syslog.settimeout(10)
        script.env["PYXINETD_SYSLOG_SOCKET"] = str(tmp_path / "log.sock")
        assert script.run("start").returncode == 0
        pid = script.pid()
        assert pid is not None
        wanted = f"xinetd[{pid}]: Started working: 1 available service"
        messages = syslog_until(syslog, wanted)
        assert messages[-1].startswith("<29>") and wanted in messages[-1], messages
        # A broken edit's error reaches syslog too.
        conf.write_text(conf.read_text() + "service broken {\n")
        assert script.run("reload").returncode == 0
        messages = syslog_until(syslog, "Reconfigured")
        assert any(m.startswith("<27>") and "Service broken: missing '{'" in m
                   and f"[file={conf}] [line=10]" in m for m in messages), messages
    assert script.serves()
    assert script.run("stop").returncode == 0
