"""`pyxinetd convert`: inetd.conf lines in, xinetd `service` blocks out.

xinetd ships two converters, both wrong in ways that matter (reference §7.2, §7.3):
itox drops the argv[0] field even when it differs from the server's name and stops
half-way through the output on a tcpd line without -daemon_dir; xconv.pl puts
NAMEINARGS on internal services, which xinetd then refuses, and skips RPC lines.
This one reads each line with the same parser as -inetd_compat (config/inetdconf.py
and config/inetdentry.py), so a converted file yields the services -inetd_compat would
have run, except that tcpd is unwrapped (pyxinetd applies hosts.allow/hosts.deny
itself) and the port of each service still comes from /etc/services.

Comments and blank lines are kept; a line that cannot be converted is reported with
its line number, and written back commented out so nothing is silently lost.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from dataclasses import dataclass

from pyxinetd.config.diagnostics import Diagnostic, DiagnosticSink, Severity
from pyxinetd.config.inetdconf import (entry_lines, inetd_lines, read_inetd_lines,
                                      served_by_twin, twin_lines, unserved_twin)
from pyxinetd.config.inetdentry import InetdEntry, unwrap_tcpd
from pyxinetd.textbytes import quoted


_BLANKS = " \t"


@dataclass(frozen=True)
class Conversion:
    text: str                          # the xinetd configuration
    diagnostics: tuple[Diagnostic, ...]
    skipped: int                       # lines that could not be converted

    def problems(self) -> list[str]:
        """The diagnostics worth telling the user (info and above), as text."""
        return [str(d) for d in self.diagnostics if d.severity is not Severity.DEBUG]


def _line(name: str, *values: str) -> str:
    return f"\t{name:<15} = {' '.join(values)}"


def _protocol_word(entry: InetdEntry) -> str:
    return entry.protocol + {"any": "", "ipv4": "4", "ipv6": "6"}[entry.family]


def _listening_family(entry: InetdEntry) -> str:
    """The family an entry's socket takes: its address's when it names one, else the
    protocol's (`any`: one dual-stack socket for both)."""
    if entry.host is not None and entry.family == "any":
        try:
            return "ipv6" if ipaddress.ip_address(entry.host).version == 6 else "ipv4"
        except ValueError:
            return "any"        # a host name: either family
    return entry.family


def _overlaps(a: InetdEntry, b: InetdEntry) -> bool:
    """True if the two entries would listen on one port and protocol with overlapping
    addresses (the same one, or one of them on all) of overlapping families (a dual-stack
    socket takes the port on both, a v6-only one on IPv6 only)."""
    fa, fb = _listening_family(a), _listening_family(b)
    return ((a.name, a.socket_type, a.protocol, a.rpc_version, a.tcpmux)
            == (b.name, b.socket_type, b.protocol, b.rpc_version, b.tcpmux)
            and (fa == fb or "any" in (fa, fb))
            and (a.host == b.host or a.host is None or b.host is None))


def shadowed(entries: list[InetdEntry]) -> list[tuple[InetdEntry, InetdEntry]]:
    """The entries that cannot be served, each with the earlier entry that takes its
    port (see _overlaps). An entry that cannot be served takes no port from those after
    it."""
    served: list[InetdEntry] = []
    out: list[tuple[InetdEntry, InetdEntry]] = []
    for entry in entries:
        earlier = next((e for e in served if _overlaps(e, entry)), None)
        if earlier is None:
            served.append(entry)
        else:
            out.append((entry, earlier))
    return out


def _fold_served_twins(items: list[tuple[int, InetdEntry | str | None]], file: str,
                       sink: DiagnosticSink) -> list[tuple[int, InetdEntry | str | None]]:
    """Each tcp6/udp6 twin folded into its dual-stack line, whose block serves both, as
    -inetd_compat serves it; but a twin whose line cannot be served (an entry before it
    takes the port: an IPv4-only `tcp4` line, say) stays a block of its own, as
    -inetd_compat then serves it on its own (pyxinetd.config.loader)."""
    twins = twin_lines(items)
    unserved = {entry.line for entry, _ in shadowed(
        [e for n, e in items if isinstance(e, InetdEntry) and n not in twins])}
    folded: list[tuple[int, InetdEntry | str | None]] = []
    for number, item in items:
        if number in twins and isinstance(item, InetdEntry):
            if twins[number] in unserved:
                sink.info(file, number, unserved_twin(item.name, item.protocol, twins[number]))
            else:
                sink.info(file, number, served_by_twin(item.name, item.protocol, twins[number]))
                item = None
        folded.append((number, item))
    return folded


def _telling_apart(group: list[InetdEntry]) -> list[list[str]]:
    """The fewest of (socket type, protocol as written, address) that tell the entries
    of `group` apart, in that order of preference; each as one value per entry."""
    parts = [[e.socket_type for e in group], [_protocol_word(e) for e in group],
             [e.host or "any" for e in group]]
    varying = [p for p in parts if len(set(p)) > 1]
    distinct = len(set(zip(*varying)))
    for size in range(1, len(varying) + 1):
        for chosen in itertools.combinations(varying, size):
            if len(set(zip(*chosen))) == distinct:
                return list(chosen)
    return varying


def block_ids(entries: list[InetdEntry], sink: DiagnosticSink) -> dict[int, str]:
    """The `id` to write for each entry (by line); entries not listed keep the default.

    itox and xconv.pl give every block of one service name the same id (the name, or
    NAME-SOCKTYPE for a builtin); xinetd then serves them under one id, which logs and
    reconfiguration cannot tell apart (and pyxinetd warns about). Here the blocks that
    would share an id get the default one followed by the fewest of what tells them
    apart: the socket type, the protocol as written (`udp`, `udp6`), the address (`any`
    for none) (`comsat-127.0.0.1`, `comsat-::1`; `time-stream`, `time-dgram`). Entries
    whose addresses overlap on one port cannot all be served: they are reported, and
    numbered (`-2`, ...) where nothing else tells them apart.
    """
    ids: dict[int, str] = {e.line: e.id for e in entries if e.internal}
    groups: dict[str, list[InetdEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.id, []).append(entry)
    # Whatever their ids: a builtin and an external server of one name, or a tcp line
    # and a tcp6 line that is no twin of it, take one port too.
    for entry, earlier in shadowed(entries):
        sink.warning(entry.file, entry.line, (
            f"service {entry.name} listens on the port and protocol of the entry of "
            f"line {earlier.line}, on the same or an overlapping address: only the "
            "first can be served"))
    taken = {base for base, group in groups.items() if len(group) == 1}
    for base, group in groups.items():
        if len(group) == 1:
            continue
        parts = _telling_apart(group)
        for index, entry in enumerate(group):
            sid = "-".join([base] + [p[index] for p in parts])
            candidate, number = sid, 2
            while candidate in taken:
                candidate, number = f"{sid}-{number}", number + 1
            taken.add(candidate)
            ids[entry.line] = candidate
    return ids


def service_block(entry: InetdEntry, daemon_dir: str | None, sink: DiagnosticSink,
                  sid: str | None = None) -> list[str]:
    """The xinetd block for one entry; `sid`: its id, when not the default."""
    # `disable = no` comes first: after an attribute that fails, xinetd 2.3.15.3 would
    # take it as "run the service anyway, with that attribute unset".
    lines = [f"service {entry.name}", "{", _line("disable", "no")]
    types: list[str] = []
    flags: list[str] = []
    if sid is not None:
        lines.append(_line("id", sid))
    if entry.internal:
        types.append("INTERNAL")
    if entry.rpc_version is not None:
        types.append("RPC")
    if entry.tcpmux is not None:
        types += [entry.tcpmux, "UNLISTED"]
    if types:
        lines.append(_line("type", *types))
    if entry.rpc_version is not None:
        lines.append(_line("rpc_version", entry.rpc_version))
    lines += [_line("socket_type", entry.socket_type), _line("protocol", entry.protocol),
              _line("wait", "yes" if entry.wait else "no"), _line("user", entry.user)]
    if entry.group is not None:
        lines.append(_line("group", entry.group))
    lines.append(_line("groups", "yes"))
    if entry.server is not None:
        server, argv = entry.server, entry.argv
        unwrapped = unwrap_tcpd(server, argv, daemon_dir)
        if unwrapped is not None:
            server, argv = unwrapped
        elif os.path.basename(server) == "tcpd" and argv:
            sink.warning(entry.file, entry.line, (
                f"service {entry.name}: tcpd runs {quoted(argv[0])} from its own daemon folder; "
                "kept behind tcpd (give --daemon-dir DIR to run the daemon directly)"))
        lines.append(_line("server", server))
        named = bool(argv) and argv[0] != os.path.basename(server)
        if argv and not named:
            argv = argv[1:]
        argv, comment = _comment_free(argv)
        if comment:
            # inetd passes them on; in an xinetd file they would start a comment.
            sink.warning(entry.file, entry.line, (
                f"service {entry.name}: arguments {quoted(' '.join(comment))} not written: a "
                "word starting with '#' after the first value of server_args starts a "
                "comment in an xinetd file (-inetd_compat passes them to the server)"))
            lines.append(f"\t# inetd.conf line {entry.line} also passes: {' '.join(comment)}")
        if named and argv:
            flags.append("NAMEINARGS")
        # `flags` goes before `server_args`: xinetd 2.3.15.3 builds the argv when it
        # reads server_args, and a NAMEINARGS read after it leaves an empty argv that
        # crashes every child (SIGSEGV; docs/compatibility.md).
        server_args = _line("server_args", *argv) if argv else None
    else:
        server_args = None
    if entry.family == "ipv4":
        flags.append("IPv4")
    elif entry.family == "ipv6":
        flags.append("IPv6")
        lines.append(_line("v6only", "yes"))
    if flags:
        lines.append(_line("flags", *flags))
    if server_args is not None:
        lines.append(server_args)
    if entry.host is not None:
        lines.append(_line("bind", entry.host))
    if entry.cps is not None:
        lines.append(_line("cps", *(str(x) for x in entry.cps)))
    if entry.instances is not None:
        lines.append(_line("instances", str(entry.instances)))
    if entry.per_source is not None:
        lines.append(_line("per_source", str(entry.per_source)))
    lines.append("}")
    return lines


def _comment_free(argv: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the words server_args can hold, the words from where an xinetd file would see a
    comment): a word starting with `#` after the first, or a lone `#` (as
    pyxinetd.config.grammar reads a value list)."""
    for index, word in enumerate(argv):
        if word.startswith("#") and (index > 0 or word == "#"):
            return argv[:index], argv[index:]
    return argv, ()


def convert(text: str, file: str = "<stdin>", *, daemon_dir: str | None = None) -> Conversion:
    """Convert the inetd.conf `text`; `file` names it in the diagnostics."""
    sink = DiagnosticSink()
    source = inetd_lines(text, file, sink)
    out: list[str] = [f"# Converted from {file} by pyxinetd convert.", ""]
    skipped = 0
    # The lines each entry goes on over; their words are in its block (or comment).
    continued = {number: more for number, _, more, read in entry_lines(source) if read}
    items = _fold_served_twins(read_inetd_lines(source, file, sink), file, sink)
    ids = block_ids([item for _, item in items if isinstance(item, InetdEntry)], sink)
    for number, item in items:
        original = source[number - 1].rstrip("\r")
        if number not in continued:
            continue
        if isinstance(item, InetdEntry):
            out += service_block(item, daemon_dir, sink, ids.get(number))
            out.append("")
        elif isinstance(item, str):
            skipped += 1
            out.append(f"# not converted ({item}):")
            out.append(f"# {original}")
            out += [f"# {line.rstrip(chr(13))}" for line in continued[number]]
        elif stripped := original.strip(_BLANKS):
            # A comment, or a line that needs no block of its own (a `host:` default,
            # which every following block carries as `bind`; a tcp6 twin of a tcp line).
            out.append(stripped if stripped.startswith("#") else f"# {stripped}")
        elif out and out[-1] != "":
            out.append("")
    while out and out[-1] == "":
        out.pop()
    return Conversion("\n".join(out) + "\n", tuple(sink.items), skipped)

