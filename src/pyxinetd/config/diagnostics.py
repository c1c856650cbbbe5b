"""Diagnostics: what the loader tells an administrator, always with file:line.

The loader never raises for bad configuration text; it records a Diagnostic and goes
on, with the severity xinetd gives the same mistake (see docs/compatibility.md).
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class Severity(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    file: str | None
    line: int | None
    message: str
    col: int | None = None
    # A DEBUG line xinetd writes to its log without -d too (`Reading included
    # configuration file`, `added service`): logged whatever the debug mode.
    always: bool = False

    def where(self) -> str:
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"

    def __str__(self) -> str:
        where = self.where()
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.severity.value}: {self.message}"


@dataclass
class DiagnosticSink:
    """Collects diagnostics in the order they were found."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, severity: Severity, file: str | None, line: int | None, message: str,
            col: int | None = None, *, always: bool = False) -> None:
        self.items.append(Diagnostic(severity, file, line, message, col, always))

    def warning(self, file: str | None, line: int | None, message: str,
                col: int | None = None) -> None:
        self.add(Severity.WARNING, file, line, message, col)

    def error(self, file: str | None, line: int | None, message: str,
              col: int | None = None) -> None:
        self.add(Severity.ERROR, file, line, message, col)

    def info(self, file: str | None, line: int | None, message: str) -> None:
        self.add(Severity.INFO, file, line, message)

    def debug(self, file: str | None, line: int | None, message: str, *,
              always: bool = False) -> None:
        """`always`: logged without -d too (Diagnostic.always)."""
        self.add(Severity.DEBUG, file, line, message, always=always)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest candidate, or ''."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    if not match:
        return ""
    return f' (did you mean "{lowered[match[0]]}"?)'
