"""Relative paths the daemon takes from its environment, as relative -f/-pidfile are:
taken from the folder the start command ran in (the detached daemon works from `/`),
or, when that folder was removed, refused with one line and status 1 rather than
read or written somewhere else (docs/cli.md, Environment).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import free_port, read_pid, syslog_until
from tests.integration.test_daemonize import (START_TIMEOUT, Detached, detached, echo_conf,
                                              echo_roundtrip)

__all__ = ["detached"]  # a fixture, used below

IN_REMOVED_FOLDER = 'mkdir "$1" && cd "$1" && rmdir "$1" && shift && exec "$@"'


def refused(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"ping\n")
        return client.recv(100) == b""


def test_a_relative_hosts_deny_is_read_in_the_start_folder(
        detached: Detached, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deny").write_text("ALL: ALL\n")
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", "deny")
    port = free_port()
    result, _, log = detached.start(echo_conf(port))
    assert result.returncode == 0, result.stderr
    assert refused(port)
    assert "libwrap refused connection to echo" in log.read_text()


def test_a_relative_syslog_socket_is_in_the_start_folder(
        detached: Detached, tmp_path: Path) -> None:
    port = free_port()
    conf, pidfile = tmp_path / "s.conf", tmp_path / "s.pid"
    conf.write_text(echo_conf(port))
    detached.pidfiles.append(pidfile)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "log.sock"))
        syslog.settimeout(10)
        result = subprocess.run([sys.executable, "-m", "pyxinetd", "-f", str(conf),
                                 "-pidfile", str(pidfile)],
                                env={**os.environ, "PYXINETD_SYSLOG_SOCKET": "log.sock"},
                                cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=START_TIMEOUT)
        pid = read_pid(pidfile)
        if pid is not None:
            detached.pids.add(pid)
        assert result.returncode == 0, result.stderr
        wanted = f"xinetd[{pid}]: Started working: 1 available service"
        messages = syslog_until(syslog, wanted)
    assert wanted in messages[-1], messages


@pytest.mark.parametrize("variable", ["PYXINETD_DUMP_FILE", "PYXINETD_HOSTS_ALLOW",
                                      "PYXINETD_SYSLOG_SOCKET"])
@pytest.mark.parametrize("mode", [[], ["-dontfork"]])
def test_a_relative_variable_in_a_removed_folder_is_refused(
        detached: Detached, tmp_path: Path, variable: str, mode: list[str]) -> None:
    port = free_port()
    conf, log, pidfile = tmp_path / "r.conf", tmp_path / "r.log", tmp_path / "r.pid"
    conf.write_text(echo_conf(port))
    detached.pidfiles.append(pidfile)
    name = f"pyxinetd-test-{os.getpid()}-{port}"
    try:
        result = subprocess.run(
            ["sh", "-c", IN_REMOVED_FOLDER, "sh", str(tmp_path / "gone"), sys.executable,
             "-m", "pyxinetd", "-f", str(conf), "-filelog", str(log), "-pidfile",
             str(pidfile), *mode],
            env={**os.environ, variable: name}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=START_TIMEOUT)
        pid = read_pid(pidfile)
        if pid is not None:
            detached.pids.add(pid)
        assert (result.returncode, result.stderr) == (
            1, f"pyxinetd: {variable}={name} is a relative path, and the folder it would "
               "be taken from was removed: give an absolute path\n")
        assert pid is None and not log.exists()
        assert not os.path.lexists(f"/{name}")
    finally:
        if os.path.lexists(f"/{name}"):
            os.unlink(f"/{name}")


def test_an_absolute_variable_in_a_removed_folder_still_serves(
        detached: Detached, tmp_path: Path) -> None:
    port = free_port()
    conf, log, pidfile = tmp_path / "a.conf", tmp_path / "a.log", tmp_path / "a.pid"
    conf.write_text(echo_conf(port))
    detached.pidfiles.append(pidfile)
    result = subprocess.run(
        ["sh", "-c", IN_REMOVED_FOLDER, "sh", str(tmp_path / "gone"), sys.executable,
         "-m", "pyxinetd", "-f", str(conf), "-filelog", str(log), "-pidfile", str(pidfile)],
        env={**os.environ, "PYXINETD_DUMP_FILE": str(tmp_path / "a.dump")},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT)
    pid = read_pid(pidfile)
    if pid is not None:
        detached.pids.add(pid)
    assert result.returncode == 0, result.stderr
    assert echo_roundtrip(port) == b"ping\n"
