"""A service log that is a FIFO whose reader stops reading: the daemon keeps serving.

xinetd writes its logs blocking, so once the pipe is full it waits for the reader and
serves nobody (every service) until it reads again; pyxinetd writes to a FIFO without
waiting: an entry that does not fit waits in the daemon and is written, whole and in
order, once the reader reads again, a reload in between losing none of them."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

from tests.daemon import Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_dispatch import connect, read_all

F_SETPIPE_SZ = 1031     # <fcntl.h>; Python 3.11's fcntl module names it on Linux only
# About 1 KiB an entry, so a few fill the smallest pipe; long enough that every entry,
# even an EXIT with a 3-digit pid (pids wrap at pid_max), is cut at 1024 bytes.
LONG_ID = "x" * 1010


def service(name: str, port: int, log: str, extra: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n\tcps = 0 0\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n{log}{extra}"
            f"\tlog_on_success = HOST PID EXIT\n}}\n")


def ask(port: int) -> bytes:
    with connect(port) as conn:
        return read_all(conn)


def read_entries(reader: int, count: int) -> list[bytes]:
    """The first `count` entries the (non-blocking) reader gets, without their stamps;
    waits (bounded) for them to come."""
    got = b""

    def everything() -> bool:
        nonlocal got
        try:
            got += os.read(reader, 65536)
        except BlockingIOError:
            pass
        return got.count(b"\n") >= count
    wait_until(everything, 10.0, what=f"the {count} entries once the reader read again")
    return [line.split(b": ", 1)[1] for line in got.splitlines()]


def test_a_fifo_log_whose_reader_stops_reading_never_stops_the_daemon(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)
        logged, other = free_port(), free_port()
        daemon = daemons.start_config(
            service("piped", logged, f"\tlog_type = FILE {fifo}\n", f"\tid = {LONG_ID}\n")
            + service("other", other, ""))
        for _ in range(6):      # 12 entries of about 1 KiB: 3 fit, the others wait
            assert ask(logged) == b"hi\n"
        assert ask(other) == b"hi\n"
        # The reader reads again: every entry comes, whole and in order.
        entries = read_entries(reader, 12)
        assert len(entries) == 12
        # Each entry whole (cut at 1024 bytes, as xinetd cuts it), none before the
        # START of its server (servers may overlap).
        assert [len(entry) for entry in entries] == [1024] * 12, entries
        kinds = [entry.split(b" ", 1)[0] for entry in entries]
        assert all(entry.startswith(f"{kind.decode()} {LONG_ID} ".encode())
                   for kind, entry in zip(kinds, entries))
        assert kinds.count(b"START:") == kinds.count(b"EXIT:") == 6
        assert all(kinds[:n].count(b"START:") >= kinds[:n].count(b"EXIT:")
                   for n in range(13))
        assert "Error writing" not in daemon.log()
    finally:
        os.close(reader)


def test_a_reload_loses_none_of_the_entries_waiting_for_the_reader(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    ident = "x" * 900      # about 1 KiB an entry, short enough to keep its end
    try:
        fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)
        port = free_port()
        log = f"\tlog_type = FILE {fifo}\n\tid = {ident}\n"
        daemon = daemons.start_config(service("piped", port, log))
        for _ in range(6):      # 12 entries: 4 fit, the others wait
            assert ask(port) == b"hi\n"
        # Every EXIT is logged once its server is reaped.
        wait_until(lambda: not daemon.children(), 10.0, what="the servers reaped")
        args = list(daemon.proc.args)   # type: ignore[arg-type]
        conf = Path(args[args.index("-f") + 1])
        # After the reload EXIT entries carry their duration: told apart from before.
        conf.write_text(service("piped", port, log).replace("EXIT\n", "EXIT DURATION\n"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("Reconfigured")
        for _ in range(2):
            assert ask(port) == b"hi\n"
        entries = read_entries(reader, 16)
        assert len(entries) == 16
        assert all(entry.split(b" ", 2)[1] == ident.encode() for entry in entries), entries
        before, after = entries[:12], entries[12:]
        assert [e.split(b" ", 1)[0] for e in before].count(b"EXIT:") == 6
        assert not any(b"duration=" in e for e in before)
        assert [e for e in after if e.startswith(b"EXIT:")] and all(
            b"duration=" in e for e in after if e.startswith(b"EXIT:"))
        assert "entries dropped" not in daemon.log() and "Error writing" not in daemon.log()
    finally:
        os.close(reader)


def open_on(daemon_pid: int, path: Path) -> int:
    """How many of the daemon's descriptors are open on `path`."""
    fd_dir = Path(f"/proc/{daemon_pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == str(path):
                count += 1
        except OSError:
            pass    # closed meanwhile
    return count


def reload_to(daemon: Daemon, text: str, generation: int) -> None:
    args = list(daemon.proc.args)   # type: ignore[arg-type]
    Path(args[args.index("-f") + 1]).write_text(text)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("Reconfigured", count=generation)


def test_a_reload_off_a_fifo_whose_reader_left_lets_go_of_the_fifo(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Entries wait for a reader that left; the reload moves the log to another file
    # (or finds a new FIFO made at the path): no entry would ever try them again, so
    # the old FIFO is closed and they are counted, reload after reload.
    fifo, other = tmp_path / "log.fifo", tmp_path / "other.log"
    port = free_port()
    on_fifo = service("piped", port, f"\tlog_type = FILE {fifo}\n")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    daemon = daemons.start_config(on_fifo)
    os.close(reader)
    for generation in range(1, 4):
        assert ask(port) == b"hi\n"
        daemon.wait_for_log(f"Error writing {fifo}: Broken pipe", count=generation)
        wait_until(lambda: not daemon.children(), 10.0, what="the server reaped")
        assert open_on(daemon.proc.pid, fifo) == 1
        reload_to(daemon, service("piped", port, f"\tlog_type = FILE {other}\n"),
                  2 * generation - 1)
        assert open_on(daemon.proc.pid, fifo) == 0
        assert daemon.log().count(f"entries dropped: {fifo} was full") == generation
        # A new FIFO at the path, with a reader that comes and leaves.
        fifo.unlink()
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        reload_to(daemon, on_fifo, 2 * generation)
        os.close(reader)
    assert open_on(daemon.proc.pid, fifo) == 1
    assert daemon.log().count(f"entries dropped: {fifo} was full") == 3


def test_a_fifo_held_by_a_reload_is_let_go_when_its_reader_leaves(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The reader stops reading, entries wait; a reload moves the log elsewhere and
    # the FIFO is kept for them, written from the loop. Then the reader leaves: no
    # entry would try them again, so the FIFO is closed and they are counted.
    fifo, other = tmp_path / "log.fifo", tmp_path / "other.log"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    ident = "x" * 900
    try:
        fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)
        port = free_port()
        daemon = daemons.start_config(
            service("piped", port, f"\tlog_type = FILE {fifo}\n\tid = {ident}\n"))
        for _ in range(6):      # 12 entries: 4 fit, the others wait
            assert ask(port) == b"hi\n"
        wait_until(lambda: not daemon.children(), 10.0, what="the servers reaped")
        reload_to(daemon, service("piped", port, f"\tlog_type = FILE {other}\n"), 1)
        assert open_on(daemon.proc.pid, fifo) == 1
        assert "entries dropped" not in daemon.log()
    finally:
        os.close(reader)
    daemon.wait_for_log(f"entries dropped: {fifo} was full")
    wait_until(lambda: open_on(daemon.proc.pid, fifo) == 0, 10.0, what="the FIFO closed")
    assert ask(port) == b"hi\n"
