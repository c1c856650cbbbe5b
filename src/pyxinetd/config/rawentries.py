"""What the grammar (pyxinetd.config.grammar) makes of a file: raw entries, each with
the file and line it came from, no meaning given to names or values yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EntryKind = Literal["service", "defaults"]
IncludeKind = Literal["include", "includedir"]


@dataclass(frozen=True, slots=True)
class RawAttribute:
    """One `name op values...` line as written; `col` is the 1-based column of the name."""

    name: str
    op: str
    values: tuple[str, ...]
    file: str
    line: int
    col: int


@dataclass(slots=True)
class RawEntry:
    """A `service NAME { ... }` or `defaults { ... }` block.

    `broken` is set when a syntax error dropped the entry (services) or cut it
    short (defaults keep the lines read before the error, as xinetd does).
    """

    kind: EntryKind
    name: str
    file: str
    line: int
    attrs: list[RawAttribute] = field(default_factory=list)
    broken: str | None = None
    # The line of a syntax error among the block's lines, an attribute line or a header
    # line where the block's `}` is missing (not a missing `{`).
    broken_line: int | None = None
    # A second `defaults` in one file: its block is skipped; the entry reaches the
    # reader only when it breaks before its `{` (the error is reported, nothing applied).
    ignored: bool = False


@dataclass(frozen=True, slots=True)
class RawInclude:
    kind: IncludeKind
    path: str
    file: str
    line: int


RawItem = RawEntry | RawInclude
