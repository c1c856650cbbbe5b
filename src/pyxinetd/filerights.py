"""Files the daemon opens for a service (its `stderr` file, its banners), with no more
rights than the service has.

The daemon runs as root; a service's server often does not. A file the configuration
names in a folder that a user other than root can change is under that user's
control: they can swap it for a symlink (or make it one before it exists) to
/etc/shadow, and a root open would then send that file to every client as a banner,
or hand the server a root-opened descriptor on it (appending to it, truncating it, or
having root create /etc/cron.d/x). xinetd reads `banner_success` and TCP Wrappers'
banners in the server's child, after it has taken the service's user, and has no
`stderr` attribute.

So: a path that only root can change (every folder on the way root's and writable by
no one else, no symlink in it) is opened by the daemon as it is, which keeps files
under /var/log or /etc working whatever the service's user (the daemon creates a
missing `stderr` file there for a `nobody` server). Any other path is opened with the
service's own rights (its user, group and supplementary groups, as its server gets
them), or nobody's for a service without a user (one served in the loop, as root),
so whoever controls the folder gets nothing that user could not read or write itself.
A daemon not running as root opens everything with its own rights, as before. The
daemon's own descriptors (/dev/stderr, /dev/fd/N, /proc/self/fd/N) and init's
(/proc/1/fd/N), a container's logs, are opened as the daemon: they name open files,
not paths anyone could swap.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pyxinetd.config.model import ServiceConfig
from pyxinetd.files import (APPEND_FLAGS, MAX_SYMLINKS, READ_FLAGS, READ_LIMIT, made_blocking,
                            open_for_append, read_opened, read_regular)
from pyxinetd.log import strerror
from pyxinetd.spawnrequest import primary_gid

# Debian's nobody and nogroup, by number: no name-service lookup in the loop.
NOBODY_UID = 65534
NOGROUP_GID = 65534

@dataclass(frozen=True)
class Rights:
    """Whose rights a file is opened with."""

    uid: int
    gid: int
    groups: tuple[int, ...]


NOBODY = Rights(NOBODY_UID, NOGROUP_GID, ())


def rights_of(service: ServiceConfig) -> Rights | None:
    """The rights a service's files are opened with when their path is not root's
    alone; None: the daemon's own (it does not run as root)."""
    if os.geteuid() != 0:
        return None
    if service.user is None:
        return NOBODY if service.group is None else Rights(NOBODY_UID, service.group, ())
    gid = service.group if service.group is not None else primary_gid(service.user)
    return Rights(service.user, gid, tuple(service.supplementary_groups))


def only_root_can_change(path: str) -> bool:
    """Whether no user but root can change what `path` leads to (root_only_path)."""
    return root_only_path(path) is not None


def root_only_path(path: str, links: int = 0) -> str | None:
    """`path` with the folders on its way free of links, when no user but root can
    change what it leads to; None otherwise. That is: an absolute path without `..`
    whose every folder is a real folder of root's that no one else can rename or
    replace (its holder writable by no one else, or sticky, as /tmp), or a link root
    made there (`/var/run -> /run`) to such a path; the file's own folder writable by no
    one else either (a sticky one only when the file is there and root's: in /tmp
    anyone may create the name first); the last name no symlink (checked by the open,
    O_NOFOLLOW)."""
    if not path.startswith("/") or ".." in path.split("/") or path.endswith(("/", "/.")):
        return None
    names = [name for name in path.split("/") if name and name != "."]
    last = names.pop() if names else ""
    try:
        holder = os.lstat("/")
        if holder.st_uid != 0:
            return None
        current = "/"
        for index, name in enumerate(names):
            step = os.path.join(current, name)
            entry = os.lstat(step)
            if entry.st_uid != 0 or not _keeps_its_entries(holder):
                return None
            if stat.S_ISLNK(entry.st_mode):
                if links >= MAX_SYMLINKS:
                    return None
                target = os.path.join(current, os.readlink(step))
                rest = "/".join([*names[index + 1:], last])
                return root_only_path(os.path.join(target, rest), links + 1)
            if not stat.S_ISDIR(entry.st_mode):
                return None
            holder, current = entry, step
        resolved = os.path.join(current, last)
        if not holder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return resolved
        if not holder.st_mode & stat.S_ISVTX:
            return None
        found = os.lstat(resolved)
        return resolved if found.st_uid == 0 and stat.S_ISREG(found.st_mode) else None
    except OSError:
        return None


def _keeps_its_entries(folder: os.stat_result) -> bool:
    """Whether only root can rename or remove a root-owned entry of `folder`."""
    return not folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or bool(
        folder.st_mode & stat.S_ISVTX)


def _own_or_inits_proc(path: str) -> bool:
    """Whether `path` is a descriptor of the daemon or of init: /proc/self/fd/N (or
    thread-self, or the daemon's pid, or /dev/fd/N) or /proc/1/fd/N. Not the rest of
    /proc: /proc/self/root/tmp/x is a path in /tmp."""
    parts = path.split("/")
    if len(parts) == 4 and parts[:3] == ["", "dev", "fd"]:
        return parts[3].isdigit()       # the system's link to /proc/self/fd
    return (len(parts) == 5 and parts[0] == "" and parts[1] == "proc"
            and parts[2] in ("self", "thread-self", "1", str(os.getpid()))
            and parts[3] == "fd" and parts[4].isdigit())


@contextmanager
def acting_as(rights: Rights) -> Iterator[None]:
    """The daemon's effective ids and groups are `rights`' for the body, then root's
    again. The master has no threads (nothing else runs meanwhile) and its signal
    handlers only record, so nothing runs with the borrowed ids but the body."""
    saved_gid = os.getegid()
    saved_groups = os.getgroups()
    dumpable = _dumpable()
    os.setgroups(list(rights.groups))
    try:
        os.setegid(rights.gid)
        try:
            os.seteuid(rights.uid)
            try:
                yield
            finally:
                os.seteuid(0)
        finally:
            os.setegid(saved_gid)
    finally:
        os.setgroups(saved_groups)
        if dumpable == 1:
            # The switch cleared it: the daemon would write no core dump, and its
            # /proc files would be root's whoever runs it.
            _dumpable(1)


def _dumpable(flag: int = -1) -> int | None:
    """prctl's dumpable flag (set to `flag` first when 0 or 1), through the C
    extension; None without it."""
    try:
        from pyxinetd._spawn import dumpable
    except ImportError:
        return None
    try:
        return dumpable(flag)
    except OSError:
        return None


def open_for(path: str, flags: int, mode: int, rights: Rights, links: int = 0) -> int:
    """os.open(path, flags, mode) as the daemon when only root can change the path,
    otherwise with `rights`. A symlink as the last name is followed the same way: as
    the daemon when root made it and only root can change where it leads, else with
    `rights`. Raises OSError (ELOOP past MAX_SYMLINKS links, as the kernel)."""
    if _own_or_inits_proc(path):
        # /dev/stderr and /dev/fd/N lead here: a container's logs (docker logs reads
        # the pipe on fd 2). These name files the daemon (or init) has open, not paths
        # anyone could swap, and only the daemon's own ids may open them: a process
        # that took another user's ids is not dumpable, its /proc/self is root's.
        return os.open(path, flags, mode)
    resolved = root_only_path(path)
    if resolved is not None:
        path = resolved
        try:
            return os.open(path, flags | os.O_NOFOLLOW, mode)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
        link = os.lstat(path)
        if stat.S_ISLNK(link.st_mode) and link.st_uid == 0:
            if links >= MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.path.join(os.path.dirname(path), os.readlink(path))
            return open_for(target, flags, mode, rights, links + 1)
    with acting_as(rights):
        return os.open(path, flags, mode)


def read_for(path: str, rights: Rights | None, limit: int = READ_LIMIT) -> bytes | None:
    """files.read_regular() with `rights` (open_for; None: the daemon's own)."""
    if rights is None:
        return read_regular(path, limit)
    try:
        fd = open_for(path, READ_FLAGS, 0, rights)
    except OSError:
        return None
    return read_opened(fd, limit)


def read_problem(path: str, rights: Rights | None) -> str:
    """Why read_for() gave nothing: the error of opening `path` with `rights`, or
    its kind. Never opens anything but for reading, without waiting."""
    try:
        if rights is None:
            fd = os.open(path, READ_FLAGS)
        else:
            fd = open_for(path, READ_FLAGS, 0, rights)
    except OSError as err:
        return strerror(err)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a regular file"
    except OSError as err:
        return strerror(err)
    finally:
        os.close(fd)
    return "cannot be read"


def append_for(path: str, mode: int, rights: Rights | None) -> int:
    """files.open_for_append() with `rights` (open_for; None: the daemon's own, through
    the planted-link walk). A FIFO without a reader is ENXIO, never a wait."""
    if rights is None:
        return open_for_append(path, mode)
    return made_blocking(open_for(path, APPEND_FLAGS, mode, rights))
