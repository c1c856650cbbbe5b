"""Whether a service's user can run its server: the permissions the exec will meet.

The loader checks that `server` is an executable file, as the daemon (root) sees it.
The server is exec'd after setuid to the service's user, who also needs search
permission on every folder above it, execute permission on the file and, for a script,
read permission (its interpreter opens it as that user). A challenge installed 0700
root under a root-only folder with `user = nobody` passed every check and failed each
connection with "exec: Permission denied". Judged from the mode bits; a file or folder
with an ACL, which can grant more than they show, is not judged.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection

from pyxinetd.files import read_regular
from pyxinetd.interpreter import interpreter_of

_ACL = "system.posix_acl_access"


def access_problem(path: str, uid: int, gids: Collection[int]) -> str | None:
    """Why the user `uid` (groups `gids`) cannot exec `path`, or None (it can, or it
    cannot be told). For a script, its `#!` interpreter is judged too: one under a
    folder only root may search (a Python under /root, a virtual environment) fails
    every exec with a bare "Permission denied" for a script that looks fine."""
    try:
        real = os.path.realpath(path)
        problem = _exec_problem(path, real, uid, gids)
        if problem is not None:
            return problem or None
        info = os.stat(real)
        script = (read_regular(real, 2) or b"") == b"#!"
        if not script:
            return None
        if not _allowed(info, uid, gids, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
            return "no read permission on the script, which its interpreter must read"
        interpreter = interpreter_of(real)
        if interpreter is None or not os.path.isabs(interpreter):
            return None     # said by the interpreter check (pyxinetd.interpreter)
        problem = _exec_problem(interpreter, os.path.realpath(interpreter), uid, gids)
        if problem:
            return f"its #! interpreter {interpreter}: {problem}"
    except OSError:
        return None
    return None


def _exec_problem(path: str, real: str, uid: int, gids: Collection[int]) -> str | None:
    """Why `uid` may not exec the file `path` (`real` its real path), "" when it cannot
    be told (an ACL), None when it may. Raises OSError."""
    folders = _folders(os.path.abspath(path)) | _folders(real)
    for folder in sorted(folders, key=len):
        info = os.stat(folder)
        if _has_acl(folder):
            return ""
        if not _allowed(info, uid, gids, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return f"no search permission on {folder}"
    info = os.stat(real)
    if _has_acl(real):
        return ""
    if not _allowed(info, uid, gids, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
        return "no execute permission on the file"
    return None


def _folders(path: str) -> set[str]:
    parts = path.split("/")[1:-1]
    return {"/" + "/".join(parts[:n]) for n in range(len(parts) + 1)}


def _allowed(info: os.stat_result, uid: int, gids: Collection[int],
             owner: int, group: int, other: int) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & owner)
    if info.st_gid in gids:
        return bool(info.st_mode & group)
    return bool(info.st_mode & other)


def _has_acl(path: str) -> bool:
    try:
        return _ACL in os.listxattr(path)
    except OSError:
        return False
