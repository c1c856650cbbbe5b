"""Start-up under a descriptor limit too small to serve (`ulimit -n 5`).

Five descriptors leave two beside 0-2 once the interpreter runs: the event loop's
selector takes one and the signal socket pair needs two more, so the start fails at
the same step whatever the options. It must end with one CRITICAL line (on stderr, in
the -filelog file, or printed by the detached start command) and status 1, never a
Python traceback. xinetd 2.3.15.3 fails the same way (its signal pipe) with status 1
and CRITICAL lines in its log (tests/oracle.py). Limits from 6 up are served as far as
the descriptors go, as by xinetd (a service that cannot get its socket is deactivated).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import free_port, nofile_limited
from tests.oracle import require_xinetd

TIMEOUT = 30
TINY_LIMIT = 5


def conf(tmp_path: Path) -> Path:
    path = tmp_path / "echo.conf"
    path.write_text("".join(
        f"service s{n}\n{{\n\ttype = INTERNAL UNLISTED\n\tid = echo-stream\n"
        f"\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n\tuser = root\n"
        f"\tbind = 127.0.0.1\n\tport = {free_port()}\n}}\n" for n in range(3)))
    return path


def run_tiny(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*nofile_limited(TINY_LIMIT), sys.executable, "-m", "pyxinetd", "-f",
            str(conf(tmp_path)), *args]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          cwd=tmp_path, timeout=TIMEOUT)
    if "Fatal Python error" in done.stderr:
        pytest.skip("this interpreter cannot even start under the limit")
    return done


CRITICAL = (r"CRITICAL: .*cannot create the (signal socket pair|event loop's selector): "
            r"Too many open files \(errno = 24\)\. Exiting\.\.\.")


@pytest.mark.parametrize("mode", [["-dontfork"], ["-d"], ["-dontfork", "-pidfile", "pid"]])
def test_foreground_start_ends_with_one_critical_line(tmp_path: Path,
                                                      mode: list[str]) -> None:
    done = run_tiny(tmp_path, *mode)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert re.search(CRITICAL, lines[0]), done.stderr
    assert not (tmp_path / "pid").exists()


def test_foreground_start_with_filelog_says_it_in_the_log(tmp_path: Path) -> None:
    done = run_tiny(tmp_path, "-dontfork", "-filelog", "log")
    assert (done.returncode, done.stderr) == (1, "")
    lines = (tmp_path / "log").read_text().splitlines()
    assert len(lines) == 1 and re.search(CRITICAL, lines[0]), lines


@pytest.mark.parametrize("log", [[], ["-filelog", "log"], ["-syslog", "daemon"]])
def test_detached_start_prints_one_line_and_fails(tmp_path: Path, log: list[str]) -> None:
    done = run_tiny(tmp_path, "-pidfile", "pid", *log)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(r"pyxinetd: " + CRITICAL, lines[0]), done.stderr
    assert not (tmp_path / "pid").exists()


def _loader_argv(wrapper: str) -> list[str]:
    """The command the oracle's wrapper script execs: the shell running the script
    cannot itself start under the limit."""
    for line in Path(wrapper).read_text().splitlines():
        if line.startswith("exec "):
            return [word for word in shlex.split(line)[1:] if word != "$@"]
    pytest.skip(f"{wrapper} has no exec line")


def test_xinetd_fails_the_same_way(tmp_path: Path) -> None:
    argv = _loader_argv(require_xinetd())
    done = subprocess.run(["unshare", "-n", "--", *nofile_limited(TINY_LIMIT), *argv,
                           "-f", str(conf(tmp_path)), "-dontfork", "-filelog", "log"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          cwd=tmp_path, timeout=TIMEOUT)
    assert done.returncode == 1, done.stderr
    log = (tmp_path / "log").read_text()
    assert "CRITICAL" in log and "Too many open files (errno = 24)" in log
    assert log.rstrip().endswith("Exiting..."), log
