"""The package's files on disk, compared with the ones the daemon started from.

An upgrade (`pip install -U pyxinetd`, the distribution's package) replaces the files
under a running daemon, which keeps running the code it imported. Two parts of it read
code from disk later: a reload's loader child imports the parser for the first time
(pyxinetd.config.isolated), mixing the new loader with the old model it inherited and
pickling the result back to the old daemon, and the name resolver helper is exec'd
(pyxinetd.access.resolver), new code speaking to the old daemon. Either may fail in ways
that name nothing (a loader child that dies on an unknown field), or worse, work with a
meaning the old daemon does not share (an answer whose fields were renamed). So the
daemon records the files when it starts (`record()`), and those two check them first
(`replaced()`): while they differ, a reload is refused and the helper not started; a
restart runs the new code.

The record is each file's path, size and mtime_ns (a stat per file, under a millisecond
for the whole package: cheap enough for every check), plus a checksum of each file's
contents, read once at start-up (about 1 MiB, a few milliseconds). A reinstall of the
same files changes their mtimes only: the checksums of the files stamped differently,
computed again then, tell so, and the new stamps are kept, so the next check is a stat
per file again.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import os
import re
import stat
import zlib

import pyxinetd

# What Python can import: sources and extension modules (bytecode is derived from them).
_CODE_SUFFIXES = tuple(importlib.machinery.SOURCE_SUFFIXES
                       + importlib.machinery.EXTENSION_SUFFIXES)
_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)

# The "checksum" of a file that is no regular file (a FIFO, a device): CRC-32 is never
# negative, so it differs from every recorded one.
NOT_CODE = -1

# A file's size and mtime_ns, by its path under the package folder.
Stamps = dict[str, tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Replacement:
    """How the files on disk differ from the daemon's: `version` is the one on disk
    (None when the package is gone), `file` the first file whose contents changed
    (added or removed)."""

    running: str
    version: str | None
    file: str

    def __str__(self) -> str:
        if self.version is None:
            return f"pyxinetd {self.running} is no longer installed ({self.file} is missing)"
        if self.version != self.running:
            return f"pyxinetd on disk is now {self.version} (this daemon runs {self.running})"
        return (f"pyxinetd's files on disk changed since this daemon started ({self.file}; "
                f"version {self.version} still)")


@dataclasses.dataclass
class Installation:
    """The package's code files as the daemon started from them."""

    root: str
    version: str
    stamps: Stamps
    digests: dict[str, int]

    @classmethod
    def read(cls, root: str, version: str) -> Installation:
        """The code files under the package folder `root` now; raises OSError."""
        stamps = _stamps(root)
        return cls(root, version, stamps,
                   {path: _digest(os.path.join(root, path)) for path in stamps})

    def replaced(self) -> Replacement | None:
        """None while the files on disk are the daemon's own (the same contents)."""
        try:
            stamps = _stamps(self.root)
        except (FileNotFoundError, NotADirectoryError):
            # The folder is gone, or a file vanished while looked at.
            return Replacement(self.version, _version_on_disk(self.root), "__init__.py")
        except OSError:
            # Nothing to look with (EMFILE when the descriptors run out): that is no
            # sign of an upgrade, and what follows will report the shortage itself.
            return None
        if stamps == self.stamps:
            return None
        changed = sorted(path for path in self.stamps.keys() | stamps.keys()
                         if self.stamps.get(path) != stamps.get(path))
        try:
            different = [path for path in changed if not self._same(path, stamps)]
        except OSError:
            return None     # a file that could not be read (EMFILE): unknown, not changed
        if not different:
            # Rewritten as they were (a reinstall): the next check is a stat per file.
            self.stamps = stamps
            return None
        # A removed file first: it explains a version that cannot be read.
        missing = [path for path in different if path not in stamps]
        return Replacement(self.version, _version_on_disk(self.root), (missing or different)[0])

    def _same(self, path: str, stamps: Stamps) -> bool:
        """The file at `path` (stamped differently) still has the recorded contents;
        raises OSError when it exists but cannot be read."""
        if path not in stamps or path not in self.stamps \
                or stamps[path][0] != self.stamps[path][0]:
            return False
        try:
            return _digest(os.path.join(self.root, path)) == self.digests[path]
        except (FileNotFoundError, NotADirectoryError):
            return False


# The daemon's record; None in a process that did not start a daemon (a test, `check`).
_recorded: Installation | None = None


def record() -> Installation | None:
    """Remember the files of the running package (at start-up, before anything more is
    imported from it); None when they cannot be read (the check is then skipped)."""
    global _recorded
    root = os.path.dirname(os.path.abspath(pyxinetd.__file__))
    try:
        _recorded = Installation.read(root, pyxinetd.__version__)
    except OSError:
        _recorded = None
    return _recorded


def replaced() -> Replacement | None:
    """How the recorded files changed on disk since start-up; None when they did not
    (or nothing was recorded)."""
    return _recorded.replaced() if _recorded is not None else None


def _stamps(root: str) -> Stamps:
    found: Stamps = {}
    _stamp_folder(root, "", found)
    if not found:
        raise FileNotFoundError(f"no code under {root}")
    return found


def _stamp_folder(folder: str, prefix: str, found: Stamps) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                # A folder whose name is no package name (`config.orig`, a copy) is
                # never imported from; __pycache__ holds only derived bytecode.
                if entry.name != "__pycache__" and entry.name.isidentifier():
                    _stamp_folder(entry.path, f"{prefix}{entry.name}/", found)
            elif _importable(entry.name):
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    # Removed since listed (an upgrade under way), or a dangling
                    # symlink: no file Python could import, as if not there.
                    continue
                found[prefix + entry.name] = (info.st_size, info.st_mtime_ns)


def _importable(name: str) -> bool:
    """A file this interpreter imports a module from: its name is a module name and a
    suffix of code. An editor's lock file (Emacs makes `.#gate.py`, a dangling
    symlink, while gate.py is edited), a copy (`gate copy.py`, `gate.orig.py`) or an
    extension built for another Python (`_spawn.cpython-312-....so`, where only `.so`
    is this one's) is never imported, so is no code of the daemon's."""
    return any(name.endswith(suffix) and name[:-len(suffix)].isidentifier()
               for suffix in _CODE_SUFFIXES)


def _digest(path: str) -> int:
    """A checksum of the file's contents (CRC-32: what tells a reinstall of the same
    files from new ones; whoever can write the package's files can run code in the
    daemon anyway). Not hashlib: it maps OpenSSL's libcrypto, 3.7 MiB of resident
    memory for the daemon's whole life. Opened without blocking: a FIFO put where a
    module was (the daemon checks at every reload) would block its loop in open(2)
    until a writer came. What is no regular file is no code: NOT_CODE, which no
    checksum equals."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as code:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return NOT_CODE
        return zlib.crc32(code.read())


def _version_on_disk(root: str) -> str | None:
    try:
        with open(os.path.join(root, "__init__.py"), encoding="utf-8") as init:
            match = _VERSION.search(init.read())
    except (OSError, ValueError):
        return None
    return match.group(1) if match else "unknown"
