"""etc/systemd/xinetd.service and etc/default/xinetd: the command line the unit runs.

systemd is not the init of the test machine, so the unit's ExecStart= is run the way
systemd would run it (its words, `$$` turned into `$`, /etc/default/xinetd's variables
in the environment) with a stand-in `pyxinetd` that prints its arguments. The init
script and the unit must give the daemon the same options.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

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
    wanted_compat = ["-inetd_compat"] if compat == "Yes" and inetd_exists else []
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


def test_the_unit_file_is_valid() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run([analyze, "verify", "--man=no", str(UNIT)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def run_unit_reload(tmp_path: Path, env: dict[str, str],
                    main_pid: int) -> subprocess.CompletedProcess[str]:
    """The unit's ExecReload= as systemd runs it: `$$` and `%%` unescaped, the daemon's
    pid as $MAINPID, and a `pyxinetd` that is this checkout's."""
    words = [w.replace("$$", "$").replace("%%", "%")
             for w in shlex.split(unit_setting("ExecReload"))]
    folder = tmp_path / "real-bin"
    folder.mkdir(exist_ok=True)
    wrapper = folder / "pyxinetd"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m pyxinetd "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return subprocess.run(words, env={**os.environ, **env, "MAINPID": str(main_pid),
                                      "PATH": f"{folder}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


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
        assert daemon.wait(timeout=10) == -signal.SIGHUP
    finally:
        daemon.kill()
        daemon.wait()
