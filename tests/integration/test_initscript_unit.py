"""etc/systemd/xinetd.service and etc/default/xinetd: the command line the unit runs.

systemd is not the init of the test machine, so the unit's ExecStart= is run the way
systemd would run it (its words, `$$` turned into `$`, /etc/default/xinetd's variables
in the environment) with a stand-in `pyxinetd` that prints its arguments. The init
script and the unit must give the daemon the same options.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.daemon import wait_until

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "etc" / "systemd" / "xinetd.service"
SCRIPT = REPO / "etc" / "init.d" / "xinetd"
DEFAULTS = REPO / "etc" / "default" / "xinetd"


def unit_setting(name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", UNIT.read_text(), re.MULTILINE)
    assert match is not None, name
    return match.group(1)


def environment_file(path: Path) -> dict[str, str]:
    """NAME="value" lines, as systemd's EnvironmentFile= reads them."""
    env = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        env[name.strip()] = shlex.split(value)[0] if value.strip() else ""
    return env


def stand_in(tmp_path: Path, redirect: str = "") -> Path:
    """A folder with a `pyxinetd` printing its arguments, one a line (`redirect`: where)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    stub = folder / "pyxinetd"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" {redirect}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return folder


def run_unit(tmp_path: Path, env: dict[str, str], inetd_conf: Path) -> list[str]:
    words = [w.replace("$$", "$") for w in shlex.split(unit_setting("ExecStart"))]
    # The test cannot create /etc/inetd.conf; the unit's path is swapped for one it can.
    words = [w.replace("/etc/inetd.conf", str(inetd_conf)) for w in words]
    path = f"{stand_in(tmp_path)}:/usr/bin:/bin"
    done = subprocess.run(words, env={**env, "PATH": path}, capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def run_script_start(tmp_path: Path, defaults: Path, inetd_conf: Path) -> list[str]:
    text = SCRIPT.read_text().replace("/etc/inetd.conf", str(inetd_conf))
    # The script shows what the start command writes to stderr, after its outcome.
    daemon = stand_in(tmp_path / "script", ">&2") / "pyxinetd"
    env = {**os.environ, "PYXINETD_DAEMON": str(daemon), "PYXINETD_DEFAULTS": str(defaults),
           "PYXINETD_PIDFILE": str(tmp_path / "none.pid")}
    done = subprocess.run(["/bin/sh", "-s", "start"], input=text, env=env,
                          capture_output=True, text=True, timeout=30)
    # Then the script says it cannot find the (stand-in) daemon's pidfile.
    return done.stderr.splitlines()[:-1]


@pytest.mark.parametrize("compat", ["Yes", "No"])
@pytest.mark.parametrize("inetd_exists", [True, False])
def test_unit_and_script_pass_the_same_options(tmp_path: Path, compat: str,
                                               inetd_exists: bool) -> None:
    (tmp_path / "script").mkdir()
    inetd_conf = tmp_path / "inetd.conf"
    if inetd_exists:
        inetd_conf.write_text("")
    defaults = tmp_path / "default-xinetd"
    # A word that looks like a pattern is passed as written (the unit's `set -f`): a file
    # it happens to match must not change the daemon's options.
    (tmp_path / "x1.log").write_text("")
    pattern = f"{tmp_path}/x*.log"
    defaults.write_text(f'XINETD_OPTS="-stayalive -limit 40 -filelog {pattern}"\n'
                        f'INETD_COMPAT={compat}\n')
    argv = run_unit(tmp_path, environment_file(defaults), inetd_conf)
    # As Debian's script: whether or not the file exists (it may come later).
    wanted_compat = ["-inetd_compat"] if compat == "Yes" else []
    assert argv == ["-dontfork", "-pidfile", "/run/xinetd.pid", "-stayalive", "-limit",
                    "40", "-filelog", pattern, *wanted_compat]
    script_argv = run_script_start(tmp_path, defaults, inetd_conf)
    assert script_argv[0] == "-pidfile" and script_argv[2:] == argv[3:]


def test_the_shipped_defaults_read_inetd_conf_as_debian_does(tmp_path: Path) -> None:
    # Debian 12's /etc/default/xinetd: INETD_COMPAT=Yes, XINETD_OPTS="-stayalive".
    env = environment_file(DEFAULTS)
    assert env == {"XINETD_OPTS": "-stayalive", "INETD_COMPAT": "Yes"}
    inetd_conf = tmp_path / "inetd.conf"
    inetd_conf.write_text("")
    assert run_unit(tmp_path, env, inetd_conf)[-1] == "-inetd_compat"


def test_the_program_can_be_named_in_the_defaults_file(tmp_path: Path) -> None:
    # pyxinetd in a virtual environment, outside PATH: at boot the environment names
    # nothing, so /etc/default/xinetd must be able to (the script once read it only
    # after it had looked for the program, and the unit never).
    (tmp_path / "script").mkdir()
    venv_bin = stand_in(tmp_path / "script", ">&2")
    named = venv_bin.parent / "venv-pyxinetd"
    (venv_bin / "pyxinetd").rename(named)
    defaults = tmp_path / "default-xinetd"
    # A missing main file: a real pyxinetd found instead of the stand-in (the test
    # failing) would not start, nor serve anything.
    missing = tmp_path / "none.conf"
    defaults.write_text(f'XINETD_OPTS="-f {missing}"\nINETD_COMPAT=No\n'
                        f'PYXINETD_DAEMON="{named}"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYXINETD_DAEMON"}
    env.update(PYXINETD_DEFAULTS=str(defaults), PYXINETD_PIDFILE=str(tmp_path / "none.pid"),
               PATH="/usr/bin:/bin")
    done = subprocess.run(["/bin/sh", str(SCRIPT), "start"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.stderr.splitlines()[:4] == ["-pidfile", str(tmp_path / "none.pid"), "-f",
                                            str(missing)], done.stderr
    # The unit: a bare `pyxinetd` in PATH is not the one the defaults name.
    words = [w.replace("$$", "$") for w in shlex.split(unit_setting("ExecStart"))]
    unit_env = {**environment_file(defaults), "PATH": f"{stand_in(tmp_path)}:/usr/bin:/bin"}
    ran = subprocess.run(words, env=unit_env, capture_output=True, text=True, timeout=30,
                         check=True)
    assert ran.stdout == "" and ran.stderr.splitlines() == [
        "-dontfork", "-pidfile", "/run/xinetd.pid", "-f", str(missing)]


def test_the_unit_file_is_valid() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run([analyze, "verify", "--man=no", str(UNIT)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def reload_command(tmp_path: Path, env: dict[str, str], main_pid: int,
                   status: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecReload= as systemd runs it: `$$` and `%%` unescaped, `%n` the
    unit's name, the daemon's pid as $MAINPID, and a `pyxinetd` that is this checkout's.
    With `status`, a `systemctl` whose `show -P StatusText` prints that file (and
    appends a line to `status`.calls) stands for systemd's (without, `systemctl show`
    finds no systemd and prints nothing)."""
    words = [w.replace("$$", "$").replace("%%", "%").replace("%n", "xinetd.service")
             for w in shlex.split(unit_setting("ExecReload"))]
    folder = tmp_path / "real-bin"
    folder.mkdir(exist_ok=True)
    wrapper = folder / "pyxinetd"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m pyxinetd "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    if status is not None:
        systemctl = folder / "systemctl"
        systemctl.write_text(f'#!/bin/sh\n[ "$*" = "show -P StatusText xinetd.service" ]'
                             f' || exit 1\necho >> {status}.calls\nexec cat {status}\n')
        systemctl.chmod(systemctl.stat().st_mode | stat.S_IXUSR)
    return words, {**os.environ, **env, "MAINPID": str(main_pid),
                   "PATH": f"{folder}:/usr/bin:/bin"}


def run_unit_reload(tmp_path: Path, env: dict[str, str],
                    main_pid: int) -> subprocess.CompletedProcess[str]:
    words, full_env = reload_command(tmp_path, env, main_pid)
    return subprocess.run(words, env=full_env, capture_output=True, text=True, timeout=60)


def test_the_unit_reloads_only_a_configuration_the_daemon_would_take(
        tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                    "\tport = 7\n\twait = no\n\tdisable = yes\n}\n")
    env = {"XINETD_OPTS": f"-f {conf}", "INETD_COMPAT": "No"}
    # Stands for the daemon: SIGHUP ends it.
    daemon = subprocess.Popen(["sleep", "60"])
    try:
        conf.rename(tmp_path / "moved.conf")
        refused = run_unit_reload(tmp_path, env, daemon.pid)
        assert refused.returncode == 1, refused
        assert f"open( {conf} ) failed" in refused.stderr, refused
        assert daemon.poll() is None            # not signalled
        # No service to activate is no reason under -dontfork, which implies -stayalive.
        (tmp_path / "moved.conf").rename(conf)
        done = run_unit_reload(tmp_path, env, daemon.pid)
        assert done.returncode == 0, done
        assert done.stderr == ""
        assert daemon.wait(timeout=10) == -signal.SIGHUP
    finally:
        daemon.kill()
        daemon.wait()
    # A broken service beside: reloaded, and check's summary goes to the journal.
    conf.write_text(conf.read_text() + "service broken\n{\n\tsocket_type = stream\n}\n")
    daemon = subprocess.Popen(["sleep", "60"])
    try:
        done = run_unit_reload(tmp_path, env, daemon.pid)
        assert done.returncode == 0, done
        assert done.stderr == (f"the configuration has problems ({conf}: 0 service(s) to "
                               "activate, 2 dropped, 0 warning(s), 1 error(s)); pyxinetd "
                               "check lists them\n"), done
        assert daemon.wait(timeout=10) == -signal.SIGHUP
    finally:
        daemon.kill()
        daemon.wait()


# Stands for the daemon: says "ready", takes one SIGHUP and says "hup", then writes
# each line it reads from stdin to the status file (the STATUS= systemd would show),
# saying "set" after each, until stdin's end.
HUP_TAKER = """
import pathlib, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
print("ready", flush=True)
signal.sigwait({signal.SIGHUP})
print("hup", flush=True)
for line in sys.stdin:
    pathlib.Path(sys.argv[1]).write_text(line)
    print("set", flush=True)
"""


def read_line(stream: IO[str]) -> str:
    ready, _, _ = select.select([stream], [], [], 30)
    assert ready, "no line within 30 s"
    return stream.readline().strip()


ECHO_CONF = ("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
             "\tport = 7\n\twait = no\n}\n")


@contextmanager
def reload_under_way(tmp_path: Path, status_before: str
                     ) -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:
    """The unit's reload command run against a stand-in daemon (HUP_TAKER) whose status
    reads `status_before`; yields (daemon, command) once the daemon has its SIGHUP."""
    conf = tmp_path / "xinetd.conf"
    conf.write_text(ECHO_CONF)
    status = tmp_path / "status"
    status.write_text(status_before + "\n")
    daemon = subprocess.Popen([sys.executable, "-c", HUP_TAKER, str(status)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert daemon.stdin is not None and daemon.stdout is not None
    reload = None
    try:
        assert read_line(daemon.stdout) == "ready"
        words, env = reload_command(tmp_path, {"XINETD_OPTS": f"-f {conf}",
                                               "INETD_COMPAT": "No"}, daemon.pid, status)
        reload = subprocess.Popen(words, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert read_line(daemon.stdout) == "hup"
        yield daemon, reload
    finally:
        for process in (daemon, reload):
            if process is not None:
                process.kill()
                process.communicate()


def set_status(daemon: subprocess.Popen[str], text: str) -> None:
    """The stand-in daemon's next STATUS=, once it is the one systemctl shows."""
    assert daemon.stdin is not None and daemon.stdout is not None
    daemon.stdin.write(text + "\n")
    daemon.stdin.flush()
    assert read_line(daemon.stdout) == "set"


def test_the_unit_reload_returns_once_the_daemon_has_taken_it_up(tmp_path: Path) -> None:
    # systemd 252 ends a reload job when ExecReload= exits, and waits for READY=1 only
    # when the daemon's RELOADING=1 came before: the command must not exit before the
    # daemon's status has changed.
    calls = tmp_path / "status.calls"
    with reload_under_way(tmp_path, "Reconfigured: 1 available service (reload 1)") \
            as (daemon, reload):
        # Signalled, but its status is still the last reload's: the command has looked
        # at it again (the look before the signal, then one after) and waits.
        wait_until(lambda: len(calls.read_text().splitlines()) >= 2,
                   what="the command to read the status after the signal")
        assert reload.poll() is None
        set_status(daemon, "Reloading the configuration (reload 2)")
        assert reload.wait(timeout=30) == 0


def test_the_unit_reload_asked_during_a_load_waits_for_the_load_after_it(
        tmp_path: Path) -> None:
    # A SIGHUP while reload 2 loads is run as reload 3 once it ends: reload 2's outcome
    # (which may have read the file before the change) must not end the command.
    calls = tmp_path / "status.calls"
    with reload_under_way(tmp_path, "Reloading the configuration (reload 2)") \
            as (daemon, reload):
        set_status(daemon, "Reconfigured: 1 available service (reload 2)")
        # Two more looks at the status after reload 2's outcome: the command has seen
        # it, and goes on waiting.
        seen = len(calls.read_text().splitlines())
        wait_until(lambda: len(calls.read_text().splitlines()) >= seen + 2,
                   what="the command to read the status twice more")
        assert reload.poll() is None
        set_status(daemon, "Reloading the configuration (reload 3)")
        assert reload.wait(timeout=30) == 0


def test_the_unit_reload_stops_waiting_for_a_daemon_that_exited(tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(ECHO_CONF)
    status = tmp_path / "status"
    status.write_text("Started working: 1 available service\n")
    daemon = subprocess.Popen(["sleep", "60"])  # SIGHUP ends it, the status unchanged
    try:
        words, env = reload_command(tmp_path, {"XINETD_OPTS": f"-f {conf}",
                                               "INETD_COMPAT": "No"}, daemon.pid, status)
        # The daemon is reaped at once, so the command's `kill -0` finds it gone.
        reaper = threading.Thread(target=daemon.wait)
        reaper.start()
        done = subprocess.run(words, env=env, capture_output=True, text=True, timeout=60)
        reaper.join(timeout=30)
        assert done.returncode == 0, done
        assert daemon.returncode == -signal.SIGHUP
    finally:
        daemon.kill()
        daemon.wait()


def test_the_unit_watchdog_signal_is_sigkill_and_restarts_on_watchdog() -> None:
    # SIGABRT, systemd's default WatchdogSignal=, is the daemon's consistency check
    # (as xinetd's): it would keep running until TimeoutStopSec= ran out.
    assert unit_setting("WatchdogSignal") == "SIGKILL"
    assert unit_setting("Restart") == "on-watchdog"
    assert not re.search(r"^WatchdogSec=", UNIT.read_text(), re.MULTILINE)


def test_the_program_log_is_tagged_xinetd_in_the_journal() -> None:
    # Otherwise journald names the lines after ExecStart='s first program, sh.
    assert unit_setting("SyslogIdentifier") == "xinetd"
