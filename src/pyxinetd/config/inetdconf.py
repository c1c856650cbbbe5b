"""inetd.conf: the classic one-line-per-service format, read into the loader's drafts.

Each entry is `[host:]name[/ver] socket_type protocol[,opts] wait[.N|/A/B/C] user[.:group]
server|internal [argv0 args...]`, on one line or continued on lines that start with a
blank (the BSD inetds' rule, see `continues`). xinetd 2.3.15.3 reads this file with
-inetd_compat (reference §7.1); pyxinetd follows it where it is sane and accepts the
forms the inetds people actually run (OpenBSD, FreeBSD, GNU) where xinetd rejects them or gets them
wrong. docs/compatibility.md ("inetd.conf") lists every difference.

This module reads the file: which lines make up an entry (continuation lines, OpenBSD's
lone `host:` lines), the tcp6/udp6 twins of dual-stack lines, and the drafts. Each
entry's fields are decoded by pyxinetd.config.inetdentry. An entry is turned into
attribute lines (RawAttribute) and applied through the same Applier as an xinetd
block, so users, groups, protocols and server paths are checked by the same parsers
with the same messages; `pyxinetd convert` uses the same parser (`InetdParser`) to
write xinetd blocks, so both paths agree on what a line means.
"""

from __future__ import annotations

import os
from dataclasses import replace

from pyxinetd.config.attributes import Applier, Draft
from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.inetdentry import SOCKET_TYPES, InetdEntry, InetdParser, columns
from pyxinetd.config.linesyntax import XINETD_LINE_BYTES
from pyxinetd.config.model import DroppedEntry
from pyxinetd.config.rawentries import RawAttribute
from pyxinetd.textbytes import ascii_lower, quoted


# xinetd 2.3.15.3 reads inetd.conf through a 16 KiB buffer (XINETD_LINE_BYTES), but cuts
# the file's first line at 8 KiB and a later one where the buffer ends: from 8 KiB on, a
# line may be cut.
INETD_LINE_BYTES = XINETD_LINE_BYTES // 2


def continues(line: str) -> bool:
    """True if `line`, coming right after a line of an entry, holds more words of that
    entry. The BSD inetds (OpenBSD, NetBSD, FreeBSD) read every line that starts with a
    blank or a tab that way; here only when the line cannot be an entry of its own (its
    second word is no socket type, so xinetd would reject it) and is no comment, so that
    an indented entry still stands alone as in xinetd."""
    if line[:1] not in (" ", "\t"):
        return False
    words = [w for _, w in columns(line.rstrip("\r"))]
    if words and words[0].startswith("#"):
        return False
    # In any case, as the entry parser and xinetd read the socket type.
    return len(words) < 2 or ascii_lower(words[1]) not in SOCKET_TYPES


def inetd_lines(text: str, file: str, sink: DiagnosticSink) -> list[str]:
    """The lines of `text` as xinetd reads them, CRLF line ends taken as LF, long lines
    whole (both with a warning).

    A NUL byte ends its line, as in xinetd's C strings: kept, it would reach a value (an
    argv string no exec takes). Said unless only a comment loses its end, as for an
    xinetd file (pyxinetd.config.grammar).
    """
    lines = text.split("\n")
    crlf_warned = False
    for index, line in enumerate(lines):
        number = index + 1
        if line.endswith("\r"):
            line = line[:-1]
            if not crlf_warned:
                crlf_warned = True
                sink.warning(file, number, (
                    "file has CRLF (DOS) line endings; read as if they were LF (xinetd "
                    "2.3.15.3 would keep the \\r in the last field of every line)"))
        cut = line.find("\0")
        if cut >= 0:
            line = line[:cut]
            kept = line.strip(" \t")
            if not kept.startswith("#"):
                sink.warning(file, number, (
                    f"NUL byte at column {cut + 1}: the rest of the line is ignored, as "
                    f"xinetd does (read as {quoted(kept)})"))
        if len(line) >= INETD_LINE_BYTES // 4 and not line.lstrip(" \t").startswith("#"):
            size = len(line.encode("utf-8", "surrogateescape"))
            if size >= INETD_LINE_BYTES:
                sink.warning(file, number, (
                    f"line is {size} bytes long; read whole (xinetd 2.3.15.3 reads 8 to 16 "
                    "KiB of a line, depending on where it sits in the file: it runs the "
                    "entry with the arguments up to there and takes the rest for a line of "
                    "its own)"))
        lines[index] = line
    return lines


def parse_inetd_text(text: str, file: str, sink: DiagnosticSink
                     ) -> list[tuple[int, InetdEntry | str | None]]:
    """Every line of `text` as (line number, entry | skip reason | None for no entry),
    tcp6/udp6 twins included (see `twin_lines`)."""
    return read_inetd_lines(inetd_lines(text, file, sink), file, sink)


def read_inetd_lines(lines: list[str], file: str, sink: DiagnosticSink
                     ) -> list[tuple[int, InetdEntry | str | None]]:
    """Every line (from `inetd_lines`) as (line number, entry | skip reason | None for no
    entry), twins included."""
    parser = InetdParser(file, sink)
    items: list[tuple[int, InetdEntry | str | None]] = []
    for number, line, continued, read in entry_lines(lines):
        if _is_lone_host(line) and number < len(lines) and _holds_words(lines[number]):
            # OpenBSD reads a lone `host:` on over the indented line after it: the address
            # is that entry's only (its `skip()` goes on over lines that start with a blank).
            parser.entry_host = line.strip(" \t\r")[:-1]
            sink.info(file, number, f"address for the entry of line {number + 1} only (it "
                      "starts with a blank, so OpenBSD inetd reads it as the rest of this "
                      "line); the default address of the lines after it is unchanged")
            items.append((number, None))
            continue
        items.append((number, parser.parse(line, number, continued) if read else None))
        for offset, more in enumerate(continued, start=1):
            if more.strip(" \t\r"):
                # Visible, since a mistyped indented entry is read this way too.
                sink.info(file, number + offset, f"continues the entry of line {number} "
                          "(it starts with a blank and is no entry of its own)")
    return items


def twin_lines(items: list[tuple[int, InetdEntry | str | None]]) -> dict[int, int]:
    """The twins of dual-stack lines: line of a tcp6/udp6 entry -> line of its tcp/udp
    twin.

    BSD inetds listen on IPv4 only for `tcp`, so their files pair each `tcp` line with
    a `tcp6` one. Here `tcp` is already dual-stack (as in xinetd), and the v6-only
    twin would clash with it: a `tcp6`/`udp6` line identical to a `tcp`/`udp` one but
    for the family is served by that line's socket, wherever it is. The twin is the
    first dual-stack line of its key: a later one repeats it and is dropped as a
    duplicate.
    """
    dual: dict[InetdEntry, int] = {}
    for number, e in items:
        if isinstance(e, InetdEntry) and e.family == "any":
            dual.setdefault(_twin_key(e), number)
    return {number: dual[_twin_key(e)] for number, e in items
            if isinstance(e, InetdEntry) and e.family == "ipv6" and _twin_key(e) in dual}


def served_by_twin(name: str, protocol: str, twin: int, *, dual: bool = True) -> str:
    """The INFO line of a tcp6/udp6 line served by the socket of line `twin`: a
    dual-stack one, or (`dual` False: a v6-only or IPv6 bind address) IPv6 only."""
    if not dual:
        return (f"{name}/{protocol}6 is served by the IPv6 socket of line {twin}; no "
                "separate service")
    return (f"{name}/{protocol}6 is served by the dual-stack socket of line {twin} "
            f"({protocol} listens on IPv4 and IPv6 here); no separate service")


def twin_on_ipv4(name: str, protocol: str, twin: int, bind: str | None) -> str:
    """Why a tcp6/udp6 line is not served: the socket of line `twin`, its dual-stack
    twin in BSD files, listens on IPv4 only here (an IPv4 `bind`, `flags = IPv4` in
    the defaults), and a v6-only socket of its own would take that line's port."""
    where = f"on {bind}" if bind is not None else "on IPv4"
    return (f"{name}/{protocol}6 not served: line {twin}'s {protocol} entry, which would "
            f"serve IPv6 too, listens {where} only here (the defaults' bind or flags); "
            "xinetd 2.3.15.3 does not serve it either")


def unserved_twin(name: str, protocol: str, twin: int) -> str:
    """The INFO line of a tcp6/udp6 line whose dual-stack line `twin` is not served (a
    duplicate, or rejected): it is checked, and served, as a service of its own."""
    return (f"{name}/{protocol}6 is a service of its own (IPv6 only): line {twin}, whose "
            "dual-stack socket would serve it, is not served")


def entry_lines(lines: list[str]) -> list[tuple[int, str, tuple[str, ...], bool]]:
    """(number, line, its continuation lines, False if the line is itself a continuation)
    for every line."""
    out: list[tuple[int, str, tuple[str, ...], bool]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        words = columns(line.rstrip("\r"))
        end = index + 1
        # Entries continue; comments, blank lines and lone `host:` lines do not.
        if words and not words[0][1].startswith("#") and not _is_lone_host(line):
            while end < len(lines) and continues(lines[end]):
                end += 1
        out.append((index + 1, line, tuple(lines[index + 1:end]), True))
        out += [(n + 1, lines[n], (), False) for n in range(index + 1, end)]
        index = end
    return out


def _is_lone_host(line: str) -> bool:
    words = columns(line.rstrip("\r"))
    return len(words) == 1 and words[0][1].endswith(":")


def _holds_words(line: str) -> bool:
    """True for a line that starts with a blank or a tab and holds words (no comment)."""
    words = columns(line.rstrip("\r"))
    return line[:1] in (" ", "\t") and bool(words) and not words[0][1].startswith("#")


def _twin_key(entry: InetdEntry) -> InetdEntry:
    return replace(entry, line=0, family="any", cols=())


def _slot(entry: InetdEntry) -> tuple[object, ...]:
    """What one listening socket serves: a service's name, protocol and address."""
    return (entry.name, entry.socket_type, entry.protocol, entry.host, entry.rpc_version,
            entry.tcpmux)



# --------------------------------------------------------------------------- drafts


def _attributes(entry: InetdEntry) -> list[tuple[str, tuple[str, ...], int | None]]:
    """The xinetd attribute lines equivalent to `entry` under -inetd_compat, with the
    column of the field each comes from."""
    attrs: list[tuple[str, tuple[str, ...], int | None]] = [
        ("socket_type", (entry.socket_type,), entry.col(1)),
        ("protocol", (entry.protocol,), entry.col(2)),
        ("wait", ("yes" if entry.wait else "no",), entry.col(3)),
        ("user", (entry.user,), entry.col(4)),
    ]
    if entry.group is not None:
        attrs.append(("group", (entry.group,), entry.col(4)))
    types = []
    flags = []
    if entry.internal:
        types.append("INTERNAL")
        attrs.append(("id", (entry.id,), entry.col(0)))
    else:
        assert entry.server is not None
        attrs.append(("server", (entry.server,), entry.col(5)))
        # inetd hands over argv[0] itself; with none written, the server's name.
        argv = entry.argv or (os.path.basename(entry.server),)
        attrs.append(("server_args", argv, entry.col(6) or entry.col(5)))
        flags += ["REUSE", "NAMEINARGS", "NOLIBWRAP"]
    if entry.rpc_version is not None:
        types.append("RPC")
        attrs.append(("rpc_version", (entry.rpc_version,), entry.col(0)))
    if entry.tcpmux is not None:
        types += [entry.tcpmux, "UNLISTED"]
    if entry.family == "ipv4":
        flags.append("IPv4")
    elif entry.family == "ipv6":
        flags.append("IPv6")
        attrs.append(("v6only", ("yes",), entry.col(2)))
    if types:
        attrs.append(("type", tuple(types), entry.col(0)))
    if flags:
        attrs.append(("flags", tuple(flags), entry.col(5)))
    if entry.host is not None:
        attrs.append(("bind", (entry.host,), entry.col(0)))
    if entry.cps is not None:
        attrs.append(("cps", tuple(str(x) for x in entry.cps), entry.col(3)))
    if entry.instances is not None:
        attrs.append(("instances", (str(entry.instances),), entry.col(3)))
    if entry.per_source is not None:
        attrs.append(("per_source", (str(entry.per_source),), entry.col(3)))
    attrs.append(("groups", ("yes",), entry.col(4)))
    return attrs


def entry_draft(entry: InetdEntry, applier: Applier) -> Draft:
    """The service draft of one entry. Nothing is copied from `defaults` now: inetd.conf
    services only get the defaults applied after all files are read (reference §1.6)."""
    draft = Draft("service", entry.name, entry.file, entry.line, inetd=True)
    for name, values, col in _attributes(entry):
        applier.apply(draft, RawAttribute(name, "=", values, entry.file, entry.line, col or 1))
    return draft


def read_inetd_conf(text: str, file: str, applier: Applier, sink: DiagnosticSink
                    ) -> tuple[list[Draft], list[DroppedEntry]]:
    """The drafts of every entry of an inetd.conf text, and the entries skipped."""
    # Same look-ups and caches; only the messages about users and groups differ.
    applier = Applier(replace(applier.ctx, numeric_ids=False), applier.sink)
    drafts: list[Draft] = []
    dropped: list[DroppedEntry] = []
    items = read_inetd_lines(inetd_lines(text, file, sink), file, sink)
    # Twins stay services here: whether the dual-stack line serves them is known only
    # once duplicates are out (pyxinetd.config.loader), and if it does not (an xinetd
    # file has the port on IPv4), the v6-only line listens on its own.
    twins = twin_lines(items)
    # The dual-stack line of each service slot: a v6-only line that is no twin of it
    # (other arguments, user...) would take the port from it, so it yields.
    slots = {_slot(e): n for n, e in items if isinstance(e, InetdEntry) and e.family == "any"}
    for number, item in items:
        if item is None:
            continue
        if isinstance(item, str):
            dropped.append(DroppedEntry(None, None, file, number, item))
            continue
        draft = entry_draft(item, applier)
        draft.twin_of = twins.get(number)
        if item.family == "ipv6" and draft.twin_of is None:
            # xinetd rejects tcp6/udp6 (`Protocol tcp6 not in /etc/protocols`) and serves
            # the tcp/udp line on both families: so here, whichever comes first, if that
            # line is served (pyxinetd.config.loader decides).
            draft.yields_to = slots.get(_slot(item))
        drafts.append(draft)
        sink.debug(file, number, f"added service {item.name}", always=True)
    return drafts, dropped


def yielded(name: str, protocol: str, line: int) -> str:
    """Why a tcp6/udp6 line that is no twin is not served beside line `line`."""
    return (f"{name}/{protocol}6 not served: line {line}'s {protocol} entry listens on IPv4 "
            f"and IPv6 for this service (xinetd 2.3.15.3 rejects {protocol}6 and serves "
            "that line)")


def unyielded(name: str, protocol: str, line: int) -> str:
    """The INFO line of a tcp6/udp6 line served on its own: line `line` is not served."""
    return (f"{name}/{protocol}6 is a service of its own (IPv6 only): line {line}'s "
            f"{protocol} entry, which would take its port, is not served")
