"""etc/init.d/xinetd stop and status on the awkward cases: a daemon that does not exit
on SIGTERM, a stale pidfile, a pidfile naming another program or unreadable.

Run for real with /bin/sh, as in test_initscript.py (whose InitScript fixture this reuses).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import alive, wait_until
from tests.integration.test_initscript import SCRIPT, InitScript, shared_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the init script is run as root")

__all__ = ["shared_dir"]  # a fixture, used below


@pytest.fixture
def script(tmp_path: Path) -> Iterator[InitScript]:
    it = InitScript(tmp_path)
    it.env["PYXINETD_STOP_TIMEOUT"] = "1"
    try:
        yield it
    finally:
        it.kill_all()


def test_stop_kills_a_daemon_that_does_not_exit_on_sigterm(script: InitScript) -> None:
    # A wedged daemon (here: stopped, so its SIGTERM stays pending) is killed once the
    # stop timeout has passed, as start-stop-daemon --retry TERM/N/KILL/M does; the
    # pidfile it could not remove goes too, so `status` says "not running" (3), not
    # "dead but the pidfile exists" (1), and `start` works at once.
    assert script.run("start").returncode == 0
    pid = script.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    stop = script.run("stop")
    assert stop.returncode == 0, stop
    assert "killed" in stop.stdout and "SIGTERM" in stop.stdout, stop
    assert not alive(pid)
    assert not script.pidfile.exists()
    assert script.run("status").returncode == 3
    assert script.run("start").returncode == 0
    assert script.serves()


def test_stop_kills_a_process_ignoring_sigterm(script: InitScript) -> None:
    # The xinetd being replaced, or any daemon stuck with SIGTERM ignored.
    # Python under the name xinetd, as the real one runs.
    stubborn = subprocess.Popen(
        ["/usr/sbin/xinetd", "-c", "import signal, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(flush=True)\ntime.sleep(60)"],
        executable=sys.executable, stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"\n"
        script.pidfile.write_text(f"{stubborn.pid}\n")
        stop = script.run("stop")
        assert stop.returncode == 0, stop
        assert stop.stdout == (f"Stopping internet superserver: xinetd: killed with SIGKILL, "
                               f"pid {stubborn.pid} was still running 1 s after SIGTERM.\n")
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert not script.pidfile.exists()
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()
        assert stubborn.stdout is not None
        stubborn.stdout.close()


def test_a_stale_pidfile(script: InitScript) -> None:
    # Left by a crash: its pid is gone. Nothing to stop (0); status 1 (LSB: dead, pidfile
    # exists); start takes the file over.
    script.pidfile.write_text("999999999\n")
    stop = script.run("stop")
    assert stop.returncode == 0 and "not running" in stop.stdout, stop
    status = script.run("status")
    assert status.returncode == 1 and "exists" in status.stdout, status
    assert script.run("reload").returncode == 7
    assert script.run("start").returncode == 0
    pid = script.pid()
    assert pid is not None and pid != 999999999 and alive(pid)


def test_stop_leaves_an_unrelated_process_alone(script: InitScript) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        script.pidfile.write_text(f"{other.pid}\n")
        stop = script.run("stop")
        assert stop.returncode == 0 and "not running" in stop.stdout, stop
        assert script.run("reload").returncode == 7
        assert other.poll() is None
        # Not ours to remove either: it names a live process.
        assert script.pidfile.read_text() == f"{other.pid}\n"
    finally:
        other.kill()
        other.wait()


def test_restart_and_force_reload_when_not_running(script: InitScript) -> None:
    # restart starts a daemon that was not running; force-reload only reloads (7).
    assert script.run("force-reload").returncode == 7
    restart = script.run("restart")
    assert restart.returncode == 0, restart
    pid = script.pid()
    assert pid is not None and alive(pid)
    wait_until(script.serves, what="the echo service")
    try_restart = script.run("try-restart")
    assert try_restart.returncode == 0, try_restart
    assert script.pid() not in (None, pid)


def test_status_unknown_when_the_pidfile_cannot_be_read(script: InitScript,
                                                        shared_dir: Path) -> None:
    # LSB status 4: the state cannot be determined. Likewise stop and reload cannot
    # tell whether there is something to stop: 4, not "not running".
    script.pidfile = shared_dir / "xinetd.pid"
    script.env["PYXINETD_PIDFILE"] = str(script.pidfile)
    assert script.run("start").returncode == 0
    pid = script.pid()
    assert pid is not None
    script.pidfile.chmod(0o600)

    def as_nobody(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-s", action], input=SCRIPT.read_text(),
                              env=script.env, user=65534, group=65534, extra_groups=[],
                              capture_output=True, text=True, timeout=30, cwd="/")

    for action in ("status", "stop", "reload", "start", "try-restart", "restart"):
        result = as_nobody(action)
        assert result.returncode == 4, (action, result)
        assert f"cannot read {script.pidfile}" in result.stdout + result.stderr
    assert alive(pid)
    assert script.run("status").returncode == 0


def test_start_without_a_writable_pidfile_serves_and_warns(script: InitScript,
                                                           tmp_path: Path) -> None:
    script.pidfile = tmp_path / "missing" / "xinetd.pid"
    script.env["PYXINETD_PIDFILE"] = str(script.pidfile)
    start = script.run("start")
    assert start.returncode == 0, start
    assert "serving without a pidfile" in start.stderr
    assert f"serves, but without {script.pidfile}" in start.stderr
    assert script.serves()
    # Found through the log, to be killed at the end.
    script.pids.add(int(script.log.read_text().split("xinetd[", 1)[1].split("]", 1)[0]))
    assert script.run("status").returncode == 3


@pytest.mark.parametrize("argv", [
    # An administrator following the log, or editing the configuration, whose pid
    # happens to be the one a crashed daemon left in its pidfile.
    ["tail", "-f", "/dev/null", "/var/log/xinetd.log"],
    ["sh", "-c", "sleep 60; exit", "/etc/init.d/xinetd"],
    [sys.executable, "-c", "import time; time.sleep(60)", "/etc/xinetd.conf"],
], ids=["tail", "sh", "python"])
def test_a_program_only_mentioning_xinetd_is_left_alone(script: InitScript,
                                                       argv: list[str]) -> None:
    # Its command line says `xinetd`, but not as the program it runs: not ours to stop.
    other = subprocess.Popen(argv)
    try:
        wait_until(lambda: Path(f"/proc/{other.pid}/cmdline").read_bytes().count(b"\0")
                   >= len(argv), what="the program's command line")
        script.pidfile.write_text(f"{other.pid}\n")
        status = script.run("status")
        assert status.returncode == 1, status
        stop = script.run("stop")
        assert stop.returncode == 0 and "not running" in stop.stdout, stop
        assert script.run("reload").returncode == 7
        assert other.poll() is None
        start = script.run("start")
        assert start.returncode == 0 and "already running" not in start.stdout, start
        assert script.pid() not in (None, other.pid)
        assert script.serves()
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_stop_never_signals_a_process_that_took_the_daemons_pid(tmp_path: Path) -> None:
    # The daemon exits while stop waits for it, and another process gets its pid: stop
    # must see that the process it sent SIGTERM to is gone, and never SIGKILL the newcomer
    # (nor remove a pidfile that is not the daemon's).
    helper = Path(__file__).resolve().parents[1] / "helpers" / "pid_reuse_scenario.py"
    done = subprocess.run(["unshare", "-p", "-f", "--mount-proc", sys.executable,
                           str(helper), str(SCRIPT), str(tmp_path / "xinetd.pid")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["survived"], result
    assert result["status"] == 0 and "killed" not in result["output"], result


@pytest.mark.parametrize("broken", ['XINETD_OPTS="-stayalive\n', "exit 0\n"])
def test_a_broken_defaults_file_stops_neither_stop_nor_status(script: InitScript,
                                                               tmp_path: Path,
                                                               broken: str) -> None:
    # A shell syntax error (or an `exit`) in /etc/default/xinetd would end the script
    # where it reads the file: `status` and `stop` would fail (or claim success) and
    # leave the daemon running, though neither needs the daemon's options.
    assert script.run("start").returncode == 0
    pid = script.pid()
    defaults = tmp_path / "default-xinetd"
    good = defaults.read_text()
    defaults.write_text(broken)
    status = script.run("status")
    assert (status.returncode, status.stdout) == (0, f"xinetd is running (pid {pid}).\n")
    assert script.run("reload").returncode == 0
    # What would start without the options the file was meant to give is not started:
    # restart keeps the running daemon (LSB 6, "not configured").
    restart = script.run("restart")
    assert restart.returncode == 6, restart
    assert restart.stderr == (f"Not restarting xinetd: {defaults} cannot be read (a shell "
                              "syntax error, or an exit, in it); the running daemon is "
                              "kept.\n")
    assert script.pid() == pid and pid is not None and alive(pid)
    stop = script.run("stop")
    assert stop.returncode == 0 and stop.stderr == "", stop
    assert not alive(pid) and script.pid() is None
    start = script.run("start")
    assert start.returncode == 6, start
    assert start.stderr == (f"Cannot start xinetd: {defaults} cannot be read (a shell "
                            "syntax error, or an exit, in it).\n")
    assert script.pid() is None
    defaults.write_text(good)
    assert script.run("start").returncode == 0
