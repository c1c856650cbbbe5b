"""Reading configuration files and expanding `includedir`.

xinetd reads an included directory in strcmp (byte) order and skips editor backups and
packaging leftovers: any name containing a '.', any name ending in '~', anything that
is not a regular file once symlinks are followed. Subdirectories are not descended.
xinetd says nothing about the names it skips; pyxinetd says so (INFO) for a name with a
dot that does not look like a leftover (`telnet.conf`), the usual reason a service
"does not load".
Text is decoded so that no byte sequence can raise: configuration files in the wild
are in every legacy encoding (the corpus holds an EUC-JP one), and only ASCII matters
to the grammar.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from pyxinetd.config.diagnostics import DiagnosticSink


# The most a configuration file may hold: far beyond any real one (a thousand services
# take about 200 KiB), and a bound on what a device named as the main file (`-f
# /dev/zero`, a symlink to one) costs: read without end, it took the memory of the
# host, and at start-up the daemon's own with it.
CONFIG_READ_LIMIT = 32 << 20


def read_text(path: str) -> str:
    """The file's text; undecodable bytes survive as surrogate escapes. Raises OSError,
    EFBIG for more than CONFIG_READ_LIMIT bytes."""
    with open(path, "rb") as handle:
        data = _read_bounded(handle, path)
    return data.decode("utf-8", errors="surrogateescape")


def _read_bounded(handle: BinaryIO, path: str) -> bytes:
    data = handle.read(CONFIG_READ_LIMIT + 1)
    if len(data) > CONFIG_READ_LIMIT:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), path)
    return data


def read_included_text(path: str) -> str:
    """An included file's text. Raises OSError, also for anything but a regular file:
    opening a FIFO would wait for a writer and a device may never end, and either would
    stall the load (xinetd refuses them too, `Unable to open included configuration
    file`). The main file is not held to this: `-f <(generate)` is a pipe."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = _read_bounded(handle, path)
    finally:
        if fd >= 0:
            os.close(fd)
    return data.decode("utf-8", errors="surrogateescape")


# What editors and package managers leave beside a file: skipped without a word.
LEFTOVER_SUFFIXES = (".dpkg-old", ".dpkg-dist", ".dpkg-new", ".dpkg-bak", ".dpkg-tmp",
                     ".ucf-old", ".ucf-dist", ".ucf-new", ".rpmnew", ".rpmsave", ".rpmorig",
                     ".bak", ".orig", ".old", ".save", ".swp", ".tmp", ".disabled")


def skipped_name(name: str) -> bool:
    """True for the names includedir ignores (xinetd's rule)."""
    return "." in name or name.endswith("~")


def unexpectedly_skipped(name: str) -> bool:
    """A skipped name that does not look like a leftover: most likely a service file
    named `telnet.conf` that its author expects to be read (a common surprise), so it
    is worth a word. Hidden files and leftovers stay silent."""
    return ("." in name and not name.startswith(".") and not name.endswith("~")
            and not name.lower().endswith(LEFTOVER_SUFFIXES))


def list_includedir(directory: str, file: str, line: int, sink: DiagnosticSink) -> list[str]:
    """The files `includedir directory` reads, in order; problems become diagnostics."""
    try:
        names = os.listdir(directory)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        sink.error(file, line, f"Unable to read included directory: {directory} ({why})")
        return []
    names.sort(key=os.fsencode)
    paths: list[str] = []
    for name in names:
        # Spelt as xinetd spells it, the folder as written then '/' and the name
        # (`includedir /etc/xinetd.d/` gives /etc/xinetd.d//telnet): the [file=] of every
        # line about the file is then the same in both daemons' logs.
        path = f"{directory}/{name}"
        if skipped_name(name):
            if unexpectedly_skipped(name):
                sink.info(file, line, f"{path} is not read: includedir skips names with a "
                                      "'.' in them, as xinetd does")
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            sink.error(file, line, f"Unable to stat includedir file {path} ({exc.strerror}); skipped")
            continue
        if not stat.S_ISREG(mode):
            sink.error(file, line, f"{path} is not a regular file. It is being skipped.")
            continue
        paths.append(path)
    return paths
