"""The fcntl-locked pidfile, with a second process as the competing daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyxinetd.pidfile import PidFile, PidFileError, create_exclusive, lock_holder

# A competing process: takes the lock, says so, then waits for stdin to close.
HOLDER = textwrap.dedent("""
    import sys
    from pyxinetd.pidfile import PidFile
    with PidFile(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")


def test_writes_pid_mode_0644_and_removes_on_release(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    old = os.umask(0o077)
    try:
        with PidFile(str(path)) as pidfile:
            assert pidfile.held
            assert path.read_bytes() == f"{os.getpid()}\n".encode()
            assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    assert not path.exists()


def test_a_stale_file_is_taken_over_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text("123456789012\n")
    pidfile = PidFile(str(path))
    pidfile.acquire()
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        # Nobody else holds it: this process's own lock is not reported by F_GETLK.
        assert lock_holder(str(path)) is None
    finally:
        pidfile.release()
    pidfile.release()  # idempotent


def test_another_process_holding_the_lock_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert lock_holder(str(path)) == holder.pid
        with pytest.raises(PidFileError) as info:
            PidFile(str(path)).acquire()
        assert info.value.holder == holder.pid
        assert f"locked by pid {holder.pid}" in str(info.value)
        # The refused attempt neither removed nor rewrote the holder's file.
        assert path.read_text() == f"{holder.pid}\n"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert not path.exists()
    assert lock_holder(str(path)) is None


def test_release_leaves_a_file_that_is_no_longer_ours(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    pidfile = PidFile(str(path))
    pidfile.acquire()
    # Someone replaced the file (a new inode at the path): it is not ours to remove.
    path.unlink()
    path.write_text("1\n")
    pidfile.release()
    assert path.read_text() == "1\n"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_is_replaced_by_a_regular_file_and_its_target_kept(
        tmp_path: Path, dangling: bool) -> None:
    target = tmp_path / "elsewhere"
    if not dangling:
        target.write_text("keep\n")
    link = tmp_path / "x.pid"
    link.symlink_to(target)
    with PidFile(str(link)):
        assert not link.is_symlink()
        assert link.read_text() == f"{os.getpid()}\n"
        assert link.stat().st_mode & 0o777 == 0o644
    assert not link.exists() and not link.is_symlink()
    if dangling:
        assert not target.exists()
    else:
        assert target.read_text() == "keep\n"


def test_a_link_put_back_before_the_creation_is_not_written_through(tmp_path: Path) -> None:
    # The moment between removing the link and creating the file: a new link there
    # makes the exclusive creation fail.
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    link = tmp_path / "x.pid"
    link.symlink_to(target)
    with pytest.raises(PidFileError) as info:
        create_exclusive(str(link))
    assert str(info.value) == (f"cannot create pidfile {link}: something was put there "
                               f"while it was being replaced")
    assert target.read_text() == "keep\n" and link.is_symlink()
    dangling = tmp_path / "y.pid"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(PidFileError):
        create_exclusive(str(dangling))
    assert not (tmp_path / "nowhere").exists()


def test_a_fifo_at_the_path_is_replaced_without_waiting(tmp_path: Path) -> None:
    # A local user's FIFO in a shared folder: opening it to ask who locks it waited
    # for a writer for ever, and the start with it.
    path = tmp_path / "x.pid"
    os.mkfifo(path)
    assert lock_holder(str(path)) is None
    with PidFile(str(path)):
        assert path.is_file() and path.read_text() == f"{os.getpid()}\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the planted file is another user's")
def test_a_file_another_user_planted_is_replaced_even_locked(tmp_path: Path) -> None:
    # In /tmp (or any shared folder) a user plants the pidfile: kept, it stayed theirs
    # (they could rewrite the pid); locked by them, it kept the daemon from starting.
    # xinetd replaces whatever is at the path.
    path = tmp_path / "x.pid"
    path.write_text("")
    os.chown(path, 65534, 65534)
    planted = path.stat().st_ino
    locker = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\nsys.stdin.read()\n", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        assert lock_holder(str(path)) is None      # not a pidfile of the daemon's user
        with PidFile(str(path)):
            st = path.stat()
            assert (st.st_uid, st.st_ino != planted) == (0, True)
            assert path.read_text() == f"{os.getpid()}\n"
    finally:
        locker.communicate(timeout=10)    # closes its stdin: it ends


@pytest.mark.skipif(os.geteuid() != 0, reason="the planted file is another user's")
def test_a_planted_file_another_daemon_replaced_meanwhile_is_not_replaced_again(
        tmp_path: Path) -> None:
    # Two daemons judge the same planted file; the first replaces it and runs. The
    # second, acting on what it judged, removed the first's live pidfile and ran too.
    path = tmp_path / "x.pid"
    path.write_text("")
    os.chown(path, 65534, 65534)
    judged = os.lstat(path)
    first = PidFile(str(path))
    first.acquire()       # replaces the planted file, locks its own
    try:
        second = PidFile(str(path))
        assert second._replace(judged) is None
        # The first's file is still the one at the path (its lock, held by this
        # process, cannot be tested from it: POSIX locks are the process's).
        assert path.read_text() == f"{os.getpid()}\n" and path.stat().st_uid == 0
    finally:
        first.release()
