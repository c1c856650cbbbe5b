"""hosts.allow `spawn` commands that hang are bounded: the resolver helper runs at most
SPAWN_LIMIT at once (lowered here through its test-only variable); one more is not run,
the program log says so naming the service, the client and the command, and the
server still starts. Once the hung commands end, the next one runs again.

The commands hang on a FIFO nobody writes to (`cat FIFO`): opening its writing end and
closing it again ends them all, without signalling anything by name.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_until, without_ids_ignored
from tests.integration.test_dispatch import connect, read_all

TIMEOUT = 10.0
LIMIT = 2


def fetch(port: int) -> bytes:
    with connect(port) as conn:
        return read_all(conn)


def release(fifo: Path) -> bool:
    """Give every `cat` blocked opening the FIFO its EOF; False while none has it open."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ENXIO:    # no reader yet
            return False
        raise
    os.close(fd)
    return True


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def release_until(fifo: Path, done: Path, count: int) -> None:
    """Release the FIFO's readers until `count` commands have finished (a command may
    reach its `cat` only after an earlier release)."""
    def finished() -> bool:
        release(fifo)
        return len(lines(done)) >= count
    wait_until(finished, TIMEOUT, what=f"{count} spawn commands to finish")


def test_spawn_commands_beyond_the_limit_are_reported_and_the_server_runs(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "hang.fifo"
    os.mkfifo(fifo)
    done = tmp_path / "done.txt"
    command = f"cat {fifo} >/dev/null; echo %a >> {done}"
    (tmp_path / "hosts.allow").write_text(f"in.hang: ALL: spawn {command}\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    monkeypatch.setenv("PYXINETD_SPAWN_LIMIT", str(LIMIT))
    port = free_port()
    daemon = daemons.start_config(f"""
service hang
{{
    type = UNLISTED
    socket_type = stream
    port = {port}
    wait = no
    user = root
    server = /bin/echo
    server_args = hello
    bind = 127.0.0.1
    libwrap = in.hang
    cps = 0 0
}}
""")
    try:
        # LIMIT commands hang; each server answers all the same.
        for _ in range(LIMIT + 1):
            assert fetch(port) == b"hello\n"
        daemon.wait_for_log(
            rf"ERROR: spawn command for hang from 127\.0\.0\.1 not run \({LIMIT} spawn "
            rf"commands are still running\): cat {fifo} >/dev/null; echo 127\.0\.0\.1 >> "
            rf"{done}", timeout=TIMEOUT)
        assert lines(done) == []
    finally:
        release_until(fifo, done, LIMIT)
    # Their slots are free again: the next connection's command runs.
    assert fetch(port) == b"hello\n"
    release_until(fifo, done, LIMIT + 1)
    assert without_ids_ignored(daemon.log()).count("not run") == 1
