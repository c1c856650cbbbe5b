"""`pyxinetd convert`: inetd.conf lines in, xinetd `service` blocks out.

xinetd ships two converters, both wrong in ways that matter (reference §7.2, §7.3):
itox drops the argv[0] field even when it differs from the server's name and stops
half-way through the output on a tcpd line without -daemon_dir; xconv.pl puts
NAMEINARGS on internal services, which xinetd then refuses, and skips RPC lines.
This one reads each line with the same parser as -inetd_compat (config/inetdconf.py),
so a converted file yields the services -inetd_compat would have run, except that
tcpd is unwrapped (pyxinetd applies hosts.allow/hosts.deny itself) and the port of
each service still comes from /etc/services.

Comments and blank lines are kept; a line that cannot be converted is reported with
its line number, and written back commented out so nothing is silently lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pyxinetd.config.diagnostics import Diagnostic, DiagnosticSink, Severity
from pyxinetd.config.inetdconf import InetdEntry, entry_lines, parse_inetd_text, unwrap_tcpd


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


def service_block(entry: InetdEntry, daemon_dir: str | None, sink: DiagnosticSink) -> list[str]:
    """The xinetd block for one entry."""
    # `disable = no` comes first: after an attribute that fails, xinetd 2.3.15.3 would
    # take it as "run the service anyway, with that attribute unset".
    lines = [f"service {entry.name}", "{", _line("disable", "no")]
    types: list[str] = []
    flags: list[str] = []
    if entry.internal:
        types.append("INTERNAL")
        lines.append(_line("id", entry.id))
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
                f"service {entry.name}: tcpd runs {argv[0]!r} from its own daemon folder; "
                "kept behind tcpd (give --daemon-dir DIR to run the daemon directly)"))
        lines.append(_line("server", server))
        if argv and argv[0] == os.path.basename(server):
            argv = argv[1:]
        elif argv:
            flags.append("NAMEINARGS")
        if argv:
            lines.append(_line("server_args", *argv))
    if entry.family == "ipv4":
        flags.append("IPv4")
    elif entry.family == "ipv6":
        flags.append("IPv6")
        lines.append(_line("v6only", "yes"))
    if flags:
        lines.append(_line("flags", *flags))
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


def convert(text: str, file: str = "<stdin>", *, daemon_dir: str | None = None) -> Conversion:
    """Convert the inetd.conf `text`; `file` names it in the diagnostics."""
    sink = DiagnosticSink()
    source = text.split("\n")
    out: list[str] = [f"# Converted from {file} by pyxinetd convert.", ""]
    skipped = 0
    # The lines each entry goes on over; their words are in its block (or comment).
    continued = {number: more for number, _, more, read in entry_lines(source) if read}
    for number, item in parse_inetd_text(text, file, sink):
        original = source[number - 1].rstrip("\r")
        if number not in continued:
            continue
        if isinstance(item, InetdEntry):
            out += service_block(item, daemon_dir, sink)
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

