"""Files the configuration names (banners, logs, a server's stderr, the hosts tables),
opened and read without ever making the loop wait.

open() of a FIFO waits for the other end, and read() of a device such as /dev/zero never
ends: a path in a configuration file can name either. So files are opened with
O_NONBLOCK (a FIFO without a reader is ENXIO for a writer; a reader is refused below),
what is read must be a regular file and is read up to a limit, and a descriptor handed
on for writing is made blocking again, as log files and servers expect.
"""

from __future__ import annotations

import errno
import os
import stat

# The most of a file read_regular() returns.
READ_LIMIT = 16 << 20


# How read_regular() opens a file: a FIFO opens at once, and is then refused.
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# How a file is opened for appending: a FIFO without a reader is ENXIO, no wait.
APPEND_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY
                | os.O_NONBLOCK)


def read_regular(path: str, limit: int = READ_LIMIT) -> bytes | None:
    """A regular file's first `limit` bytes; None when it cannot be opened or read, or
    is not a regular file."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return None
    return read_opened(fd, limit)


def read_opened(fd: int, limit: int = READ_LIMIT) -> bytes | None:
    """read_regular() of a descriptor opened with READ_FLAGS, which it closes."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        left = limit
        while left > 0:
            data = os.read(fd, min(left, 65536))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def open_problem(path: str) -> OSError | None:
    """Why `path` cannot be opened for reading, or None when it can (never a wait: a
    FIFO opens at once with O_NONBLOCK)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        return exc
    os.close(fd)
    return None


# Symlinks one path may go through, as Linux's path walk allows (MAXSYMLINKS).
MAX_SYMLINKS = 40


def open_appending(path: str, mode: int = 0o644) -> int:
    """open(O_WRONLY|O_APPEND|O_CREAT|O_NONBLOCK), close-on-exec, that does not follow a
    symlink another user planted in a sticky world-writable folder (planted_link).
    Raises OSError: EACCES for such a link, ENXIO for a FIFO without a reader."""
    return _open_unplanted(path, APPEND_FLAGS, mode)


def _open_unplanted(path: str, flags: int, mode: int = 0o644) -> int:
    """os.open(path, flags, mode), the path walked one component at a time from a folder
    descriptor: every symlink on the way, not only the last component (a link to a
    folder, a link to a link), is checked by planted_link before it is followed, as the
    kernel checks each one. Each step is O_NOFOLLOW below the descriptor of a folder
    already checked, so no link can be swapped in between a check and its use.

    The links of /proc (`/proc/self/fd/2`, which `/dev/stderr` and `/dev/fd/2` lead to,
    `/proc/1/fd/1`) are the kernel's own: their text names no path (`pipe:[N]`,
    `socket:[N]`, a deleted file's name), and what they lead to is an open file, not a
    name anyone could swap. Only the kernel can follow them, so it does: a container's
    `log_type = FILE /dev/stderr` reaches the pipe `docker logs` reads, as in xinetd
    (a socket, such as the journal's stream, cannot be opened that way: ENXIO)."""
    if not path:
        return os.open(path, flags, mode)   # ENOENT, as open("") is
    if _no_link_above(path):
        # The usual case, without a descriptor per folder (a daemon at its descriptor
        # limit still opens its log): only the last name can be a link, and
        # O_NOFOLLOW refuses it; then the walk below checks it.
        try:
            return os.open(path, flags | os.O_NOFOLLOW, mode)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
    folder = os.open("/" if path.startswith("/") else ".",
                     os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = _components(path)
        links = 0
        while True:
            name = names.pop(0)
            try:
                if not names:
                    return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=folder)
                step = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                               | os.O_CLOEXEC, dir_fd=folder)
            except OSError as err:
                # A symlink is ELOOP as the last component, ENOTDIR before it.
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                link = os.stat(name, dir_fd=folder, follow_symlinks=False)
                if not stat.S_ISLNK(link.st_mode):
                    raise
            else:
                os.close(folder)
                folder = step
                continue
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            held = os.fstat(folder)
            if _in_proc(held):
                if not names:
                    return os.open(name, flags, mode, dir_fd=folder)
                step = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder)
                os.close(folder)
                folder = step
                continue
            if planted_link(link, held):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
            target = os.readlink(name, dir_fd=folder)
            if target.startswith("/"):
                root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                os.close(folder)
                folder = root
            names = _components(target) + names
    finally:
        os.close(folder)


def _in_proc(folder: os.stat_result) -> bool:
    """Whether `folder` is on the proc file system mounted at /proc."""
    try:
        return folder.st_dev == os.stat("/proc").st_dev
    except OSError:
        return False


def _no_link_above(path: str) -> bool:
    """Whether every folder above the last name of `path` exists, is no symlink, and
    can be made one by no one but root and this process's user until the open: the
    folder holding each of them lets no one else rename or replace it (_guarded).
    Anyone else able to would win the race between this check and the open, and have
    the daemon create and write a file wherever their link points (a folder of their
    own in /tmp, swapped for a link to /etc). Such a path, one with `..`, and one with
    a folder missing (it could be created as a link) go through the walk, which checks
    each link it meets. So does a path ending in "/" or "/.": the kernel follows its
    last name, O_NOFOLLOW or not."""
    if ".." in path.split("/") or path.endswith(("/", "/.")):
        return False
    trusted = (0, os.geteuid())
    try:
        holder = os.lstat("/")
        current = "/"
        for name in os.path.dirname(os.path.abspath(path)).split("/"):
            if not name:
                continue
            current = os.path.join(current, name)
            folder = os.lstat(current)
            if not stat.S_ISDIR(folder.st_mode) or not _guarded(holder, folder, trusted):
                return False
            holder = folder
    except OSError:     # a folder missing, or the daemon's working folder removed
        return False
    return True


def _guarded(holder: os.stat_result, folder: os.stat_result, trusted: tuple[int, int]
             ) -> bool:
    """Whether only `trusted` users can rename or replace `folder` in `holder`: a
    holder of theirs that no group or other user may write, or a sticky one (where
    only the owners of the entry and of the folder may) with `folder` theirs too."""
    if holder.st_uid not in trusted:
        return False    # its owner may make it writable
    if not holder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return True
    return bool(holder.st_mode & stat.S_ISVTX) and folder.st_uid in trusted


def _components(path: str) -> list[str]:
    """The names `path` goes through; one ending in "/" ends in ".", so that its last
    name must be a folder (and opening it for writing fails, EISDIR, as open() does)."""
    names = [name for name in path.split("/") if name not in ("", ".")]
    if not names or path.endswith(("/", "/.")):
        names.append(".")
    return names


def planted_link(link: os.stat_result, folder: os.stat_result) -> bool:
    """True for a symlink (`link`, as lstat() saw it)
    in a sticky world-writable folder (/tmp) owned neither by this process's user nor
    by the folder's owner: what the kernel refuses to follow with fs.protected_symlinks
    = 1 (Debian's default), whatever that setting is on this host. The daemon runs as
    root: following such a link would let any local user aim its log (or dump) lines
    at a file of their choice, /etc/shadow say, and create it if missing."""
    if not stat.S_ISLNK(link.st_mode):
        return False
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    return bool(shared) and link.st_uid not in (os.geteuid(), folder.st_uid)


def open_for_append(path: str, mode: int = 0o644) -> int:
    """A file opened for appending (created with `mode`), close-on-exec, blocking.
    Raises OSError, ENXIO for a FIFO without a reader, EACCES for a planted symlink
    (open_appending)."""
    return made_blocking(open_appending(path, mode))


def made_blocking(fd: int) -> int:
    """`fd`, opened O_NONBLOCK (a FIFO without a reader fails then instead of waiting),
    made blocking again, as log files and servers expect; closed if that fails."""
    try:
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        raise
    return fd


def append_problem(path: str) -> str | None:
    """Why open_for_append(path) would fail (the reason's text), or None if it would
    succeed; neither creates the file nor writes to it.

    For `pyxinetd check --daemon-options`: the init script asks it before stopping a
    running daemon for a new one, which cannot start without its -filelog."""
    try:
        fd = _open_unplanted(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY
                             | os.O_NONBLOCK)
    except FileNotFoundError as err:
        if not path or path.endswith("/"):
            return err.strerror
        folder = os.path.dirname(path) or "."
        try:
            if not stat.S_ISDIR(os.stat(folder).st_mode):
                return os.strerror(errno.ENOTDIR)
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                return os.strerror(errno.EROFS)
        except OSError as folder_err:
            return folder_err.strerror
        if not os.access(folder, os.W_OK | os.X_OK):
            return os.strerror(errno.EACCES)
        return None
    except OSError as err:
        return err.strerror
    os.close(fd)
    return None


def through_stderr(fd: int) -> int:
    """`fd`, or in its place (closed) a duplicate of descriptor 2 when both write to the
    same regular file: a log named `/dev/stderr`, or the file stderr was redirected to.

    Two opens of one file are two offsets: the daemon's own lines (written on fd 2, which
    a shell's `2> FILE` leaves without O_APPEND) would overwrite the service's lines. One
    shared offset keeps every line.
    """
    try:
        mine, err = os.fstat(fd), os.fstat(2)
    except OSError:
        return fd
    if not stat.S_ISREG(mine.st_mode) or (mine.st_dev, mine.st_ino) != (err.st_dev, err.st_ino):
        return fd
    try:
        shared = os.dup(2)  # close-on-exec, as Python makes every new descriptor
    except OSError:
        return fd
    os.close(fd)
    return shared
