"""The pidfile: `PID\\n`, mode 0644, held under an fcntl lock while the daemon runs.

Why not python-daemon's `daemon.pidfile`: it depends on the deprecated `lockfile`
package, and it would be entered inside `DaemonContext.open()`, whereas the pidfile must
name the process that serves and must be written once that process exists (after
detaching; reference §4.1 step 5).

The lock is a POSIX record lock (`fcntl.lockf`) on the whole file, held for the life of
the daemon. A second daemon pointed at the same file therefore refuses to start instead
of overwriting it, and a stale file left by a crash (no process holds the lock) is
simply taken over. POSIX locks belong to the process, are not inherited by forked
children, and vanish with the process; they are also dropped if the process closes *any*
descriptor of the file, so the daemon never opens the file a second time.

A symlink at the path is removed (the link, never its target) and a regular file is
created in its place, exclusively and without following links, as xinetd does; a link
that reappears in between makes the creation fail instead of writing through it. So is
anything else that is not a regular file of the daemon's own user (a FIFO, a file
another user planted in a shared folder such as /tmp, which they could rewrite, or
hold a lock on to keep the daemon from starting): xinetd replaces whatever is there.

Releasing unlinks the file first, then drops the lock. A starter that opened the old
file just before the unlink would then lock an inode no longer reachable by its path;
`acquire` detects that by comparing inodes and starts over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from types import TracebackType

from pyxinetd.errors import PyxinetdError

PIDFILE_MODE = 0o644
# Attempts to lock the file that is currently at the path (see the module docstring).
_ACQUIRE_ATTEMPTS = 5
# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid (native alignment). The query is padded: the kernel writes sizeof(struct
# flock), which may include trailing padding.
_FLOCK = "hhqqi"


class PidFileError(PyxinetdError):
    """The pidfile cannot be written, or (`locked`) another process holds its lock."""

    def __init__(self, path: str, message: str, holder: int | None = None, *,
                 locked: bool = False) -> None:
        self.path = path
        self.holder = holder
        self.locked = locked
        super().__init__(message)


def locked_message(path: str, holder: int | None) -> str:
    who = f"pid {holder}" if holder else "another process"
    return (f"pidfile {path} is locked by {who}: pyxinetd is already running "
            f"with this pidfile")


def lock_holder(path: str) -> int | None:
    """The pid holding the lock on `path` (0 if in another pid namespace), or None.

    Only asks (F_GETLK): it neither creates the file nor takes the lock, so it cannot
    make a daemon starting at the same moment fail.
    """
    try:
        # Without waiting: a FIFO at the path opens at once, and is no pidfile.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not _ours(os.fstat(fd)):
            return None     # replaced by the start (PidFile.acquire), whoever locks it
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0) + bytes(16)
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        except OSError:
            return None
        l_type, _, _, _, l_pid = struct.unpack_from(_FLOCK, answer)
        return None if l_type == fcntl.F_UNLCK else int(l_pid)
    finally:
        os.close(fd)


def _ours(st: os.stat_result) -> bool:
    """Whether a file at the pidfile's path may be taken over as it is: a regular file
    of the daemon's own user."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells one file at a path from the next: an inode number freed by an unlink
    is often reused at once, by the file created in its place."""
    return (st.st_dev, st.st_ino, st.st_uid, st.st_mode, st.st_ctime_ns)


def replace_symlink(path: str, what: str = "the symlink") -> int:
    """Remove what is at `path` (a symlink, never its target; a FIFO, another user's
    file) and create the file in its place.

    As xinetd does, which unlinks the path before creating it. The creation is
    exclusive and does not follow links: if something appears at the path in between
    (a new symlink, say), it fails rather than writing through it.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise PidFileError(path, f"cannot remove {what} at pidfile {path}: "
                                 f"{err.strerror}") from err
    return create_exclusive(path)


def create_exclusive(path: str) -> int:
    """Create `path` as a new regular file; fails if anything (a symlink too) is there."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                       | os.O_NOFOLLOW, PIDFILE_MODE)
    except FileExistsError as err:
        raise PidFileError(path, f"cannot create pidfile {path}: something was put there "
                                 f"while it was being replaced") from err
    except OSError as err:
        raise PidFileError(path, f"cannot create pidfile {path}: {err.strerror}") from err


class PidFile:
    """`with PidFile(path):` writes this process's pid under a lock; exit removes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Lock, then write `PID\\n`; raises PidFileError if another process holds it."""
        if self._fd is not None:
            return
        for _ in range(_ACQUIRE_ATTEMPTS):
            fd = self._open_locked()
            if fd is None:
                continue
            if self._still_at_path(fd):
                break
            os.close(fd)
        else:
            raise PidFileError(self.path, f"pidfile {self.path} keeps being replaced")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fchmod(fd, PIDFILE_MODE)
        except OSError as err:
            os.close(fd)
            raise PidFileError(self.path, f"cannot write pidfile {self.path}: "
                                          f"{err.strerror}") from err
        self._fd = fd

    def _open_locked(self) -> int | None:
        """The file at the path, opened and locked: None when what was there changed
        while it was being judged (try again)."""
        try:
            found: os.stat_result | None = os.lstat(self.path)
        except FileNotFoundError:
            found = None
        except OSError as err:
            raise PidFileError(self.path, f"cannot open pidfile {self.path}: "
                                          f"{err.strerror}") from err
        if found is not None and not _ours(found):
            # Replaced before any open: with fs.protected_regular or protected_fifos
            # (Debian's defaults) even root's O_CREAT open of another user's file or
            # FIFO in a sticky folder fails, and a FIFO is no file to open at all.
            fd = self._replace(found)
            if fd is None:
                return None
        else:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                             | os.O_NONBLOCK, PIDFILE_MODE)
            except OSError as err:
                if err.errno != errno.ELOOP:
                    raise PidFileError(self.path, f"cannot open pidfile {self.path}: "
                                                  f"{err.strerror}") from err
                return None     # a symlink put there since the lstat: judged again
            try:
                opened = os.fstat(fd)
            except OSError as err:
                os.close(fd)
                raise PidFileError(self.path, f"cannot open pidfile {self.path}: "
                                              f"{err.strerror}") from err
            if not _ours(opened):
                os.close(fd)
                return None     # put there since the lstat: judged again
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                holder = lock_holder(self.path)
                raise PidFileError(self.path, locked_message(self.path, holder),
                                   holder, locked=True) from None
            raise PidFileError(self.path, f"cannot lock pidfile {self.path}: "
                                          f"{err.strerror}") from err
        return fd

    def _replace(self, judged: os.stat_result) -> int | None:
        """Remove what was judged not to be the daemon's pidfile (the link, never its
        target) and create the file in its place; None when something else is at the
        path by now: a daemon started meanwhile replaced it first, and its pidfile is
        not to be removed on the strength of what was there before."""
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            now = None
        except OSError as err:
            raise PidFileError(self.path, f"cannot open pidfile {self.path}: "
                                          f"{err.strerror}") from err
        if now is None or _identity(now) != _identity(judged):
            return None
        what = ("the symlink" if stat.S_ISLNK(judged.st_mode) else
                "the file of another user" if stat.S_ISREG(judged.st_mode) else "what is")
        try:
            return replace_symlink(self.path, what)
        except PidFileError:
            if os.path.lexists(self.path):
                return None     # created by another daemon between unlink and create
            raise

    def _still_at_path(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the file (if it is still ours), then drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._still_at_path(fd):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


__all__ = ["PidFile", "PidFileError", "create_exclusive", "lock_holder", "locked_message",
           "replace_symlink", "PIDFILE_MODE"]
