"""Logs on the daemon's own stderr when that is a pipe, as in a container (`docker run`
without a terminal: `docker logs` reads the pipe): `log_type = FILE /dev/stderr`, the
`-filelog` of a `-dontfork` daemon and a server's `stderr = /dev/stderr` reach it, as
with xinetd. The paths lead through /proc's links (`pipe:[N]`), which pyxinetd's
check for planted symlinks took for paths: every entry was lost with an ERROR, the
daemon with `-filelog /dev/stderr` did not start at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_until
from tests.integration.test_dispatch import connect, read_all


# Exec the command after argv[1] with fd 2 on the descriptor argv[1] names (dash's
# redirections take single-digit descriptors only).
_ON_STDERR = ("import os, sys\nfd = int(sys.argv[1])\nos.dup2(fd, 2)\nos.close(fd)\n"
              "os.execvp(sys.argv[2], sys.argv[2:])")


class StderrPipe:
    """An anonymous pipe, as `docker run` gives its container (a FIFO would not do: its
    /proc link reads as its path), that a `cat` reads into a file. `wrapper` execs the
    daemon with fd 2 on the pipe (the pid stays the daemon's), passed as `fds`."""

    def __init__(self, folder: Path) -> None:
        self.out = folder / "stderr.out"
        read_end, self.write_end = os.pipe()
        with self.out.open("wb") as out:
            self.reader = subprocess.Popen(["cat"], stdin=read_end, stdout=out)
        os.close(read_end)
        self.fds = (self.write_end,)
        self.wrapper = (sys.executable, "-c", _ON_STDERR, str(self.write_end))

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def close(self) -> None:
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1
        if self.reader.poll() is None:
            self.reader.kill()
        self.reader.wait()


@pytest.fixture
def stderr_pipe(tmp_path: Path) -> Iterator[StderrPipe]:
    pipe = StderrPipe(tmp_path)
    try:
        yield pipe
    finally:
        pipe.close()


def chal(folder: Path, port: int, extra: str) -> str:
    """A challenge writing `out` to its client and `oops` to its stderr."""
    server = folder / "chal.sh"
    server.write_text("#!/bin/sh\necho out\necho oops >&2\n")
    server.chmod(0o755)
    return (f"service chal\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = {server}\n\tport = {port}\n\tbind = 127.0.0.1\n"
            f"{extra}}}\n")


@pytest.mark.parametrize("path", ["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"])
def test_a_service_log_on_a_stderr_pipe(daemons: DaemonFactory, stderr_pipe: StderrPipe,
                                        tmp_path: Path, path: str) -> None:
    port = free_port()
    daemon = daemons.start_config(
        chal(tmp_path, port, f"\tlog_type = FILE {path}\n\tlog_on_success = HOST PID EXIT\n"),
        wrapper=stderr_pipe.wrapper, pass_fds=stderr_pipe.fds)
    assert "Started working: 1 available service" in daemon.log()
    with connect(port) as conn:
        assert read_all(conn).startswith(b"out\n")
    wait_until(lambda: "EXIT: chal status=0" in stderr_pipe.text(), what="the EXIT line")
    assert "START: chal pid=" in stderr_pipe.text()
    assert "Cannot open" not in daemon.log()


@pytest.mark.parametrize("user", ["root", "nobody"])
@pytest.mark.parametrize("path", ["/dev/stderr", "/dev/fd/2"])
def test_a_servers_stderr_on_the_daemons_stderr_pipe(daemons: DaemonFactory,
                                                     stderr_pipe: StderrPipe,
                                                     tmp_path: Path, user: str,
                                                     path: str) -> None:
    # As nobody too: /dev/stderr leads to the daemon's own /proc/self/fd/2, which
    # names an open file, not a path anyone could swap (pyxinetd.filerights); opened
    # with nobody's ids, it was refused (the process is not dumpable then).
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pyxinetd-pipe-"))
    folder.chmod(0o755)
    try:
        daemon = daemons.start_config(
            chal(folder, port, f"\tstderr = {path}\n").replace("user = root",
                                                                  f"user = {user}"),
            wrapper=stderr_pipe.wrapper, pass_fds=stderr_pipe.fds)
        with connect(port) as conn:
            assert read_all(conn) == b"out\n"
        wait_until(lambda: "oops\n" in stderr_pipe.text(), what="the server's stderr")
    finally:
        shutil.rmtree(folder)
    assert "cannot open stderr file" not in daemon.log()


def test_dontfork_program_log_on_a_stderr_pipe(tmp_path: Path,
                                               stderr_pipe: StderrPipe) -> None:
    port = free_port()
    conf = tmp_path / "p.conf"
    conf.write_text(chal(tmp_path, port, ""))
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                             "-filelog", "/dev/stderr"], stdin=subprocess.DEVNULL,
                            stderr=stderr_pipe.write_end, start_new_session=True)
    try:
        wait_until(lambda: "Started working: 1 available service" in stderr_pipe.text()
                   or proc.poll() is not None, what="the start")
        assert proc.poll() is None, stderr_pipe.text()
        with connect(port) as conn:
            assert read_all(conn).startswith(b"out\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "Exiting..." in stderr_pipe.text()
