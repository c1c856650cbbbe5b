"""The syntax of one line of an xinetd configuration file.

xinetd decides what a line is from its first token, so each kind of line has its own
pyparsing production (an entry header, an attribute line) or a small helper (a brace
line, a line's first word, a lone attribute name that runs on into the next lines).
Nothing here knows where in a file a line sits: the per-file state machine that calls
these is grammar.py, and no meaning is given to attribute names or values (that is
attributes.py). docs/grammar.md holds the BNF and must be kept in step.

Speed: pyparsing's per-call cost dominates (tens of microseconds per line), and real
configuration files repeat the same lines over and over ("wait = no", "user = root"),
so parsed attribute lines are memoised per process. The productions are built once,
on first use, never at import time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pyparsing as pp

from pyxinetd.config.rawentries import RawAttribute
from pyxinetd.textbytes import quoted

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
        r"[ \t]*(?P<keyword>(?ai:includedir|include|service|defaults))"
        r"(?=[ \t]|$)[ \t]*(?P<args>.*)"
    ).set_name("entry header")
    header.leave_whitespace()
    attribute = pp.Regex(
        # The name may be empty (a line starting with '='): the line is then an error
        # to report, never a parse failure. Around the name xinetd skips every C-locale
        # space (`port\v= 1` is a port line); the values are split on blanks and tabs.
        r"[ \t\n\v\f\r]*(?P<name>[^ \t\n\v\f\r=]+?|)(?=[+-]?=|[ \t\n\v\f\r]|$)"
        r"(?P<gap>[ \t\n\v\f\r]*)(?P<op>[+-]?=)?[ \t]*(?P<rest>.*)"
    ).set_name("attribute line")
    attribute.leave_whitespace()
    for element in (header, attribute):
        element.parse_with_tabs()
    return Grammar(header=header, attribute=attribute)


@dataclass(frozen=True, slots=True)
class AttrTokens:
    """The tokens of one attribute line (`gap`: blanks between the name and the operator)."""

    name: str
    gap: bool
    op: str | None
    values: tuple[str, ...]


@functools.lru_cache(maxsize=8192)
def parse_attribute(text: str) -> AttrTokens:
    """Split an attribute line; every line matches (a bad one is reported by the caller)."""
    result = grammar().attribute.parse_string(text)
    return AttrTokens(
        name=str(result["name"]), gap=bool(_group(result, "gap")), op=_group(result, "op"),
        values=tuple(_VALUE_RE.findall(_group(result, "rest") or "")),
    )


def _group(result: pp.ParseResults, name: str) -> str | None:
    """A named group of a Regex production, None when it did not take part."""
    if name not in result:
        return None
    value = result[name]
    return None if value is None else str(value)


def parse_header(text: str) -> tuple[str, tuple[str, ...]] | None:
    """(lowercased keyword, its words) for an entry header line, else None."""
    try:
        result = grammar().header.parse_string(text)
    except pp.ParseException:
        return None
    keyword = str(result["keyword"]).lower()
    return keyword, tuple(_VALUE_RE.findall(_group(result, "args") or ""))


def entry_header(text: str) -> tuple[str, tuple[str, ...]] | None:
    """parse_header for a line read inside an entry (or while skipping one): a keyword
    followed by an operator (`service = x`, `defaults += 1`) is an attribute line, as
    xinetd reads every line of a block (`bad service attribute: service`), never the
    header of a new entry."""
    header = parse_header(text)
    if header is not None and header[1] and _OPERATOR_START.match(header[1][0]):
        return None
    return header


_OPERATOR_START = re.compile(r"[+-]?=")


def brace_line(stripped: str) -> tuple[str, bool] | None:
    """('{' or '}', has_trailing_comment) for a brace line, else None."""
    if not stripped or stripped[0] not in "{}":
        return None
    rest = stripped[1:].strip(SPACES)
    if not rest:
        return stripped[0], False
    if rest.startswith("#"):
        return stripped[0], True
    return None


def first_word(stripped: str) -> str:
    """The first token of a stripped line (tokens end at a blank or a tab only)."""
    found = _VALUE_RE.match(stripped)
    return found.group() if found else ""


def shown_name(name: str) -> str:
    """A name as a message shows it: quoted when it holds invisible characters."""
    return name if name.isprintable() else quoted(name)


def disable_value(raw: RawAttribute) -> str | None:
    """'yes' or 'no' for a line that sets `disable`, else None."""
    if raw.name.lower() != "disable" or raw.op != "=" or len(raw.values) != 1:
        return None
    value = raw.values[0].lower()
    return value if value in ("yes", "no") else None


def disable_ends_block(raw: RawAttribute) -> bool:
    """Whether xinetd stops reading the block at this line, the first to set `disable`:
    `disable = yes`, and a value that fails (`disable = no,`) which marks the service
    disabled too. Its lines after it are not read, a syntax error among them neither."""
    if raw.name.lower() != "disable" or raw.op != "=" or len(raw.values) != 1:
        return False
    return raw.values[0].lower() != "no"


def is_header(stripped: str) -> bool:
    """Whether a stripped line's first word is a header keyword (any case)."""
    word = first_word(stripped).lower()
    return word in _HEADER_WORDS


@dataclass(frozen=True)
class RunOn:
    """How xinetd 2.3.15.3 reads a line that is a lone attribute name (name_runs_on)."""

    words: str                # its message, with `{}` for the name
    lost: int | None          # the index of a following line it then never reads
    takes_values: bool        # an operator follows: it reads on as an attribute line


def name_runs_on(following: list[str]) -> RunOn:
    """How xinetd 2.3.15.3 reads a line that is a lone attribute name.

    xinetd's scan of the name stops only at a blank or an '=', not at the end of the
    line: it runs on into the following lines (their newlines count as blanks) and ends
    that text where it stops. A '=' there gives `needs a space before operator`; after
    a blank, only blanks to the end of the file give `Nothing after attribute`, anything
    else `Bad operator`, but for an operator (`=`, `+=`, `-=`, after any blanks): xinetd
    then has no message of its own and takes the name with the text after the operator
    as its values (`takes_values`; pyxinetd's words are still `Bad operator`).
    The text cut there costs one line: an indented line is emptied, and a newline lost
    merges the line after it into its line.
    """
    for index, text in enumerate(following):
        for col, char in enumerate(text + "\n"):
            if char == "=":
                return RunOn("Attribute {} needs a space before operator", None, False)
            if char not in SPACES:
                continue
            rest = "\n".join([text[col + 1:], *following[index + 1:]])
            words = ("Nothing after attribute: {}" if not rest.strip(SPACES)
                     else "Bad operator for attribute: {}")
            operator = rest.lstrip(SPACES).startswith(("=", "+=", "-="))
            if col == len(text):
                return RunOn(words, index + 1, operator)
            return RunOn(words, index if col == 0 else None, operator)
    return RunOn("Nothing after attribute: {}", None, False)
