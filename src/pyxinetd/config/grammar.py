"""Syntax of xinetd configuration files: text in, raw entries with file/line out.

The language is line-oriented (xinetd reads it line by line and decides what a line
is from its first token), so the grammar is a set of pyparsing productions for one
line each, driven by a small state machine over the lines of a file. No meaning is
given to attribute names or values here: that is the attribute table's job
(attributes.py). docs/grammar.md holds the BNF and must be kept in step.

Speed: pyparsing's per-call cost dominates (tens of microseconds per line), and real
configuration files repeat the same lines over and over ("wait = no", "user = root"),
so parsed attribute lines are memoised per process. The productions are built once,
on first use, never at import time.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

import pyparsing as pp

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.rawentries import IncludeKind, RawAttribute, RawEntry, RawInclude, RawItem

# Tokens are separated by blanks and tabs only (any other byte, \r included, stays in
# the token), exactly as xinetd splits its lines.
BLANKS = " \t"
# What xinetd's isspace() (C locale) skips around a line and a brace: ASCII only. Python's
# str.strip() also strips NO-BREAK SPACE, U+2028 and \x1c-\x1f, which xinetd reads as
# text: a line of them is not blank, and `{` followed by one is not a brace line.
SPACES = " \t\n\v\f\r"
_VALUE_RE = re.compile(r"[^ \t]+")
_HEADER_WORDS = ("service", "defaults", "include", "includedir")
# xinetd 2.3.15.3 reads a line through a 16 KiB buffer: a longer line (a little less,
# depending on where it sits in the file) is cut in two, and its second half is read as
# an attribute line of its own. pyxinetd reads lines of any length and says so from here.
XINETD_LINE_BYTES = 16 * 1024 - 256


@dataclass(frozen=True)
class Grammar:
    """The line productions, built once per process by `grammar()`."""

    header: pp.ParserElement
    attribute: pp.ParserElement


@functools.cache
def grammar() -> Grammar:
    """Build the pyparsing productions (whitespace set per element, never globally)."""
    header = pp.Regex(
        r"[ \t]*(?P<keyword>(?i:includedir|include|service|defaults))"
        r"(?=[ \t]|$)[ \t]*(?P<args>.*)"
    ).set_name("entry header")
    header.leave_whitespace()
    attribute = pp.Regex(
        # The name may be empty (a line starting with '='): the line is then an error
        # to report, never a parse failure.
        r"[ \t]*(?P<name>[^ \t=]+?|)(?=[+-]?=|[ \t]|$)"
        r"(?P<gap>[ \t]*)(?P<op>[+-]?=)?[ \t]*(?P<rest>.*)"
    ).set_name("attribute line")
    attribute.leave_whitespace()
    for element in (header, attribute):
        element.parse_with_tabs()
    return Grammar(header=header, attribute=attribute)


@dataclass(frozen=True, slots=True)
class _AttrTokens:
    name: str
    gap: bool
    op: str | None
    values: tuple[str, ...]


@functools.lru_cache(maxsize=8192)
def _parse_attribute(text: str) -> _AttrTokens:
    result = grammar().attribute.parse_string(text)
    return _AttrTokens(
        name=str(result["name"]), gap=bool(_group(result, "gap")), op=_group(result, "op"),
        values=tuple(_VALUE_RE.findall(_group(result, "rest") or "")),
    )


def _group(result: pp.ParseResults, name: str) -> str | None:
    """A named group of a Regex production, None when it did not take part."""
    if name not in result:
        return None
    value = result[name]
    return None if value is None else str(value)


def _parse_header(text: str) -> tuple[str, tuple[str, ...]] | None:
    try:
        result = grammar().header.parse_string(text)
    except pp.ParseException:
        return None
    keyword = str(result["keyword"]).lower()
    return keyword, tuple(_VALUE_RE.findall(_group(result, "args") or ""))


def _brace(stripped: str) -> tuple[str, bool] | None:
    """('{' or '}', has_trailing_comment) for a brace line, else None."""
    if not stripped or stripped[0] not in "{}":
        return None
    rest = stripped[1:].strip(SPACES)
    if not rest:
        return stripped[0], False
    if rest.startswith("#"):
        return stripped[0], True
    return None


def _first_word(stripped: str) -> str:
    """The first token of a stripped line (tokens end at a blank or a tab only)."""
    found = _VALUE_RE.match(stripped)
    return found.group() if found else ""


def shown_name(name: str) -> str:
    """A name as a message shows it: quoted when it holds invisible characters."""
    return name if name.isprintable() else repr(name)


def _disable_value(raw: RawAttribute) -> str | None:
    """'yes' or 'no' for a line that sets `disable`, else None."""
    if raw.name.lower() != "disable" or raw.op != "=" or len(raw.values) != 1:
        return None
    value = raw.values[0].lower()
    return value if value in ("yes", "no") else None


def _is_header(stripped: str) -> bool:
    word = _first_word(stripped).lower()
    return word in _HEADER_WORDS


def _name_runs_on(following: list[str]) -> tuple[str, int | None]:
    """How xinetd 2.3.15.3 reads a line that is a lone attribute name: (its words, the
    index in `following` of a line it then never reads, if any).

    xinetd's scan of the name stops only at a blank or an '=', not at the end of the
    line: it runs on into the following lines (their newlines count as blanks) and ends
    that text where it stops. A '=' there gives `needs a space before operator`; after
    a blank, only blanks to the end of the file give `Nothing after attribute`, anything
    else `Bad operator`. The text cut there costs one line: an indented line is emptied,
    and a newline lost merges the line after it into its line.
    """
    for index, text in enumerate(following):
        for col, char in enumerate(text + "\n"):
            if char == "=":
                return "Attribute {} needs a space before operator", None
            if char not in SPACES:
                continue
            rest = "\n".join([text[col + 1:], *following[index + 1:]])
            words = ("Nothing after attribute: {}" if not rest.strip(SPACES)
                     else "Bad operator for attribute: {}")
            if col == len(text):
                return words, index + 1
            return words, index if col == 0 else None
    return "Nothing after attribute: {}", None


class _State(enum.Enum):
    TOP = "top"
    OPEN = "expect-brace"
    BODY = "body"
    SKIP = "skip"
    DISABLED = "disabled"   # after `disable = yes`: the rest of the block is not read
    # After a syntax error in `defaults`: xinetd is back between entries, so the next
    # line it reads gets `missing service keyword`.
    RECOVER = "recover"


class _FileParser:
    """Walks the lines of one file; see module docstring."""

    def __init__(self, file: str, sink: DiagnosticSink) -> None:
        self.file = file
        self.sink = sink
        self.items: list[RawItem] = []
        self.state = _State.TOP
        self.entry: RawEntry | None = None
        self.seen_defaults = False
        self.lines: list[str] = []
        # Line numbers xinetd never reads, having run into them (see _name_runs_on).
        self.unread: set[int] = set()

    def run(self, text: str) -> list[RawItem]:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.lines = lines
        crlf_warned = False
        for number, line in enumerate(lines, start=1):
            if line.endswith("\r"):
                line = line[:-1]
                if not crlf_warned:
                    crlf_warned = True
                    self.sink.warning(self.file, number, (
                        "file has CRLF (DOS) line endings; read as if they were LF "
                        "(xinetd 2.3.15.3 would keep the \\r in every last value)"))
            stripped = line.strip(SPACES)
            if not stripped or stripped[0] == "#":
                continue
            if len(line) >= XINETD_LINE_BYTES // 4:
                self._long_line(line, number)
            self._line(line, stripped, number)
        self._end_of_file(len(lines))
        return self.items

    def _long_line(self, line: str, number: int) -> None:
        size = len(line.encode("utf-8", "surrogateescape"))
        if size >= XINETD_LINE_BYTES:
            self.sink.warning(self.file, number, (
                f"line is {size} bytes long; read whole (xinetd 2.3.15.3 reads about 16 KiB "
                "of a line and would take the rest for a line of its own, dropping the "
                "entry)"))

    # -- one line, by state ------------------------------------------------------

    def _line(self, line: str, stripped: str, number: int) -> None:
        if self.state is _State.TOP:
            self._top(line, stripped, number)
        elif self.state is _State.OPEN:
            self._open(line, stripped, number)
        elif self.state is _State.BODY:
            self._body(line, stripped, number)
        elif self.state is _State.DISABLED:
            self._disabled(line, stripped, number)
        elif self.state is _State.RECOVER:
            self._recover(line, stripped, number)
        else:
            self._skip(line, stripped, number)

    def _top(self, line: str, stripped: str, number: int) -> None:
        header = _parse_header(line)
        if header is None:
            brace = _brace(stripped)
            if brace is not None and brace[0] == "}":
                self.sink.warning(self.file, number,
                                  "missing service keyword (stray '}' outside any entry; ignored)")
                return
            self.sink.error(self.file, number, (
                "missing service keyword (expected 'service NAME', 'defaults', 'include FILE' "
                f"or 'includedir DIR', found {_first_word(stripped)!r}; lines up to the next "
                "lone '}' are skipped)"))
            self.state = _State.SKIP
            return
        keyword, args = header
        if keyword in ("include", "includedir"):
            if not args:
                self.sink.error(self.file, number, f"{keyword} needs a path; line ignored")
                return
            if len(args) > 1:
                self.sink.warning(self.file, number,
                                  f"{keyword}: extra words after the path ignored: {' '.join(args[1:])}")
            kind: IncludeKind = "include" if keyword == "include" else "includedir"
            self.items.append(RawInclude(kind, args[0], self.file, number))
            return
        if keyword == "service":
            if not args:
                self.sink.error(self.file, number, "service name missing after 'service'")
                self.state = _State.SKIP
                return
            name, extra = args[0], args[1:]
            entry = RawEntry("service", name, self.file, number)
        else:
            name, extra = "defaults", args
            entry = RawEntry("defaults", "defaults", self.file, number)
            if self.seen_defaults:
                entry.ignored = True
                self.sink.error(self.file, number,
                                "only 1 defaults entry is allowed per file; this one is ignored")
            self.seen_defaults = True
        if extra:
            hint = (" ('{' must be on a line of its own)" if "{" in extra else "")
            self.sink.warning(self.file, number,
                              f"extra words after {keyword} {name!r} ignored: {' '.join(extra)}{hint}")
        self.entry = entry
        self.state = _State.OPEN

    def _open(self, line: str, stripped: str, number: int) -> None:
        entry = self.entry
        assert entry is not None
        brace = _brace(stripped)
        if brace is not None and brace[0] == "{":
            if brace[1]:
                self.sink.warning(self.file, number,
                                  "comment after '{' ignored (xinetd accepts only a lone '{')")
            self.state = _State.BODY
            return
        self._break(entry, number, f"Service {entry.name}: missing '{{' (on the line after "
                                   f"{self._title(entry)}", close=True)
        self.state = _State.SKIP   # xinetd skips here for defaults too
        if _is_header(stripped):
            self.state = _State.TOP
            self._top(line, stripped, number)

    def _body(self, line: str, stripped: str, number: int) -> None:
        entry = self.entry
        assert entry is not None
        brace = _brace(stripped)
        if brace is not None and brace[0] == "}":
            if brace[1]:
                self.sink.warning(self.file, number, (
                    "'}' followed by a comment taken as the end of the entry (xinetd 2.3.15.3 "
                    "would not, and would swallow the next entry)"))
            self._close(entry)
            return
        word = _first_word(stripped).lower()
        if word in ("service", "defaults") and _parse_header(line) is not None:
            self._break(entry, number, (
                f"Bad operator for attribute: {_first_word(stripped)} (missing '}}' before this "
                f"line: {self._title(entry)} is incomplete"), close=True)
            self.state = _State.TOP
            self._top(line, stripped, number)
            return
        self._attribute(entry, line, number)

    def _disabled(self, line: str, stripped: str, number: int) -> None:
        """Lines after `disable = yes`: skipped unread up to the closing brace, as xinetd
        skips them (nothing in them is reported: the service is off anyway)."""
        entry = self.entry
        assert entry is not None
        brace = _brace(stripped)
        if brace is not None and brace[0] == "}":
            self._close(entry)
        elif _is_header(stripped) and _parse_header(line) is not None:
            self.sink.warning(self.file, number, f"missing '}}' before this line: the disabled "
                                                 f"{self._title(entry)} ends here")
            self._close(entry)
            self._top(line, stripped, number)

    def _recover(self, line: str, stripped: str, number: int) -> None:
        """The first line after a syntax error in `defaults`, read between entries."""
        if number in self.unread:
            return
        if _is_header(stripped) and _parse_header(line) is not None:
            self.state = _State.TOP
            self._top(line, stripped, number)
            return
        brace = _brace(stripped)
        if brace is not None and brace[0] == "}":
            # Skipping from here would drop the next entry, as xinetd does.
            self.sink.error(self.file, number, (
                "missing service keyword (the '}' of the defaults entry, read after its "
                "syntax error; it ends the entry here: xinetd 2.3.15.3 would skip the lines "
                "up to the next lone '}', dropping the next entry)"))
            self.state = _State.TOP
            return
        self.sink.error(self.file, number, (
            f"missing service keyword (found {_first_word(stripped)!r} after the syntax "
            "error that ended the defaults entry; lines up to the next lone '}' are "
            "skipped)"))
        self.state = _State.SKIP

    def _skip(self, line: str, stripped: str, number: int) -> None:
        brace = _brace(stripped)
        if brace is not None and brace[0] == "}":
            self.state = _State.TOP
        elif _is_header(stripped) and _parse_header(line) is not None:
            self.state = _State.TOP
            self._top(line, stripped, number)

    # -- attribute lines -----------------------------------------------------------

    def _attribute(self, entry: RawEntry, line: str, number: int) -> None:
        tokens = _parse_attribute(line)
        col = len(line) - len(line.lstrip(BLANKS)) + 1
        if not tokens.name:
            self._break(entry, number, f"Attribute  needs a space before operator (attribute "
                                       f"name missing before operator {tokens.op or '='!r}",
                        col, close=True)
            return
        if tokens.op is None:
            if tokens.values:
                problem = (f"Bad operator for attribute: {tokens.name} (expected '=', '+=' or "
                           f"'-=' after {shown_name(tokens.name)}, found {tokens.values[0]!r}")
            else:
                words = "Nothing after attribute: {}"
                if self.lines[number - 1][-1:] not in SPACES:
                    # No blank after the name: xinetd reads on (see _name_runs_on).
                    words, lost = _name_runs_on(self.lines[number:])
                    if lost is not None:
                        self.unread.add(number + 1 + lost)
                problem = words.format(tokens.name) + (
                    f" (expected '= VALUE' after {shown_name(tokens.name)}"
                    if words.startswith("Nothing") else
                    f" (nothing after {shown_name(tokens.name)}: expected '= VALUE'")
            self._break(entry, number, problem, col, close=True)
            return
        if not tokens.gap:
            self._break(entry, number,
                        # xinetd's name runs up to the '=': `instances+=` is `instances+`.
                        f"Attribute {tokens.name}{tokens.op[:-1]} needs a space before "
                        f"operator ({tokens.op!r} "
                        f"right after {shown_name(tokens.name)}",
                        col + len(tokens.name), close=True)
            return
        values = tokens.values
        for index, value in enumerate(values if "#" in line else ()):
            if value.startswith("#") and (index > 0 or value == "#"):
                self.sink.warning(self.file, number, (
                    f"inline comment after the value of {tokens.name} ignored: "
                    f"{' '.join(values[index:])!r} (xinetd has no inline comments and would "
                    "read those words as values)"), line.find(value, col) + 1)
                values = values[:index]
                break
        raw = RawAttribute(tokens.name, tokens.op, values, self.file, number, col)
        # Only the first valid `disable` line counts (a repeated one is ignored).
        if (entry.kind == "service" and _disable_value(raw) == "yes"
                and not any(_disable_value(a) for a in entry.attrs)):
            self.state = _State.DISABLED
        entry.attrs.append(raw)

    # -- entry bookkeeping ---------------------------------------------------------

    @staticmethod
    def _title(entry: RawEntry) -> str:
        return "defaults" if entry.kind == "defaults" else f"service {entry.name}"

    def _break(self, entry: RawEntry, number: int, problem: str, col: int | None = None,
               close: bool = False) -> None:
        """A syntax error: the service is dropped, defaults keep what came before.

        With `close`, `problem` starts with xinetd's words and opens a parenthesis that the
        consequence closes (`missing '{' (on the line after service S; service dropped)`).
        """
        if entry.kind == "service":
            effect = "service dropped"
        else:
            effect = "the rest of this defaults entry is ignored"
        self.sink.error(self.file, number, f"{problem}; {effect}{')' if close else ''}", col)
        if entry.broken is None:
            entry.broken = (f"syntax error at {self.file}:{number}: {problem}"
                            f"{')' if close else ''}")
        self.items.append(entry)
        self.entry = None
        self.state = _State.SKIP if entry.kind == "service" else _State.RECOVER

    def _close(self, entry: RawEntry) -> None:
        self.items.append(entry)
        self.entry = None
        self.state = _State.TOP

    def _end_of_file(self, last_line: int) -> None:
        if self.entry is not None and self.state is _State.DISABLED:
            self.sink.warning(self.file, max(last_line, 1), "end of file inside the disabled "
                                                            f"{self._title(self.entry)} "
                                                            "(missing '}')")
            self._close(self.entry)
        elif self.entry is not None:
            self._break(self.entry, max(last_line, 1),
                        f"end of file inside {self._title(self.entry)} (missing '}}')")
        elif self.state is _State.SKIP:
            # Nothing is lost, but the lone '}' the skip looked for never came: xinetd
            # says so in these words.
            self.sink.warning(self.file, max(last_line, 1), (
                "missing } in last service entry (end of file while skipping lines up to "
                "a lone '}')"))
        self.state = _State.TOP


def parse_text(text: str, file: str, sink: DiagnosticSink) -> list[RawItem]:
    """Split one file into raw entries and include directives, in file order."""
    return _FileParser(file, sink).run(text)
