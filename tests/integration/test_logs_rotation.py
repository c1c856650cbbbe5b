"""Log files under logrotate, as xinetd 2.3.15.3 handles them (checked side by side):
- `create` (the file renamed, a new one made): both the `-filelog` program log and a
  `log_type = FILE` log keep writing to the renamed file; a SIGHUP reopens the service
  log by its path, never the program log, which is opened once;
- `copytruncate`: both are appended to, so the next line starts the emptied file (no
  hole of NUL bytes where the old lines were)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.daemon import Daemon, DaemonFactory, free_port, process_state, wait_until
from tests.integration.test_dispatch import connect, read_all

TIMEOUT = 10.0


def start(daemons: DaemonFactory, log: Path) -> tuple[Daemon, int]:
    port = free_port()
    daemon = daemons.start_config(
        f"service chatty\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n\tbind = 127.0.0.1\n"
        f"\tport = {port}\n\tcps = 0 0\n\tlog_type = FILE {log}\n"
        f"\tlog_on_success = PID\n}}\n")
    return daemon, port


def serve(port: int, log: Path) -> int:
    """One client; returns once its START line is in `log`: its server's pid."""
    before = log.read_text().count("START") if log.exists() else 0
    with connect(port) as conn:
        assert read_all(conn) == b"hi\n"
    wait_until(lambda: log.exists() and log.read_text().count("START") > before,
               TIMEOUT, what="a START line")
    return int(log.read_text().rsplit("pid=", 1)[1].split()[0])


def reloaded(daemon: Daemon, program_log: Path) -> None:
    """Wait for the reload's `Reconfigured:` line in `program_log`; on a timeout, say
    what the daemon was doing (its state, its program log and its stderr)."""
    try:
        wait_until(lambda: "Reconfigured:" in program_log.read_text(), TIMEOUT,
                   what="the reload")
    except AssertionError as err:
        stderr = daemon.log_path.with_suffix(".err")
        raise AssertionError(
            f"{err}; daemon state {process_state(daemon.pid)}, exit {daemon.proc.poll()}, "
            f"program log {program_log.read_text()!r}, stderr "
            f"{stderr.read_text() if stderr.exists() else ''!r}") from None


def test_create_rotation_a_sighup_reopens_the_service_log_not_the_program_log(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    log = tmp_path / "chatty.log"
    daemon, port = start(daemons, log)
    serve(port, log)
    program = daemon.log_path
    log.rename(tmp_path / "chatty.log.1")
    program.rename(tmp_path / "program.log.1")
    log.touch()
    program.touch()
    late = serve(port, tmp_path / "chatty.log.1")      # still the file it holds
    assert log.read_text() == ""
    daemon.signal(signal.SIGHUP)
    rotated = tmp_path / "program.log.1"
    reloaded(daemon, rotated)
    after = serve(port, log)
    assert f"pid={late}" in (tmp_path / "chatty.log.1").read_text()
    assert f"pid={after}" in log.read_text()
    assert program.read_text() == ""        # opened once: rotate it with copytruncate


def test_copytruncate_the_next_lines_start_the_emptied_files(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    log = tmp_path / "chatty.log"
    daemon, port = start(daemons, log)
    serve(port, log)
    for path in (log, daemon.log_path):
        path.write_bytes(b"")
    serve(port, log)
    daemon.signal(signal.SIGHUP)
    reloaded(daemon, daemon.log_path)
    for text in (log.read_text(), daemon.log()):
        assert "\0" not in text
        assert text[0].isdigit()            # a time stamp: the line starts the file
