"""inetd.conf: the classic one-line-per-service format, read into the loader's drafts.

Each entry is `[host:]name[/ver] socket_type protocol[,opts] wait[.N|/A/B/C] user[.:group]
server|internal [argv0 args...]`, on one line or continued on lines that start with a
blank (the BSD inetds' rule, see `continues`). xinetd 2.3.15.3 reads this file with
-inetd_compat (reference §7.1); pyxinetd follows it where it is sane and accepts the
forms the inetds people actually run (OpenBSD, FreeBSD, GNU) where xinetd rejects them or gets them
wrong. docs/compatibility.md ("inetd.conf") lists every difference.

An entry is turned into attribute lines (RawAttribute) and applied through the same
Applier as an xinetd block, so users, groups, protocols and server paths are checked
by the same parsers with the same messages; `pyxinetd convert` uses the same parser
(`InetdParser`) to write xinetd blocks, so both paths agree on what a line means.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from pyxinetd.config.attributes import Applier, Draft
from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.rawentries import RawAttribute
from pyxinetd.config.lookups import decimal, is_digits
from pyxinetd.config.model import DroppedEntry

Family = Literal["any", "ipv4", "ipv6"]

# The five classic builtins get xinetd's `NAME-SOCKTYPE` ids; others keep their name.
_CLASSIC_BUILTINS = ("echo", "discard", "chargen", "daytime", "time")
# inetd's "looping server" pause (RETRYTIME): 10 minutes.
INETD_RETRY_SECONDS = 600
_FAMILY_SUFFIX = re.compile(r"(tcp|udp)(4|6|46|6only)?")
_WAIT_RE = re.compile(r"(wait|nowait)(?:\.([0-9]+)|((?:/[0-9]+){1,3}))?")
_FIELDS = ("service name", "socket type", "protocol", "wait", "user", "server")
_SOCKET_TYPES = frozenset(("stream", "dgram", "raw", "rdm", "seqpacket"))


@dataclass(frozen=True)
class InetdEntry:
    """One service line of inetd.conf, its fields decoded but nothing looked up."""

    file: str
    line: int
    name: str
    socket_type: str
    protocol: str               # tcp, udp, or another /etc/protocols name
    family: Family
    wait: bool
    user: str
    group: str | None
    internal: bool
    server: str | None          # None for internal services
    argv: tuple[str, ...]       # fields 7.. (argv[0] first), possibly empty
    host: str | None = None     # bind address from a `host:` prefix
    rpc_version: str | None = None
    tcpmux: str | None = None   # "TCPMUX" or "TCPMUXPLUS" for `tcpmux/[+]name`
    cps: tuple[int, int] | None = None
    instances: int | None = None
    per_source: int | None = None
    cols: tuple[int, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        """The service id: xinetd's NAME-SOCKTYPE for the classic builtins."""
        if self.internal and self.name in _CLASSIC_BUILTINS:
            return f"{self.name}-{self.socket_type}"
        return self.name

    def col(self, index: int) -> int | None:
        return self.cols[index] if index < len(self.cols) else None


def _columns(text: str) -> list[tuple[int, str]]:
    return [(m.start() + 1, m.group()) for m in re.finditer(r"[^ \t]+", text)]


def _at(cols: tuple[int, ...], index: int) -> int | None:
    return cols[index] if index < len(cols) else None


def continues(line: str) -> bool:
    """True if `line`, coming right after a line of an entry, holds more words of that
    entry. The BSD inetds (OpenBSD, NetBSD, FreeBSD) read every line that starts with a
    blank or a tab that way; here only when the line cannot be an entry of its own (its
    second word is no socket type, so xinetd would reject it) and is no comment, so that
    an indented entry still stands alone as in xinetd."""
    if line[:1] not in (" ", "\t"):
        return False
    words = [w for _, w in _columns(line.rstrip("\r"))]
    if words and words[0].startswith("#"):
        return False
    return len(words) < 2 or words[1] not in _SOCKET_TYPES


class InetdParser:
    """Decodes lines; remembers OpenBSD's `host:` default between lines."""

    def __init__(self, file: str, sink: DiagnosticSink) -> None:
        self.file = file
        self.sink = sink
        self.default_host: str | None = None
        # The text of a lone `host:` that holds for the next entry only.
        self.entry_host: str | None = None

    def parse(self, text: str, number: int, continued: tuple[str, ...] = ()
              ) -> InetdEntry | None | str:
        """An entry; None for blank, comment and `host:` lines; else the reason it was skipped
        (already reported as an error). `continued`: the continuation lines of the entry
        (their words carry no column)."""
        stripped = text.strip(" \t\r")
        if not stripped or stripped.startswith("#"):
            return None
        first = _columns(text.rstrip("\r"))
        words: list[tuple[int | None, str]] = [(c, w) for c, w in first]
        for more in continued:
            words += [(None, w) for _, w in _columns(more.rstrip("\r"))]
        host = self.default_host
        if self.entry_host is not None:
            words.insert(0, (None, self.entry_host + ":"))
            first.insert(0, (0, ""))
            self.entry_host = None
        if words[0][1].endswith(":"):
            line_host = self._host(words[0][1][:-1], number, words[0][0])
            if isinstance(line_host, _Skip):
                return line_host.reason
            if len(words) == 1:
                self.default_host = line_host
                return None
            host = line_host
            # OpenBSD reads `host: name ...` (a blank after the colon, or the entry on the
            # indented lines after a lone `host:`) as `host:name ...`: the address is this
            # entry's, and the default of the following lines stays as it was.
            words = words[1:]
            first = first[1:]
        if len(words) < 6:
            missing = _FIELDS[len(words)]
            return self._skip(number, words[-1][0], (
                f"inetd.conf entry has {len(words)} field{'s' if len(words) != 1 else ''}, no "
                f"{missing}: expected `name socket_type protocol wait user server [argv0 args]`"))
        cols = tuple(c for c, _ in first)
        fields = [w for _, w in words]
        try:
            return self._entry(fields, cols, number, host)
        except _Skip as skip:
            return skip.reason

    # -- fields ------------------------------------------------------------------

    def _entry(self, fields: list[str], cols: tuple[int, ...], number: int,
               host: str | None) -> InetdEntry:
        name_field, socket_type, proto_field, wait_field, user_field, server = fields[:6]
        argv = tuple(fields[6:])
        if ":" in name_field:
            host_text, _, name_field = name_field.rpartition(":")
            parsed = self._host(host_text, number, _at(cols, 0))
            if isinstance(parsed, _Skip):
                raise parsed
            host = parsed
        protocol, family, rpc = self._protocol(proto_field, number, _at(cols, 2))
        name, rpc_version, tcpmux = self._name(name_field, rpc, number, _at(cols, 0))
        wait, cps, instances, per_source = self._wait(wait_field, number, _at(cols, 3))
        user, group = self._user(user_field, number, _at(cols, 4))
        internal = server == "internal"
        if internal and argv:
            self.sink.warning(self.file, number, f"arguments of internal service {name} "
                              f"ignored: {' '.join(argv)}", _at(cols, 6))
            argv = ()
        return InetdEntry(
            file=self.file, line=number, name=name, socket_type=socket_type,
            protocol=protocol, family=family, wait=wait, user=user, group=group,
            internal=internal, server=None if internal else server, argv=argv, host=host,
            rpc_version=rpc_version, tcpmux=tcpmux, cps=cps, instances=instances,
            per_source=per_source, cols=cols)

    def _host(self, text: str, number: int, col: int | None) -> str | None | _Skip:
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if text in ("*", ""):
            return None
        if "," in text:
            return _Skip(self._skip(number, col, (
                f"several listening addresses ({text}) are not supported: write one line "
                "per address")))
        return text

    def _protocol(self, text: str, number: int, col: int | None) -> tuple[str, Family, bool]:
        base, _, options = text.partition(",")
        if options:
            self.sink.warning(self.file, number, (
                f"socket options {options!r} ignored (pyxinetd sets no buffer sizes; xinetd "
                f"2.3.15.3 rejects the protocol {text!r})"), col)
        rpc = base.startswith("rpc/")
        if rpc:
            base = base[4:]
        if base == "unix":
            raise _Skip(self._skip(number, col, "UNIX-domain services (protocol unix) are "
                                                "not supported"))
        m = _FAMILY_SUFFIX.fullmatch(base)
        if m is None:
            return base, "any", rpc
        suffix = m.group(2) or ""
        family: Family = "ipv4" if suffix == "4" else "any" if suffix in ("", "46") else "ipv6"
        return m.group(1), family, rpc

    def _name(self, text: str, rpc: bool, number: int, col: int | None
              ) -> tuple[str, str | None, str | None]:
        name, slash, rest = text.partition("/")
        if rpc:
            if not slash or not rest:
                raise _Skip(self._skip(number, col, (
                    f"RPC service {name} has no version: expected NAME/VERSION or "
                    "NAME/LOW-HIGH")))
            return name, rest, None
        if not slash:
            return name, None, None
        if name == "tcpmux" and rest.lstrip("+"):
            kind = "TCPMUXPLUS" if rest.startswith("+") else "TCPMUX"
            return rest.lstrip("+"), None, kind
        raise _Skip(self._skip(number, col, (
            f"service name {text!r}: a '/' is only allowed for RPC services (protocol "
            "rpc/tcp or rpc/udp) and tcpmux/NAME")))

    def _wait(self, text: str, number: int, col: int | None
              ) -> tuple[bool, tuple[int, int] | None, int | None, int | None]:
        m = _WAIT_RE.fullmatch(text.lower())
        if m is None:
            raise _Skip(self._skip(number, col, (
                f"bad value for wait: {text!r}: expected wait or nowait, optionally with .N "
                "or /A/B/C")))
        wait = m.group(1) == "wait"
        cps = instances = per_source = None
        if m.group(2) is not None:
            per_minute = decimal(m.group(2)) or 0
            if per_minute > 0:
                cps = (per_minute, INETD_RETRY_SECONDS)
                self.sink.info(self.file, number, (
                    f"{text}: at most {per_minute} starts a minute in inetd; taken as cps = "
                    f"{per_minute} {INETD_RETRY_SECONDS} (paused 10 minutes after more than "
                    f"{per_minute} connections in one second)"))
        elif m.group(3) is not None:
            limits = [decimal(x) or 0 for x in m.group(3).split("/")[1:]]
            instances = limits[0] or None
            if len(limits) > 1 and limits[1]:
                self.sink.warning(self.file, number, (
                    f"{text}: the limit of {limits[1]} connections a minute per client "
                    "address has no pyxinetd equivalent; ignored"), col)
            if len(limits) > 2 and limits[2]:
                per_source = limits[2]
        return wait, cps, instances, per_source

    def _user(self, text: str, number: int, col: int | None) -> tuple[str, str | None]:
        user, slash, login_class = text.partition("/")
        if slash:
            self.sink.warning(self.file, number, (
                f"login class {login_class!r} ignored (pyxinetd has no login classes)"), col)
        if ":" in user:
            name, _, group = user.partition(":")
        elif "." in user and not is_digits(user):
            # As xinetd: the first '.' separates user and group.
            name, _, group = user.partition(".")
        else:
            name, group = user, ""
        if not name:
            raise _Skip(self._skip(number, col, f"no user name in {text!r}"))
        # Every inetd (OpenBSD, FreeBSD, NetBSD, netkit, GNU) looks both up by name only
        # (getpwnam, getgrnam) and ignores the service, as xinetd -inetd_compat does
        # (`Unknown user: 0`): a number here is not taken as an id.
        for kind, value in (("user", name), ("group", group)):
            if is_digits(value):
                raise _Skip(self._skip(number, col, (
                    f"{kind} {value!r} is a number: inetd.conf takes {kind} names only (inetd "
                    f"and xinetd look the name up and ignore the entry){_named(kind, value)}")))
        return name, group or None

    def _skip(self, number: int, col: int | None, reason: str) -> str:
        self.sink.error(self.file, number, reason + "; entry skipped", col)
        return reason


def _named(kind: str, number: str) -> str:
    """`: write NAME` with the account or group name of that id, if there is one."""
    try:
        name = (pwd.getpwuid(int(number)).pw_name if kind == "user"
                else grp.getgrgid(int(number)).gr_name)
    except (KeyError, OverflowError):
        return ""
    return f"; write {name!r}"


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_inetd_text(text: str, file: str, sink: DiagnosticSink
                     ) -> list[tuple[int, InetdEntry | str | None]]:
    """Every line of `text` as (line number, entry | skip reason | None for no entry).

    BSD inetds listen on IPv4 only for `tcp`, so their files pair each `tcp` line with
    a `tcp6` one. Here `tcp` is already dual-stack (as in xinetd), and the v6-only
    twin would clash with it: a `tcp6`/`udp6` line identical to a `tcp`/`udp` one but
    for the family gives no service of its own (an INFO says so), wherever it is.
    """
    parser = InetdParser(file, sink)
    items: list[tuple[int, InetdEntry | str | None]] = []
    lines = text.split("\n")
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
    dual = {_twin_key(e): e for _, e in items if isinstance(e, InetdEntry) and e.family == "any"}
    merged: list[tuple[int, InetdEntry | str | None]] = []
    for number, item in items:
        if isinstance(item, InetdEntry) and item.family == "ipv6":
            twin = dual.get(_twin_key(item))
            if twin is not None:
                sink.info(file, number, (
                    f"{item.name}/{item.protocol}6 is served by the dual-stack socket of line "
                    f"{twin.line} ({item.protocol} listens on IPv4 and IPv6 here); no separate "
                    "service"))
                item = None
        merged.append((number, item))
    return merged


def entry_lines(lines: list[str]) -> list[tuple[int, str, tuple[str, ...], bool]]:
    """(number, line, its continuation lines, False if the line is itself a continuation)
    for every line."""
    out: list[tuple[int, str, tuple[str, ...], bool]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        words = _columns(line.rstrip("\r"))
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
    words = _columns(line.rstrip("\r"))
    return len(words) == 1 and words[0][1].endswith(":")


def _holds_words(line: str) -> bool:
    """True for a line that starts with a blank or a tab and holds words (no comment)."""
    words = _columns(line.rstrip("\r"))
    return line[:1] in (" ", "\t") and bool(words) and not words[0][1].startswith("#")


def _twin_key(entry: InetdEntry) -> InetdEntry:
    return replace(entry, line=0, family="any", cols=())


def unwrap_tcpd(server: str, argv: tuple[str, ...], daemon_dir: str | None = None
                ) -> tuple[str, tuple[str, ...]] | None:
    """What `tcpd` would execute for this argv: (path, argv), or None if not a tcpd entry
    or the daemon's folder is unknown. Like tcpd, an absolute daemon path is run with its
    basename as argv[0]; a bare name is looked up in `daemon_dir`."""
    if os.path.basename(server) != "tcpd" or not argv:
        return None
    daemon = argv[0]
    if "/" in daemon:
        return daemon, (os.path.basename(daemon),) + argv[1:]
    if daemon_dir is None:
        return None
    return os.path.join(daemon_dir, daemon), argv


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
    draft = Draft("service", entry.name, entry.file, entry.line)
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
    for number, item in parse_inetd_text(text, file, sink):
        if item is None:
            continue
        if isinstance(item, str):
            dropped.append(DroppedEntry(None, None, file, number, item))
            continue
        drafts.append(entry_draft(item, applier))
        sink.debug(file, number, f"added service {item.name}")
    return drafts, dropped
