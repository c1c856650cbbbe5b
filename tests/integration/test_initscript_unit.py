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
import stat
import subprocess
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
