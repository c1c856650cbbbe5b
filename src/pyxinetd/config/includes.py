"""Reading configuration files and expanding `includedir`.

xinetd reads an included directory in strcmp (byte) order and skips editor backups and
packaging leftovers: any name containing a '.', any name ending in '~', anything that
is not a regular file once symlinks are followed. Subdirectories are not descended.
Text is decoded so that no byte sequence can raise: configuration files in the wild
are in every legacy encoding (the corpus holds an EUC-JP one), and only ASCII matters
to the grammar.
"""

from __future__ import annotations

import os
import stat

from pyxinetd.config.diagnostics import DiagnosticSink


def read_text(path: str) -> str:
    """The file's text; undecodable bytes survive as surrogate escapes. Raises OSError."""
    with open(path, "rb") as handle:
        data = handle.read()
    return data.decode("utf-8", errors="surrogateescape")


def skipped_name(name: str) -> bool:
    """True for the names includedir ignores without a word (xinetd's rule)."""
    return "." in name or name.endswith("~")


def list_includedir(directory: str, file: str, line: int, sink: DiagnosticSink) -> list[str]:
    """The files `includedir directory` reads, in order; problems become diagnostics."""
    try:
        names = os.listdir(directory)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        sink.error(file, line, f"unable to read included directory {directory}: {why}")
        return []
    names.sort(key=os.fsencode)
    paths: list[str] = []
    for name in names:
        if skipped_name(name):
            continue
        path = os.path.join(directory, name)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            sink.warning(file, line, f"unable to stat includedir file {path}: {exc.strerror}; skipped")
            continue
        if not stat.S_ISREG(mode):
            sink.info(file, line, f"{path} is not a regular file; skipped")
            continue
        paths.append(path)
    return paths
