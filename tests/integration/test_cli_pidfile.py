"""-pidfile against the real xinetd: a pidfile that cannot be written, and SIGTERM.

xinetd 2.3.15.3 serves without a pidfile it cannot create (it logs `DEBUG: open
failed: ...` only); pyxinetd serves too, but says so at ERROR level, so the detached
start command prints it. A pidfile locked by another pyxinetd still stops the start
(tests/integration/test_daemonize.py).

The oracle runs in fresh network, mount and pid namespaces: when the shell that is
process 1 there exits, the kernel kills whatever xinetd left running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, alive, free_port, read_pid, wait_until
from tests.integration.test_daemonize import Detached, detached, echo_conf, echo_roundtrip
from tests.oracle import require_xinetd

__all__ = ["detached"]  # a fixture, used below

# In the namespace: xinetd detaches (no -dontfork) and the shell reports what happened.
_ORACLE = r"""
ip link set lo up
cd "$1"; shift
"$@" </dev/null >out 2>err
echo "status=$?"
i=0
while ! grep -q "$WAIT_FOR" log 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ -n "$THEN" ]; then sh -c "$THEN"; fi
for p in $(ls /proc | grep '^[0-9]*$'); do
    [ "$p" = 1 ] || [ "$p" = $$ ] && continue
    grep -q xinetd "/proc/$p/cmdline" 2>/dev/null && echo "running=$p"
done
true
"""


def run_oracle(tmp_path: Path, *args: str, wait_for: str = "Started working",
               then: str = "") -> tuple[str, str]:
    """Start the real xinetd detached in tmp_path; (report, program log)."""
    xinetd = require_xinetd()
    env = {**os.environ, "WAIT_FOR": wait_for, "THEN": then}
    done = subprocess.run(["unshare", "-n", "-m", "-p", "--fork", "--mount-proc",
                           "sh", "-c", _ORACLE, "sh", str(tmp_path), xinetd, *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    log = tmp_path / "log"
    return done.stdout, log.read_text() if log.exists() else ""


def test_xinetd_serves_without_a_pidfile_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "echo.conf").write_text(echo_conf(7))
    report, log = run_oracle(tmp_path, "-f", "echo.conf", "-filelog", "log",
                             "-pidfile", str(tmp_path / "missing" / "x.pid"))
    assert "status=0" in report and "running=" in report, report
    assert "DEBUG: open failed: No such file or directory (errno = 2)" in log
    assert "Started working: 1 available service" in log


@pytest.mark.parametrize("mode", [(), ("-dontfork",)])
def test_a_pidfile_that_cannot_be_written_is_reported_and_the_daemon_serves(
        detached: Detached, tmp_path: Path, mode: tuple[str, ...]) -> None:
    port = free_port()
    pidfile = tmp_path / "missing-dir" / "xinetd.pid"
    if mode:
        conf = tmp_path / "fg.conf"
        conf.write_text(echo_conf(port))
        log = tmp_path / "fg.log"
        proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf),
                                 "-filelog", str(log), "-pidfile", str(pidfile), *mode],
                                stdin=subprocess.DEVNULL, start_new_session=True)
        detached.pids.add(proc.pid)
        try:
            wait_until(lambda: "Started working" in (log.read_text() if log.exists()
                                                     else ""), what="Started working")
            assert echo_roundtrip(port) == b"ping\n"
        finally:
            proc.kill()
            proc.wait()
        text = log.read_text()
    else:
        result, _, log = detached.start(echo_conf(port), pidfile=pidfile)
        assert result.returncode == 0, result.stderr
        # The start command passes the daemon's ERROR line on.
        assert (f"pyxinetd: ERROR: cannot open pidfile {pidfile}: No such file or "
                f"directory; serving without a pidfile") in result.stderr
        assert echo_roundtrip(port) == b"ping\n"
        text = log.read_text()
        pid = int(text.split("xinetd[", 1)[1].split("]", 1)[0])
        detached.pids.add(pid)
    assert (f"ERROR: cannot open pidfile {pidfile}: No such file or directory; serving "
            f"without a pidfile") in text
    assert "Started working: 1 available service" in text
    assert "CRITICAL" not in text
    assert not pidfile.parent.exists()


def test_xinetd_removes_its_pidfile_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "echo.conf").write_text(echo_conf(7))
    pidfile = tmp_path / "x.pid"
    report, log = run_oracle(tmp_path, "-f", "echo.conf", "-filelog", "log",
                             "-pidfile", str(pidfile),
                             then=f'kill -TERM "$(cat {pidfile})"; sleep 1')
    assert "running=" not in report, report
    assert "WARNING: Exiting..." in log
    assert not pidfile.exists()


def test_sigterm_removes_the_pidfile_of_a_detached_daemon(detached: Detached) -> None:
    result, pidfile, log = detached.start(echo_conf(free_port()))
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None
    # The pidfile names the detached daemon: the process that logs and serves.
    assert f"xinetd[{pid}]: NOTICE: Started working" in log.read_text()
    os.kill(pid, 15)
    wait_until(lambda: not alive(pid), what="the daemon to exit")
    assert not pidfile.exists()


def test_dontfork_with_an_unwritable_pidfile_keeps_the_port(daemons: DaemonFactory,
                                                             tmp_path: Path) -> None:
    # The daemon that serves without a pidfile really binds: a second start on the port
    # finds it taken.
    port = free_port()
    daemons.start_config(echo_conf(port), "-pidfile", str(tmp_path / "no" / "p.pid"))
    with socket.socket() as probe:
        with pytest.raises(OSError):
            probe.bind(("127.0.0.1", port))


def test_xinetd_leaves_a_relative_pidfile_behind(tmp_path: Path) -> None:
    # xinetd writes it before its chdir("/") and unlinks the same relative name after.
    (tmp_path / "echo.conf").write_text(echo_conf(7))
    report, log = run_oracle(tmp_path, "-f", "echo.conf", "-filelog", "log",
                             "-pidfile", "rel.pid", then='kill -TERM "$(cat rel.pid)"; sleep 1')
    assert "running=" not in report and "WARNING: Exiting..." in log, report
    assert (tmp_path / "rel.pid").exists()


def test_a_relative_pidfile_is_removed_on_sigterm(detached: Detached, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "rel.conf").write_text(echo_conf(port))
    pidfile = tmp_path / "rel.pid"
    detached.pidfiles.append(pidfile)
    result = subprocess.run([sys.executable, "-m", "pyxinetd", "-f", "rel.conf", "-filelog",
                             "rel.log", "-pidfile", "rel.pid"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    pid = read_pid(pidfile)
    assert pid is not None and echo_roundtrip(port) == b"ping\n"
    os.kill(pid, 15)
    wait_until(lambda: not alive(pid), what="the daemon to exit")
    assert not pidfile.exists()


def symlinked_pidfile(tmp_path: Path) -> tuple[Path, Path]:
    """A pidfile path that is a symlink to a file holding something else."""
    target = tmp_path / "target"
    target.write_text("not a pid\n")
    link = tmp_path / "x.pid"
    link.symlink_to(target)
    return link, target


def test_xinetd_replaces_a_symlinked_pidfile(tmp_path: Path) -> None:
    (tmp_path / "echo.conf").write_text(echo_conf(7))
    link, target = symlinked_pidfile(tmp_path)
    report, log = run_oracle(tmp_path, "-f", "echo.conf", "-filelog", "log",
                             "-pidfile", str(link),
                             then=f'cp {link} seen; kill -TERM "$(cat {link})"; sleep 1')
    assert "running=" not in report and "WARNING: Exiting..." in log, report
    assert (tmp_path / "seen").read_text().rstrip("\n").isdigit()
    assert target.read_text() == "not a pid\n"
    assert not link.exists() and not link.is_symlink()


def test_a_symlinked_pidfile_is_replaced_and_its_target_kept(detached: Detached,
                                                              tmp_path: Path) -> None:
    link, target = symlinked_pidfile(tmp_path)
    result, _, log = detached.start(echo_conf(free_port()), pidfile=link)
    assert result.returncode == 0, result.stderr
    assert not link.is_symlink()
    pid = read_pid(link)
    assert pid is not None
    assert f"xinetd[{pid}]: NOTICE: Started working" in log.read_text()
    assert "ERROR" not in log.read_text()
    assert target.read_text() == "not a pid\n"
    os.kill(pid, 15)
    wait_until(lambda: not alive(pid), what="the daemon to exit")
    assert not link.exists() and not link.is_symlink()
    assert target.read_text() == "not a pid\n"
