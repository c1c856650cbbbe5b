"""The grammar of xinetd configuration files: text in, raw entries with file/line out.

The language is line-oriented (xinetd reads it line by line and decides what a line
is from its first token). The syntax of one line, its pyparsing productions and
helpers, is in linesyntax.py; this module holds the small state machine that walks
the lines of a file, knows where the reader is (between entries, waiting for `{`,
inside a block, skipping after an error) and reports what is wrong with file:line.
No meaning is given to attribute names or values here: that is the attribute table's
job (attributes.py). docs/grammar.md holds the BNF and must be kept in step.
"""

from __future__ import annotations

import enum

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.linesyntax import (
    SPACES,
    XINETD_LINE_BYTES,
    brace_line,
    disable_ends_block,
    disable_value,
    entry_header,
    first_word,
    is_header,
    name_runs_on,
    parse_attribute,
    parse_header,
    shown_name,
)
from pyxinetd.config.rawentries import IncludeKind, RawAttribute, RawEntry, RawInclude, RawItem
from pyxinetd.textbytes import quoted


class _State(enum.Enum):
    TOP = "top"
    OPEN = "expect-brace"
    BODY = "body"
    SKIP = "skip"
    DISABLED = "disabled"   # after `disable = yes` or a bad value: the rest is not read
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
        # Line numbers xinetd never reads, having run into them (see linesyntax.name_runs_on),
        # each with the number of the attribute line whose scan ran on.
        self.unread: dict[int, int] = {}
        # The line of a lone '}' that ended a skip here but that xinetd never reads, while
        # xinetd would still be skipping up to the next lone '}' (see _skip).
        self.xinetd_skips_past: int | None = None

    def run(self, text: str) -> list[RawItem]:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines = [self._cut_at_nul(line, number) for number, line in enumerate(lines, start=1)]
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
            if not stripped:
                continue
            if len(line) >= XINETD_LINE_BYTES // 4:
                self._long_line(line, number, comment=stripped[0] == "#")
            if stripped[0] == "#":
                continue
            self._line(line, stripped, number)
        self._end_of_file(len(lines))
        return self.items

    def _cut_at_nul(self, line: str, number: int) -> str:
        """The line up to its first NUL byte, where xinetd's C strings end it.

        Kept whole, a NUL would reach a value (an argv string no exec takes, a name no
        lookup finds); cut, the service is the one xinetd runs. Said unless what is
        lost is the rest of a comment.
        """
        cut = line.find("\0")
        if cut < 0:
            return line
        kept = line[:cut]
        if not kept.strip(SPACES).startswith("#"):
            self.sink.warning(self.file, number, (
                f"NUL byte at column {cut + 1}: the rest of the line is ignored, as "
                f"xinetd does (read as {quoted(kept.strip(SPACES))})"))
        return kept

    def _long_line(self, line: str, number: int, *, comment: bool) -> None:
        size = len(line.encode("utf-8", "surrogateescape"))
        if size < XINETD_LINE_BYTES:
            return
        if comment:
            # Said although only a comment is read whole: xinetd cuts it too, and the
            # rest it reads as a line drops an entry.
            self.sink.warning(self.file, number, (
                f"line is {size} bytes long, a comment; read whole (xinetd 2.3.15.3 reads "
                "about 16 KiB of a line and would take the rest for a line of its own, "
                "dropping the entry the comment is in or, between entries, the next one)"))
        else:
            self.sink.warning(self.file, number, (
                f"line is {size} bytes long; read whole (xinetd 2.3.15.3 reads about 16 KiB "
                "of a line and would take the rest for a line of its own, dropping the "
                "entry)"))

    # -- one line, by state ------------------------------------------------------

    def _line(self, line: str, stripped: str, number: int) -> None:
        if self.state is _State.TOP:
            if self.xinetd_skips_past is not None or number in self.unread:
                self._lost_to_xinetd(line, stripped, number)
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
        header = parse_header(line)
        if header is None:
            brace = brace_line(stripped)
            if brace is not None and brace[0] == "}":
                self.sink.warning(self.file, number,
                                  "missing service keyword (stray '}' outside any entry; ignored)")
                return
            self.sink.error(self.file, number, (
                "missing service keyword (expected 'service NAME', 'defaults', 'include FILE' "
                f"or 'includedir DIR', found {quoted(first_word(stripped))}; lines up to the next "
                "lone '}' are skipped)"))
            self.state = _State.SKIP
            return
        keyword, args = header
        if keyword in ("include", "includedir"):
            if not args:
                # xinetd's words; it then skips to the next lone '}' (the next entry's
                # own, most often: lost), as after a `service` line without a name.
                self.sink.error(self.file, number, f"service name missing ({keyword} needs "
                                                   f"a path; lines up to the next lone '}}' "
                                                   f"are skipped)")
                self.state = _State.SKIP
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
            # A second one is refused once its `{` is read (_open), as xinetd does.
            entry.ignored = self.seen_defaults
            self.seen_defaults = True
        if extra:
            hint = (" ('{' must be on a line of its own)" if "{" in extra else "")
            self.sink.warning(self.file, number,
                              f"extra words after {keyword} {quoted(name)} ignored: "
                              f"{' '.join(extra)}{hint}")
        self.entry = entry
        self.state = _State.OPEN

    def _open(self, line: str, stripped: str, number: int) -> None:
        entry = self.entry
        assert entry is not None
        brace = brace_line(stripped)
        if brace is not None and brace[0] == "{":
            if brace[1]:
                self.sink.warning(self.file, number,
                                  "comment after '{' ignored (xinetd accepts only a lone '{')")
            self.state = _State.BODY
            if entry.ignored:
                # xinetd's line, at the `{`; then, as xinetd, the block is skipped unread.
                self.sink.error(self.file, number, (
                    "only 1 defaults entry is allowed. This entry will be ignored (one per "
                    "file; its lines up to the next lone '}' are skipped)"))
                self.entry = None
                self.state = _State.SKIP
            return
        self._break(entry, number, f"Service {entry.name}: missing '{{' (on the line after "
                                   f"{self._title(entry)}", close=True)
        self.state = _State.SKIP   # xinetd skips here for defaults too
        if is_header(stripped) and (header := parse_header(line)) is not None:
            self._resume_at(line, stripped, number, header)

    def _body(self, line: str, stripped: str, number: int) -> None:
        entry = self.entry
        assert entry is not None
        brace = brace_line(stripped)
        if brace is not None and brace[0] == "}":
            if brace[1]:
                self.sink.warning(self.file, number, (
                    "'}' followed by a comment taken as the end of the entry (xinetd 2.3.15.3 "
                    "would not, and would swallow the next entry)"))
            self._close(entry)
            return
        word = first_word(stripped).lower()
        if word in ("service", "defaults") and (header := entry_header(line)) is not None:
            self._break(entry, number, (
                f"Bad operator for attribute: {first_word(stripped)} (missing '}}' before this "
                f"line: {self._title(entry)} is incomplete"), close=True)
            # Where an earlier `disable` line ended the block (known to the loader only,
            # once values are parsed), xinetd never reads this line: it is withdrawn then.
            entry.broken_line = number
            self._resume_at(line, stripped, number, header)
            return
        self._attribute(entry, line, number)

    def _disabled(self, line: str, stripped: str, number: int) -> None:
        """Lines after `disable = yes`: skipped unread up to the closing brace, as xinetd
        skips them (nothing in them is reported: the service is off anyway)."""
        entry = self.entry
        assert entry is not None
        brace = brace_line(stripped)
        if brace is not None and brace[0] == "}":
            self._close(entry)
        elif is_header(stripped) and (header := entry_header(line)) is not None:
            # xinetd skips a disabled block up to the next lone `}`, which is most often
            # the next entry's own: that entry is lost, with no line about it.
            keyword, args = header
            if keyword == "service" and args:
                lost = (f"and service {args[0]} starts (xinetd 2.3.15.3 would skip on up to "
                        f"the next lone '}}', dropping service {args[0]} with no message)")
            elif keyword == "defaults":
                lost = ("and defaults starts (xinetd 2.3.15.3 would skip on up to the next "
                        "lone '}', ignoring this defaults entry)")
            else:
                lost = ("(xinetd 2.3.15.3 would skip on up to the next lone '}', not reading "
                        "this line)")
            self.sink.warning(self.file, number, f"missing '}}' before this line: the disabled "
                                                 f"{self._title(entry)} ends here {lost}")
            self._close(entry)
            self._top(line, stripped, number)

    def _recover(self, line: str, stripped: str, number: int) -> None:
        """The first line after a syntax error in `defaults`, read between entries."""
        if number in self.unread:
            return
        if is_header(stripped) and parse_header(line) is not None:
            self.state = _State.TOP
            self._top(line, stripped, number)
            return
        brace = brace_line(stripped)
        if brace is not None and brace[0] == "}":
            # Skipping from here would drop the next entry, as xinetd does.
            self.sink.error(self.file, number, (
                "missing service keyword (the '}' of the defaults entry, read after its "
                "syntax error; it ends the entry here: xinetd 2.3.15.3 would skip the lines "
                "up to the next lone '}', dropping the next entry)"))
            self.state = _State.TOP
            return
        self.sink.error(self.file, number, (
            f"missing service keyword (found {quoted(first_word(stripped))} after the syntax "
            "error that ended the defaults entry; lines up to the next lone '}' are "
            "skipped)"))
        self.state = _State.SKIP

    def _skip(self, line: str, stripped: str, number: int) -> None:
        brace = brace_line(stripped)
        if brace is not None and brace[0] == "}":
            self.state = _State.TOP
            if number in self.unread:
                # The '}' ends the skip here, where it was written; xinetd's scan of a lone
                # attribute name cut it away, so xinetd skips on to the next lone '}'. What
                # that costs is said where it happens (_top, _end_of_file).
                self.xinetd_skips_past = number
        elif is_header(stripped) and (header := entry_header(line)) is not None:
            self._resume_at(line, stripped, number, header)

    def _lost_to_xinetd(self, line: str, stripped: str, number: int) -> None:
        """Say what xinetd 2.3.15.3 loses at a line read between entries that it never
        reaches as a line of its own: it is still skipping (the '}' that ended the skip
        here is one its scan of a lone attribute name cut away), or that scan cut this
        very line away. Read here as written; an entry starting here would be lost to
        xinetd, with no line of its own about it."""
        skipping, self.xinetd_skips_past = self.xinetd_skips_past, None
        header = parse_header(line) if is_header(stripped) else None
        if header is None:
            return  # a lone '}' ends xinetd's skip too; other text is an error here anyway
        keyword, args = header
        if keyword == "service" and args:
            subject, loss = f"service {args[0]} starts here", "dropping this service"
        elif keyword == "defaults":
            subject, loss = "defaults starts here", "ignoring this defaults entry"
        else:
            subject, loss = f"{keyword} is read here", "not reading this line"
        if skipping is not None:
            message = (f"{subject} (xinetd 2.3.15.3 would still be skipping lines up to a "
                       f"lone '}}' here, {loss}: it never reads the '}}' on line {skipping}, "
                       f"which its scan of the attribute name on line "
                       f"{self.unread[skipping]} ran on into)")
        else:
            then = ("" if keyword in ("include", "includedir") else
                    f", and would take the line after it for a stray one and skip lines up "
                    f"to the next lone '}}', {loss}")
            message = (f"{subject} (xinetd 2.3.15.3 would never read this line, which its "
                       f"scan of the attribute name on line {self.unread[number]} ran on "
                       f"into{then})")
        self.sink.warning(self.file, number, message)

    def _resume_at(self, line: str, stripped: str, number: int,
                   header: tuple[str, tuple[str, ...]]) -> None:
        """Start the entry of a header line met where xinetd 2.3.15.3 is still skipping
        up to the next lone `}` (after a syntax error, or a block missing its `}`), and
        say what xinetd loses there: that `}` is most often this entry's own, so xinetd
        drops the entry with no line of its own about it (docs/compatibility.md)."""
        keyword, args = header
        if keyword == "service" and args:
            self.sink.warning(self.file, number, (
                f"service {args[0]} starts here, where the lines skipped after the error "
                "above end (xinetd 2.3.15.3 would skip on up to the next lone '}', "
                "dropping this service)"))
        elif keyword == "defaults":
            self.sink.warning(self.file, number, (
                "defaults starts here, where the lines skipped after the error above end "
                "(xinetd 2.3.15.3 would skip on up to the next lone '}', ignoring this "
                "defaults entry)"))
        else:
            self.sink.warning(self.file, number, (
                f"{keyword} is read here, where the lines skipped after the error above end "
                "(xinetd 2.3.15.3 would skip on up to the next lone '}', not reading this "
                "line)"))
        self.state = _State.TOP
        self._top(line, stripped, number)

    # -- attribute lines -----------------------------------------------------------

    def _attribute(self, entry: RawEntry, line: str, number: int) -> None:
        self._read_attribute(entry, line, number)
        if self.entry is None and entry.broken is not None:
            entry.broken_line = number

    def _read_attribute(self, entry: RawEntry, line: str, number: int) -> None:
        tokens = parse_attribute(line)
        col = len(line) - len(line.lstrip(SPACES)) + 1
        if not tokens.name:
            self._break(entry, number, f"Attribute  needs a space before operator (attribute "
                                       f"name missing before operator {quoted(tokens.op or '=')}",
                        col, close=True)
            return
        if tokens.op is None:
            if tokens.values and tokens.name in ("include", "includedir"):
                # A keyword of the top level inside a block: almost always a `}` left
                # out above it. xinetd skips the line as a bad attribute all the same,
                # so the files it names are not read.
                problem = (f"Bad operator for attribute: {tokens.name} (missing '}}' before "
                           f"this line: {self._title(entry)} is incomplete, and "
                           f"{tokens.name} {tokens.values[0]} is not read")
            elif tokens.values:
                problem = (f"Bad operator for attribute: {tokens.name} (expected '=', '+=' or "
                           f"'-=' after {shown_name(tokens.name)}, "
                           f"found {quoted(tokens.values[0])}")
            else:
                words = "Nothing after attribute: {}"
                xinetd_reads = ""
                if self.lines[number - 1][-1:] not in SPACES:
                    # No blank after the name: xinetd reads on (see linesyntax.name_runs_on).
                    run_on = name_runs_on(self.lines[number:])
                    words = run_on.words
                    if run_on.lost is not None:
                        self.unread[number + 1 + run_on.lost] = number
                    if run_on.takes_values:
                        # The manual's grammar has one attribute a line; xinetd's reading
                        # of the lines after this one differs from here on.
                        xinetd_reads = ("; xinetd 2.3.15.3 would read the operator after "
                                        "the next blank and take the text after it as "
                                        f"the values of {shown_name(tokens.name)}")
                problem = words.format(tokens.name) + (
                    f" (expected '= VALUE' after {shown_name(tokens.name)}"
                    if words.startswith("Nothing") else
                    f" (nothing after {shown_name(tokens.name)}: expected '= VALUE'"
                ) + xinetd_reads
            self._break(entry, number, problem, col, close=True)
            return
        if not tokens.gap:
            self._break(entry, number,
                        # xinetd's name runs up to the '=': `instances+=` is `instances+`.
                        f"Attribute {tokens.name}{tokens.op[:-1]} needs a space before "
                        f"operator ({quoted(tokens.op)} "
                        f"right after {shown_name(tokens.name)}",
                        col + len(tokens.name), close=True)
            return
        values = tokens.values
        for index, value in enumerate(values if "#" in line else ()):
            if value.startswith("#") and (index > 0 or value == "#"):
                self.sink.warning(self.file, number, (
                    f"inline comment after the value of {tokens.name} ignored: "
                    f"{quoted(' '.join(values[index:]))} (xinetd has no inline comments and would "
                    "read those words as values)"), line.find(value, col) + 1)
                values = values[:index]
                break
        raw = RawAttribute(tokens.name, tokens.op, values, self.file, number, col)
        # Only the first valid `disable` line counts (a repeated one is ignored).
        if (entry.kind == "service" and disable_ends_block(raw)
                and not any(disable_value(a) for a in entry.attrs)):
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
        # The lines are xinetd's, at its place (the file's last line): an ERROR for the
        # entry cut short, then the WARNING it adds when that entry is a service or
        # never got its `{`.
        last = max(last_line, 1)
        entry = self.entry
        if entry is not None and self.state is _State.DISABLED:
            self.sink.warning(self.file, last, "missing } in last service entry (end of "
                                               f"file inside the disabled {self._title(entry)})")
            self._close(entry)
        elif entry is not None:
            title, opening = self._title(entry), self.state is _State.OPEN
            if opening:
                self._break(entry, last, f"Service {entry.name}: missing '{{' (end of file "
                                         f"after {title}", close=True)
            else:
                self._break(entry, last, f"incomplete entry (end of file inside {title}: "
                                         "missing '}'", close=True)
            if opening or entry.kind == "service":
                self.sink.warning(self.file, last,
                                  "missing } in last service entry (end of file "
                                  f"{'after' if opening else 'inside'} {title})")
        elif self.state is _State.SKIP:
            # Nothing is lost, but the lone '}' the skip looked for never came: xinetd
            # says so in these words.
            self.sink.warning(self.file, max(last_line, 1), (
                "missing } in last service entry (end of file while skipping lines up to "
                "a lone '}')"))
        elif self.xinetd_skips_past is not None:
            # Nothing is lost here either, but xinetd is still skipping (_skip).
            skipped = self.xinetd_skips_past
            self.sink.warning(self.file, max(last_line, 1), (
                "missing } in last service entry (xinetd 2.3.15.3 would reach the end of "
                "the file still skipping lines up to a lone '}': it never reads the '}' "
                f"on line {skipped}, which its scan of the attribute name on line "
                f"{self.unread[skipped]} ran on into; nothing is lost)"))
            self.xinetd_skips_past = None
        self.state = _State.TOP


def parse_text(text: str, file: str, sink: DiagnosticSink) -> list[RawItem]:
    """Split one file into raw entries and include directives, in file order."""
    return _FileParser(file, sink).run(text)
