"""`stderr = FILE`: a server's descriptor 2 goes to a file instead of to the client
(openSUSE/xinetd issue 23). Real daemon, real servers, real files."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def talker() -> Iterator[str]:
    """A server that writes `out` to the client and a line to stderr, in a folder any
    user can read (pytest's are 0700 and the server may run as nobody)."""
    folder = tempfile.mkdtemp(prefix="pyxinetd-stderr-")
    try:
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "talker")
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho out\necho err from $$ >&2\n")
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(folder)


def service(port: int, talker: str, *lines: str) -> str:
    body = "".join(f"\t{line}\n" for line in lines)
    return f"""service talker
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tport = {port}
\tbind = 127.0.0.1
\tserver = {talker}
{body}}}
"""


def ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        chunks = []
        while data := conn.recv(4096):
            chunks.append(data)
    return b"".join(chunks)


def test_without_it_stderr_goes_to_the_client_as_in_xinetd(daemons: DaemonFactory, talker: str) -> None:
    port = free_port()
    daemons.start_config(service(port, talker, "user = root"))
    reply = ask(port).decode()
    assert reply.startswith("out\nerr from ")


def test_stderr_to_a_file(daemons: DaemonFactory, tmp_path: Path, talker: str) -> None:
    port = free_port()
    log = tmp_path / "talker.err"
    daemons.start_config(service(port, talker, "user = root", f"stderr = {log}"))
    assert ask(port) == b"out\n"
    assert ask(port) == b"out\n"
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("err from ") for line in lines)
    assert log.stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a server as nobody")
def test_a_server_running_as_nobody_writes_the_file_the_daemon_opened(
        daemons: DaemonFactory, tmp_path: Path, talker: str) -> None:
    port = free_port()
    log = tmp_path / "talker.err"   # in a directory nobody cannot even enter
    daemons.start_config(service(port, talker, "user = nobody", f"stderr = {log}"))
    assert ask(port) == b"out\n"
    assert log.read_text().startswith("err from ")
    assert log.stat().st_uid == 0
    assert pwd.getpwnam("nobody").pw_uid != 0


def test_from_the_defaults_and_to_dev_null(daemons: DaemonFactory, tmp_path: Path, talker: str) -> None:
    port = free_port()
    daemons.start_config("defaults\n{\n\tstderr = /dev/null\n}\n" + service(port, talker, "user = root"))
    assert ask(port) == b"out\n"


def test_a_file_that_cannot_be_opened_is_reported_and_stderr_is_discarded(
        daemons: DaemonFactory, tmp_path: Path, talker: str) -> None:
    port = free_port()
    missing = tmp_path / "no" / "such" / "dir" / "talker.err"
    daemon = daemons.start_config(service(port, talker, "user = root", f"stderr = {missing}"))
    assert ask(port) == b"out\n"   # served, and the client still does not get stderr
    line = daemon.wait_for_log("cannot open stderr file")
    assert f"talker: cannot open stderr file {missing} (No such file or directory" in line
    assert "the server's stderr goes to /dev/null" in line


def test_a_fifo_without_a_reader_never_stalls_the_daemon(daemons: DaemonFactory,
                                                         tmp_path: Path, talker: str) -> None:
    # Opening a FIFO for writing waits for a reader; the daemon opens without waiting
    # (ENXIO), reports it, and the server's stderr is discarded.
    fifo = tmp_path / "stderr.fifo"
    os.mkfifo(fifo)
    port = free_port()
    daemon = daemons.start_config(service(port, talker, "user = root", f"stderr = {fifo}"))
    assert ask(port) == b"out\n"
    line = daemon.wait_for_log("cannot open stderr file")
    assert f"cannot open stderr file {fifo} (No such device or address" in line
