"""The line grammar: entries, braces, comments, whitespace, recovery, includes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.grammar import parse_text
from pyxinetd.config.linesyntax import grammar
from pyxinetd.config.rawentries import RawEntry, RawInclude
from tests.unit.config_kit import dropped_reasons, errors, load_text, service_block, warnings


def parse(text: str) -> tuple[list[RawEntry | RawInclude], list[str]]:
    sink = DiagnosticSink()
    items = parse_text(text, "f.conf", sink)
    return items, [str(d) for d in sink.items]


def test_grammar_is_built_once_and_named() -> None:
    assert grammar() is grammar()
    assert grammar().attribute.customName == "attribute line"
    assert grammar().header.customName == "entry header"


def test_service_block_with_comments_blank_lines_and_tabs() -> None:
    items, diags = parse("# top comment\n\nservice echo\n{\n\t# inside\n\n"
                         "\tsocket_type\t=\tstream  \n  wait = no\t\n}\n")
    assert diags == []
    (entry,) = items
    assert isinstance(entry, RawEntry)
    assert (entry.kind, entry.name, entry.line) == ("service", "echo", 3)
    assert [(a.name, a.op, a.values, a.line, a.col) for a in entry.attrs] == [
        ("socket_type", "=", ("stream",), 7, 2), ("wait", "=", ("no",), 8, 3)]


def test_keywords_are_case_insensitive() -> None:
    items, diags = parse("SERVICE upper\n{\nWAIT = no\n}\nDefaults\n{\n}\nINCLUDE /x\n")
    assert diags == []
    assert [type(i).__name__ for i in items] == ["RawEntry", "RawEntry", "RawInclude"]
    assert isinstance(items[0], RawEntry) and items[0].attrs[0].name == "WAIT"


def test_missing_final_newline_and_operators() -> None:
    items, diags = parse("service a\n{\nx += 1 2\ny -= 3\nport =20100\n}")
    assert diags == []
    entry = items[0]
    assert isinstance(entry, RawEntry)
    assert [(a.name, a.op, a.values) for a in entry.attrs] == [
        ("x", "+=", ("1", "2")), ("y", "-=", ("3",)), ("port", "=", ("20100",))]


def test_empty_value_list() -> None:
    items, _ = parse("service a\n{\nonly_from =\n}\n")
    entry = items[0]
    assert isinstance(entry, RawEntry) and entry.attrs[0].values == ()


def test_space_before_operator_is_required() -> None:
    items, diags = parse("service a\n{\nsocket_type= stream\nwait = no\n}\nservice b\n{\n}\n")
    first, second = items
    assert isinstance(first, RawEntry) and first.broken is not None
    assert "needs a space before operator" in diags[0] and "f.conf:3:12" in diags[0]
    assert isinstance(second, RawEntry) and second.broken is None


@pytest.mark.parametrize("line, words", [
    ("foo bar", "Bad operator for attribute: foo (expected"),
    ("foo", "Bad operator for attribute: foo (nothing after foo"),
    ("include /etc/x", "Bad operator for attribute: include ("),
    ("= stream", "attribute name missing before operator '='"),
    ("\t=", "attribute name missing before operator '='"),
    ("==x", "attribute name missing before operator '='"),
])
def test_line_errors_drop_the_service(line: str, words: str) -> None:
    items, diags = parse(f"service a\n{{\n{line}\nwait = no\n}}\n")
    assert isinstance(items[0], RawEntry) and items[0].broken
    assert any(words in d for d in diags)


@pytest.mark.parametrize("lines, words", [
    # xinetd's scan of a lone name runs on past the end of its line: what follows
    # decides its words.
    ("foo \n}\n", "Nothing after attribute: foo (expected '= VALUE' after foo"),
    ("foo\n}\n", "Nothing after attribute: foo ("),              # then only blanks
    ("foo\n}\n\n\t\n", "Nothing after attribute: foo ("),
    ("foo\nx=1\n}\n", "Attribute foo needs a space before operator (nothing after foo"),
    ("foo\n\twait = no\n}\n", "Bad operator for attribute: foo (nothing after foo"),
    ("foo\n}\n\nservice b\n{\n}\n", "Bad operator for attribute: foo (nothing after foo"),
])
def test_lone_name_words_depend_on_what_follows(lines: str, words: str) -> None:
    _items, diags = parse(f"service a\n{{\n{lines}")
    assert any(words in d for d in diags), diags


def _services(items: list[RawEntry | RawInclude]) -> list[str]:
    return [i.name for i in items if isinstance(i, RawEntry) and not i.broken]


def test_entry_on_a_line_xinetd_cuts_away_is_read_with_a_warning() -> None:
    # `nowait` alone before the `}`: xinetd's scan of the name runs on through the `}`
    # and cuts the `service b` line away; that `}` still ends its skip, and it takes
    # the `{` after for a stray line, dropping b. pyxinetd reads b and says so.
    items, diags = parse("service a\n{\nnowait\n}\nservice b\n{\n}\n")
    assert _services(items) == ["b"]
    assert [d for d in diags if "warning" in d] == [
        "f.conf:5: warning: service b starts here (xinetd 2.3.15.3 would never read this "
        "line, which its scan of the attribute name on line 3 ran on into, and would take "
        "the line after it for a stray one and skip lines up to the next lone '}', dropping "
        "this service)"]


def test_entry_after_a_brace_xinetd_cuts_away_is_read_with_a_warning() -> None:
    # An indented `}` after the lone name is emptied by xinetd's cut: its skip runs on
    # to the next lone `}`, b's own.
    items, diags = parse("service a\n{\nfoo\n\t}\nservice b\n{\n}\nservice c\n{\n}\n")
    assert _services(items) == ["b", "c"]
    assert [d for d in diags if "warning" in d] == [
        "f.conf:5: warning: service b starts here (xinetd 2.3.15.3 would still be skipping "
        "lines up to a lone '}' here, dropping this service: it never reads the '}' on line "
        "4, which its scan of the attribute name on line 3 ran on into)"]


def test_brace_xinetd_cuts_away_at_the_end_of_the_file_gets_its_warning() -> None:
    items, diags = parse("service a\n{\n\\\n\n}\n")
    assert _services(items) == []
    assert [d for d in diags if "warning" in d] == [
        "f.conf:5: warning: missing } in last service entry (xinetd 2.3.15.3 would reach "
        "the end of the file still skipping lines up to a lone '}': it never reads the '}' "
        "on line 5, which its scan of the attribute name on line 3 ran on into; nothing is "
        "lost)"]


def test_a_service_line_cut_away_inside_the_skip_is_announced_once() -> None:
    # `bar` stops the scan and `service b` is cut away while both daemons still skip:
    # the one warning is the skip's own.
    _items, diags = parse("service a\n{\nfoo\nbar\nservice b\n{\n}\n")
    assert [d for d in diags if "warning" in d] == [
        "f.conf:5: warning: service b starts here, where the lines skipped after the error "
        f"above end {_XINETD_DROPS_IT}"]


def test_a_lone_brace_ends_the_skip_xinetd_goes_on_with() -> None:
    # xinetd's skip ends at the next lone `}` (a stray one here): the entry after it is
    # read by both, with no warning.
    items, diags = parse("service a\n{\nfoo\n\t}\n}\nservice b\n{\n}\n")
    assert _services(items) == ["b"]
    assert not any("xinetd 2.3.15.3 would" in d for d in diags), diags


@pytest.mark.parametrize("lines, reads_on", [
    # After the first blank the scan met, an operator: xinetd 2.3.15.3 takes the lone
    # name with the text after it as its values (`bad service attribute: foo`) and
    # reads the lines after it its own way; pyxinetd's error says so.
    ("foo\nwait = no\n}\n", True),
    ("\\\ntype  =  UNLISTED  \n}\n", True),
    ("foo\nwait += no\n}\n", True),
    ("foo\nwait\n-=\tno\n}\n", True),
    ("foo\nwait =no\n}\n", True),
    # No operator there: xinetd's `Bad operator for attribute: foo`, the same as ours.
    ("foo\nwait x no\n}\n", False),
    ("foo\nwait +no\n}\n", False),
    ("foo\n\twait = no\n}\n", False),
])
def test_lone_name_before_an_operator_says_how_xinetd_reads_on(lines: str,
                                                               reads_on: bool) -> None:
    _items, diags = parse(f"service a\n{{\n{lines}")
    name = lines.split("\n", 1)[0]
    assert any(f"Bad operator for attribute: {name} (nothing after {name}" in d
               for d in diags), diags
    note = (f"xinetd 2.3.15.3 would read the operator after the next blank and take the "
            f"text after it as the values of {name}; service dropped)")
    assert any(note in d for d in diags) is reads_on, diags


def test_line_without_a_name_is_an_error_in_defaults_too(tmp_path: Path) -> None:
    # Such a line used to escape the grammar as an exception and stop the whole load.
    conf = load_text(tmp_path, "defaults\n{\ninstances = 4\n=\numask = 022\n}\n"
                     + service_block("after", port=20100))
    assert [s.name for s in conf.services] == ["after"]
    assert conf.defaults.instances == 4 and conf.defaults.umask is None
    assert any("attribute name missing before operator" in e for e in errors(conf))


def test_syntax_error_in_defaults_keeps_earlier_lines() -> None:
    items, diags = parse("defaults\n{\ninstances = 4\ncps=1 2\numask = 022\n}\n")
    entry = items[0]
    assert isinstance(entry, RawEntry) and entry.kind == "defaults"
    assert [a.name for a in entry.attrs] == ["instances"]
    assert "rest of this defaults entry is ignored" in diags[0]


@pytest.mark.parametrize("after, where, words", [
    # Back between entries after the error: the next line xinetd reads is no entry.
    ("umask = 022\nbanner = /b\n}\n", 5,
     "missing service keyword (found 'umask' after the syntax error that ended the "
     "defaults entry; lines up to the next lone '}' are skipped)"),
    ("}\n", 5, "missing service keyword (the '}' of the defaults entry, read after its "
                "syntax error; it ends the entry here: xinetd 2.3.15.3 would skip"),
    ("", None, None),
])
def test_line_after_a_syntax_error_in_defaults(after: str, where: int | None,
                                               words: str | None) -> None:
    items, diags = parse("defaults\n{\ninstances = 4\ncps=1 2\n" + after
                         + "service s\n{\nwait = no\n}\n")
    assert [i.name for i in items if isinstance(i, RawEntry)] == ["defaults", "s"]
    assert [i.broken is None for i in items if isinstance(i, RawEntry)] == [False, True]
    expected = [] if words is None else [f"f.conf:{where}: error: {words}"]
    assert len(diags) == 1 + len(expected)
    assert all(d.startswith(e) for d, e in zip(diags[1:], expected)), diags


def test_lone_name_in_defaults_reads_on_into_an_indented_line() -> None:
    # xinetd empties the indented line the name's scan ran into: the line after it is
    # the one it reads between entries.
    _items, diags = parse("defaults\n{\n\\\n\tumask = 022\n\tbanner = /b\n}\n")
    assert diags[0].startswith("f.conf:3:1: error: Bad operator for attribute: \\ (")
    assert diags[1].startswith("f.conf:5: error: missing service keyword (found 'banner'")
    assert len(diags) == 2


def test_brace_with_comment_closes_entry_and_next_service_survives() -> None:
    items, diags = parse("service a\n{\nwait = no\n} # end of a\nservice b\n{\nwait = no\n}\n")
    assert [i.name for i in items if isinstance(i, RawEntry)] == ["a", "b"]
    assert all(isinstance(i, RawEntry) and i.broken is None for i in items)
    assert "'}' followed by a comment" in diags[0]


def test_missing_open_brace() -> None:
    items, diags = parse("service a\nwait = no\n}\nservice b\n{\n}\n")
    assert [(i.name, i.broken is not None) for i in items if isinstance(i, RawEntry)] == [
        ("a", True), ("b", False)]
    assert "missing '{'" in diags[0]


def test_brace_on_header_line_is_not_accepted() -> None:
    items, diags = parse("service a {\nwait = no\n}\n")
    assert isinstance(items[0], RawEntry) and items[0].broken
    assert "'{' must be on a line of its own" in diags[0]


def test_stray_line_does_not_swallow_next_service() -> None:
    text = ("ssh stream tcp nowait root /usr/sbin/tcpd sshd -i\nservice b\n{\nwait = no\n}\n")
    items, diags = parse(text)
    assert [i.name for i in items if isinstance(i, RawEntry)] == ["b"]
    assert "expected 'service NAME'" in diags[0]


def test_anonymous_block_is_skipped_and_stray_brace_warned() -> None:
    items, diags = parse("{\ninstances = 1\n}\n}\nservice b\n{\n}\n")
    assert [i.name for i in items if isinstance(i, RawEntry)] == ["b"]
    assert "stray '}'" in diags[1]


def test_unclosed_service_before_next_service() -> None:
    items, diags = parse("service a\n{\nwait = no\nservice b\n{\nwait = no\n}\n")
    assert [(i.name, i.broken is not None) for i in items if isinstance(i, RawEntry)] == [
        ("a", True), ("b", False)]
    assert "missing '}'" in diags[0]


_XINETD_DROPS_IT = ("(xinetd 2.3.15.3 would skip on up to the next lone '}', dropping this "
                    "service)")


@pytest.mark.parametrize(("text", "line"), [
    # A bad attribute line, then the block's `}` missing: the skip ends at the header.
    ("service a\n{\nwait = no\n\u00a0\nservice b\n{\nwait = no\n}\n", 5),
    # The `}` missing: the header is read as an attribute of the unclosed block.
    ("service a\n{\nwait = no\nservice b\n{\nwait = no\n}\n", 4),
    # No `{` after the header: the next header is that line.
    ("service a\nservice b\n{\nwait = no\n}\n", 2),
    # A stray line between entries.
    ("ssh stream tcp nowait root /usr/sbin/tcpd sshd -i\nservice b\n{\n}\n", 2),
])
def test_service_that_ends_a_skip_says_xinetd_would_drop_it(text: str, line: int) -> None:
    items, diags = parse(text)
    assert [i.name for i in items if isinstance(i, RawEntry) and not i.broken] == ["b"]
    assert diags[-1] == (f"f.conf:{line}: warning: service b starts here, where the lines "
                         f"skipped after the error above end {_XINETD_DROPS_IT}")


def test_skip_ended_by_its_lone_brace_is_not_said_to_end_at_the_next_service() -> None:
    # The skip ends at the `}`, not at b. (xinetd still drops b: the NBSP is no blank to
    # it, so its scan of that name ran on through the `}` and cut the `service b` line
    # away; checked against xinetd 2.3.15.3.)
    _items, diags = parse("service a\n{\n\u00a0\n}\nservice b\n{\n}\n")
    assert not any("where the lines skipped after the error above end" in d for d in diags)
    assert diags[-1].startswith("f.conf:5: warning: service b starts here (xinetd 2.3.15.3 "
                                "would never read this line, which its scan of the "
                                "attribute name on line 3 ran on into"), diags

def test_end_of_file_inside_entry() -> None:
    # xinetd's two lines, at the file's last line (comments and blanks count).
    items, diags = parse("service a\n{\nwait = no\n\n# end\n")
    assert isinstance(items[0], RawEntry) and items[0].broken
    assert diags == [
        "f.conf:5: error: incomplete entry (end of file inside service a: missing '}'; "
        "service dropped)",
        "f.conf:5: warning: missing } in last service entry (end of file inside service a)"]


def test_end_of_file_inside_defaults_keeps_what_was_read() -> None:
    items, diags = parse("defaults\n{\ninstances = 5\n")
    (entry,) = items
    assert isinstance(entry, RawEntry) and [a.name for a in entry.attrs] == ["instances"]
    # No `missing }` warning here: xinetd has none for the defaults.
    assert diags == ["f.conf:3: error: incomplete entry (end of file inside defaults: "
                     "missing '}'; the rest of this defaults entry is ignored)"]


def test_end_of_file_after_a_header() -> None:
    items, diags = parse("service a\n\n")
    assert isinstance(items[0], RawEntry) and items[0].broken
    assert diags == [
        "f.conf:2: error: Service a: missing '{' (end of file after service a; service "
        "dropped)",
        "f.conf:2: warning: missing } in last service entry (end of file after service a)"]


def test_service_name_missing() -> None:
    items, diags = parse("service\n{\n}\n")
    assert items == [] and "service name missing" in diags[0]


def test_second_defaults_in_one_file_is_skipped() -> None:
    # xinetd's line at the `{`; the block is not read (its bad line is not reported).
    items, diags = parse("defaults\n{\n}\ndefaults\n\n{\ninstances = 3\nbogus\n}\n")
    assert [i.kind for i in items if isinstance(i, RawEntry)] == ["defaults"]
    assert diags == ["f.conf:6: error: only 1 defaults entry is allowed. This entry will be "
                     "ignored (one per file; its lines up to the next lone '}' are skipped)"]


def test_crlf_read_as_lf_with_one_warning() -> None:
    items, diags = parse("service a\r\n{\r\nsocket_type = stream\r\nwait = no\r\n}\r\n")
    entry = items[0]
    assert isinstance(entry, RawEntry) and entry.broken is None
    assert entry.attrs[0].values == ("stream",)
    assert len(diags) == 1 and "CRLF" in diags[0]


def test_a_nul_byte_ends_its_line_with_a_warning() -> None:
    # xinetd's lines are C strings: nothing after a NUL is read. Kept, the NUL reached
    # the server's argv and every connection failed in exec.
    items, diags = parse("# c\0 comment\nservice a\0b\n{\nserver_args = -u\0 -n\n"
                         "\0port = 9\nwait = no\n}\n")
    (entry,) = items
    assert isinstance(entry, RawEntry) and entry.name == "a"
    assert [(a.name, a.values) for a in entry.attrs] == [("server_args", ("-u",)),
                                                         ("wait", ("no",))]
    assert [d.split(": ", 2)[2] for d in diags] == [
        "NUL byte at column 10: the rest of the line is ignored, as xinetd does "
        "(read as 'service a')",
        "NUL byte at column 17: the rest of the line is ignored, as xinetd does "
        "(read as 'server_args = -u')",
        "NUL byte at column 1: the rest of the line is ignored, as xinetd does "
        "(read as '')"]


def test_c_locale_spaces_end_an_attribute_name() -> None:
    # xinetd skips \v and \f (any C-locale space) around the name and the operator; a
    # value's words are split on blanks and tabs only.
    items, diags = parse("service a\n{\n\v\tport\v= 1\nflags \f+= REUSE\vNODELAY\n"
                         "po\vrt = 2\n}\n")
    entry = items[0]
    assert isinstance(entry, RawEntry)
    assert [(a.name, a.op, a.values, a.col) for a in entry.attrs] == [
        ("port", "=", ("1",), 3), ("flags", "+=", ("REUSE\vNODELAY",), 1)]
    assert diags == ["f.conf:5:1: error: Bad operator for attribute: po (expected '=', '+=' "
                     "or '-=' after po, found 'rt'; service dropped)"]


def test_carriage_return_inside_line_stays_in_token() -> None:
    items, _ = parse("service a\n{\nuser = a\rb\n}\n")
    entry = items[0]
    assert isinstance(entry, RawEntry) and entry.attrs[0].values == ("a\rb",)


def test_lines_after_disable_yes_are_not_read() -> None:
    items, diags = parse("service a\n{\ndisable = yes\nsocket_type= stream\nfoo\n}\n"
                         "service b\n{\nwait = no\n}\n")
    assert diags == []
    a, b = items
    assert isinstance(a, RawEntry) and a.broken is None
    assert [x.name for x in a.attrs] == ["disable"]
    assert isinstance(b, RawEntry) and b.broken is None and b.attrs[0].name == "wait"


@pytest.mark.parametrize("value", ["no,", "maybe", "1"])
def test_lines_after_a_failed_disable_value_are_not_read(value: str) -> None:
    # xinetd 2.3.15.3 marks the service disabled at the failed value and reads no more
    # of the block: the lone name after it gets no `Nothing after attribute`.
    items, diags = parse(f"service a\n{{\ndisable = {value}\nnowait\nfoo= 1\n}}\n"
                         "service b\n{\nwait = no\n}\n")
    assert diags == []
    a, b = items
    assert isinstance(a, RawEntry) and a.broken is None
    assert [x.name for x in a.attrs] == ["disable"]
    assert isinstance(b, RawEntry) and b.broken is None and b.attrs[0].name == "wait"


def test_a_failed_disable_value_after_a_valid_one_does_not_stop_the_reading() -> None:
    items, _ = parse("service a\n{\ndisable = no\ndisable = maybe\nwait = no\n}\n")
    assert [[x.name for x in i.attrs] for i in items if isinstance(i, RawEntry)] == [
        ["disable", "disable", "wait"]]


def test_a_repeated_or_invalid_disable_line_does_not_stop_the_reading() -> None:
    items, _ = parse("service a\n{\ndisable = no\ndisable = yes\nwait = no\n}\n"
                     "service b\n{\ndisable = yes please\ndisable += yes\nwait = no\n}\n")
    assert [[x.name for x in i.attrs] for i in items if isinstance(i, RawEntry)] == [
        ["disable", "disable", "wait"], ["disable", "disable", "wait"]]


def test_disabled_block_without_closing_brace() -> None:
    items, diags = parse("service a\n{\ndisable = yes\nwait\nservice b\n{\nwait = no\n}\n"
                         "service c\n{\ndisable = YES\n")
    assert [i.name for i in items if isinstance(i, RawEntry) and i.broken is None] == [
        "a", "b", "c"]
    assert len(diags) == 2 and all(": warning: " in d for d in diags), diags
    assert diags[0].endswith("missing '}' before this line: the disabled service a ends "
                             "here and service b starts (xinetd 2.3.15.3 would skip on up "
                             "to the next lone '}', dropping service b with no message)")
    assert diags[1].endswith(": warning: missing } in last service entry (end of file inside "
                             "the disabled service c)")


def test_a_line_longer_than_xinetd_reads_is_read_whole_with_a_warning() -> None:
    words = " ".join(["10.0.0.1"] * 2500)            # 22499 bytes of only_from
    items, diags = parse(f"service a\n{{\nonly_from = {words}\nwait = no\n}}\n")
    entry = items[0]
    assert isinstance(entry, RawEntry) and entry.broken is None
    assert len(entry.attrs[0].values) == 2500
    assert len(diags) == 1 and "f.conf:3: warning: line is 22511 bytes long" in diags[0]
    _, diags = parse(f"service a\n{{\nonly_from = {words[:12000]}\n}}\n")
    assert diags == []


def test_a_comment_longer_than_xinetd_reads_stays_one_comment_with_a_warning() -> None:
    # xinetd reads the rest of such a comment as a line: it drops the entry around it
    # or, between entries, the next one (tests/compat/synthetic/deviation-long-comment.conf).
    words = " ".join(["10.0.0.1"] * 2500)
    items, diags = parse(f"service a\n{{\n#only_from = {words}\nwait = no\n}}\n"
                         f"# {words}\nservice b\n{{\nwait = no\n}}\n")
    assert [(i.name, [x.name for x in i.attrs]) for i in items if isinstance(i, RawEntry)
            and i.broken is None] == [("a", ["wait"]), ("b", ["wait"])]
    assert len(diags) == 2, diags
    assert "f.conf:3: warning: line is 22512 bytes long, a comment; read whole" in diags[0]
    assert "f.conf:6: warning: line is 22501 bytes long, a comment; read whole" in diags[1]
    _, diags = parse(f"# {words[:12000]}\nservice a\n{{\nwait = no\n}}\n")
    assert diags == []


def test_form_feed_and_vertical_tab_are_blank_as_for_xinetd() -> None:
    items, diags = parse("service a\n{\f\n\v\nwait = no\n\f\n}\v\n")
    assert diags == []
    entry = items[0]
    assert isinstance(entry, RawEntry) and entry.broken is None and len(entry.attrs) == 1


@pytest.mark.parametrize("char", ["\xa0", "\u2028", "\x1c", "\u3000"])
def test_unicode_space_is_text_not_blank(char: str) -> None:
    # xinetd's isspace() knows ASCII only: a line holding a no-break space (pasted from a
    # web page) is an attribute without operator, and '{' followed by one is no brace.
    items, diags = parse(f"service a\n{{\nwait = no\n{char}\n}}\n"
                         f"service b\n{{{char}\nwait = no\n}}\n"
                         f"service c\n{{\nwait = no\n}}{char}\n")
    broken = {i.name: i.broken for i in items if isinstance(i, RawEntry)}
    assert all(broken[name] for name in "abc"), broken
    assert any(f"Bad operator for attribute: {char} (nothing after {char!r}" in d for d in diags), diags
    assert any("Service b: missing '{' (on the line after service b" in d for d in diags), diags


def test_inline_comment_is_stripped_with_warning() -> None:
    items, diags = parse("service a\n{\nport = 20122 # comment here\nuser = ###SITE###\n}\n")
    entry = items[0]
    assert isinstance(entry, RawEntry)
    assert entry.attrs[0].values == ("20122",)
    assert entry.attrs[1].values == ("###SITE###",)
    assert len(diags) == 1 and "inline comment" in diags[0] and "f.conf:3:14" in diags[0]


def test_include_lines() -> None:
    items, diags = parse("include /a/b\nincludedir /etc/xinetd.d/\nincludedir\n")
    assert [(i.kind, i.path) for i in items if isinstance(i, RawInclude)] == [
        ("include", "/a/b"), ("includedir", "/etc/xinetd.d/")]
    assert "service name missing (includedir needs a path" in diags[0]


@pytest.mark.parametrize("keyword", ["include", "includedir"])
def test_include_without_a_path_says_xinetd_drops_the_next_entry(keyword: str) -> None:
    # xinetd: `service name missing`, then a skip to the next lone `}`: the next entry
    # is lost. pyxinetd reads it, and says so.
    items, diags = parse(f"{keyword}\nservice x\n{{\n}}\nservice y\n{{\n}}\n")
    assert [i.name for i in items if isinstance(i, RawEntry)] == ["x", "y"]
    assert diags[0].startswith(f"f.conf:1: error: service name missing ({keyword} needs")
    assert diags[1] == (f"f.conf:2: warning: service x starts here, where the lines "
                        f"skipped after the error above end {_XINETD_DROPS_IT}")


def test_header_keywords_fold_case_as_xinetd_does() -> None:
    # strcasecmp in the C locale: a long s is no s, a dotless i no i. `ſervice web` was
    # once read as a `defaults` entry, its attributes applied to every service.
    items, diags = parse("\u017fervice web\n{\n\tinstances = 1\n}\nSERVICE b\n{\n}\n")
    assert [(i.kind, i.name) for i in items if isinstance(i, RawEntry)] == [
        ("service", "b")]
    assert diags[0].startswith("f.conf:1: error: missing service keyword"), diags


def test_non_utf8_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "main"
    path.write_bytes("# \u65e5\u672c\u8a9e\n".encode("euc-jp") + b"service a\xff\n{\n}\n")
    from pyxinetd.config import load
    config = load(str(path), environ={})
    assert config.dropped and config.dropped[0].name == "a\udcff"


# -- include and includedir --------------------------------------------------------


def _svc_file(directory: Path, file_name: str, service: str, port: int) -> None:
    (directory / file_name).write_text(service_block(service, port=port))


def test_includedir_order_and_skipping(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for index, name in enumerate(["b", "Z_1", "a", "A", "x.conf", ".hidden", "old~"]):
        _svc_file(d, name, name.replace(".", "_").replace("~", "_"), 21000 + index)
    (d / "sub").mkdir()
    _svc_file(d / "sub", "inner", "inner", 21100)
    os.symlink(d / "a", d / "link")
    os.symlink(d / "missing", d / "dangling")
    config = load_text(tmp_path, f"includedir {d}\n")
    # The symlink to a regular file is read like any file (as a second "a": same port).
    assert [s.name for s in config.services] == ["A", "Z_1", "a", "b"]
    assert str(d / "link") in config.files
    assert any("dangling" in e and "Unable to stat includedir file" in e for e in errors(config))
    assert any("same port/protocol" in r for r in dropped_reasons(config))


def test_an_included_fifo_or_device_is_refused_not_waited_on(tmp_path: Path) -> None:
    # Opening a FIFO waits for a writer and /dev/zero never ends: either would stall the
    # load forever (xinetd waits in open() on the FIFO). The check runs in a child so
    # that a regression fails on the deadline instead of hanging the suite.
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    main = tmp_path / "main.conf"
    main.write_text(f"include {tmp_path}/pipe\ninclude /dev/zero\ninclude {tmp_path}/folder\n"
                    + service_block("after", port=21400))
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "-f", str(main)],
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    for expected in [
        f"{main}:1: error: Unable to open included configuration file: {tmp_path}/pipe "
        "(not a regular file)",
        f"{main}:2: error: Unable to open included configuration file: /dev/zero "
        "(not a regular file)",
        f"{main}:3: error: Unable to open included configuration file: {tmp_path}/folder "
        "(Is a directory)"]:
        assert expected in lines, done.stdout
    assert "1 service(s) to activate" in done.stdout


def test_a_skipped_name_that_is_no_leftover_is_mentioned(tmp_path: Path) -> None:
    # `telnet.conf` is skipped, as by xinetd, but said so: the usual reason a service
    # "does not load". Leftovers of editors and packages stay silent.
    d = tmp_path / "d"
    d.mkdir()
    names = ["telnet.conf", "echo.dpkg-dist", "ftp.rpmsave", "old~", ".hidden", "tftp.swp"]
    for index, name in enumerate(names):
        _svc_file(d, name, f"svc{index}", 21300 + index)
    config = load_text(tmp_path, f"includedir {d}\n")
    assert config.services == ()
    said = [str(x.message) for x in config.diagnostics if "is not read" in str(x.message)]
    assert said == [f"{d / 'telnet.conf'} is not read: includedir skips names with a '.' "
                    "in them, as xinetd does"]


def test_include_file_and_relative_errors(tmp_path: Path) -> None:
    other = tmp_path / "other.conf"
    other.write_text(service_block("inc", port=21200))
    config = load_text(tmp_path, f"include {other}\ninclude {tmp_path}/missing\n"
                                 f"includedir {tmp_path}/nodir\n")
    assert [s.name for s in config.services] == ["inc"]
    errs = errors(config)
    assert any("Unable to open included configuration file: " in e for e in errs)
    assert any("Unable to read included directory" in e for e in errs)


def test_a_deep_chain_of_distinct_files_is_no_loop(tmp_path: Path) -> None:
    from pyxinetd.config.loader import MAX_INCLUDE_DEPTH

    # The main file includes f1, f1 includes f2 ...: every file up to the bound (the main
    # file counts) is read; the first past it is refused with its own reason (it was
    # reported as including itself).
    count = MAX_INCLUDE_DEPTH
    for i in range(1, count + 1):
        (tmp_path / f"f{i}").write_text(service_block(f"s{i}", port=21400 + i)
                                        + f"include {tmp_path}/f{i + 1}\n")
    (tmp_path / f"f{count + 1}").write_text("")
    config = load_text(tmp_path, f"include {tmp_path}/f1\n")
    assert [s.name for s in config.services] == [f"s{i}" for i in range(1, count)]
    assert errors(config) == [
        f"{tmp_path}/f{count - 1}:11: error: {tmp_path}/f{count} not read: includes "
        f"nested more than {MAX_INCLUDE_DEPTH} deep (xinetd 2.3.15.3 would read on)"]


def test_include_loop_is_refused(tmp_path: Path) -> None:
    main = tmp_path / "xinetd.conf"
    config = load_text(tmp_path, f"include {main}\n" + service_block("a", port=21300))
    assert [s.name for s in config.services] == ["a"]
    assert any("includes itself" in e for e in errors(config))


def test_main_file_unreadable_raises_config_error(tmp_path: Path) -> None:
    from pyxinetd.config import load
    from pyxinetd.errors import ConfigError
    with pytest.raises(ConfigError):
        load(str(tmp_path / "absent"), environ={})


@pytest.mark.parametrize(("text", "words", "level"), [
    ("junk\n", "missing service keyword (expected 'service NAME'", "error"),
    ("}\n", "missing service keyword (stray '}'", "warning"),
    ("service a\nwait = no\n", "Service a: missing '{' (on the line after service a;", "error"),
    ("service a\n{\nwait=no\n}\n", "Attribute wait needs a space before operator (", "error"),
    ("service a\n{\n= no\n}\n", "Attribute  needs a space before operator (", "error"),
    ("service a\n{\nwait = no\nservice b\n{\n}\n",
     "Bad operator for attribute: service (missing '}' before this line: service a", "error"),
    # A top-level keyword in a block: the `}` above it is what is missing, not an operator.
    ("defaults\n{\ninstances = 60\n\nincludedir /etc/xinetd.d\n",
     "Bad operator for attribute: includedir (missing '}' before this line: defaults is "
     "incomplete, and includedir /etc/xinetd.d is not read; the rest of this defaults", "error"),
    ("service a\n{\nwait = no\ninclude /etc/x.conf\n",
     "Bad operator for attribute: include (missing '}' before this line: service a is "
     "incomplete, and include /etc/x.conf is not read; service dropped", "error"),
])
def test_syntax_errors_start_with_xinetds_words(text: str, words: str, level: str) -> None:
    # Log parsers grep xinetd's words: pyxinetd's line starts with them, its reason follows.
    _items, diags = parse(text)
    assert any(d.split(f": {level}: ", 1)[-1].startswith(words) and d.endswith(")")
               for d in diags), diags


def test_end_of_file_while_skipping_is_reported_in_xinetds_words() -> None:
    _items, diags = parse("service a\n{\n}\nssh stream tcp nowait root /x x\n")
    assert diags[-1] == ("f.conf:4: warning: missing } in last service entry (end of file "
                         "while skipping lines up to a lone '}')"), diags
    _items, diags = parse("junk\n}\n")
    assert not any("missing }" in d for d in diags), diags


@pytest.mark.parametrize("line", ["service = s1", "service += x", "defaults = 1",
                                  "service -= y"])
def test_a_header_keyword_before_an_operator_is_an_attribute_line(tmp_path: Path,
                                                                  line: str) -> None:
    # xinetd reads every line of a block as an attribute line: `bad service attribute`,
    # the line ignored, the service served. Read as a header, it once ended the entry
    # (service dropped) and started one named `=`.
    config = load_text(tmp_path, service_block("s1", line))
    assert [s.id for s in config.services] == ["s1"]
    word = line.split()[0]
    assert any(f"bad service attribute: {word}" in w for w in warnings(config)), \
        warnings(config)
    assert not errors(config)


def test_a_header_keyword_before_an_operator_in_defaults_is_an_attribute_line(
        tmp_path: Path) -> None:
    config = load_text(tmp_path, "defaults\n{\n\tservice = x\n\tinstances = 5\n}\n"
                       + service_block("s1"))
    assert [(s.id, s.instances) for s in config.services] == [("s1", 5)]
    assert any("attribute: service should not be in default section" in w
               for w in warnings(config)), warnings(config)
    assert not errors(config)
