"""One inetd.conf entry: its fields decoded (`InetdEntry`), by `InetdParser`.

An entry is `[host:]name[/ver] socket_type protocol[,opts] wait[.N|/A/B/C] user[.:group]
server|internal [argv0 args...]`. The parser reads the words of one entry (its line and
any continuation lines, which pyxinetd.config.inetdconf gathers) into an InetdEntry,
checking each field; nothing is looked up here (users, groups, protocols and server
paths are checked later by the attribute parsers, with the xinetd file's messages). A
field that makes the entry unusable is reported as an error and the entry skipped;
docs/compatibility.md ("inetd.conf") lists where this differs from xinetd -inetd_compat.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass, field
from typing import Literal

from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.lookups import decimal, is_digits
from pyxinetd.config.values import INT_MAX, ULONG_MAX
from pyxinetd.textbytes import ascii_lower, quoted

Family = Literal["any", "ipv4", "ipv6"]

# The five classic builtins get xinetd's `NAME-SOCKTYPE` ids; others keep their name.
_CLASSIC_BUILTINS = ("echo", "discard", "chargen", "daytime", "time")
# inetd's "looping server" pause (RETRYTIME): 10 minutes.
INETD_RETRY_SECONDS = 600
_FAMILY_SUFFIX = re.compile(r"(tcp|udp)(4|6|46|6only)?")
_WAIT_RE = re.compile(r"(wait|nowait)(?:\.([0-9]+)|((?:/[0-9]+){1,3}))?")
_FIELDS = ("service name", "socket type", "protocol", "wait", "user", "server")
SOCKET_TYPES = frozenset(("stream", "dgram", "raw", "rdm", "seqpacket"))


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
            # Socket types are read in any case (`STREAM`), as by xinetd.
            return f"{self.name}-{self.socket_type.lower()}"
        return self.name

    def col(self, index: int) -> int | None:
        return self.cols[index] if index < len(self.cols) else None


def columns(text: str) -> list[tuple[int, str]]:
    return [(m.start() + 1, m.group()) for m in re.finditer(r"[^ \t]+", text)]


def _at(cols: tuple[int, ...], index: int) -> int | None:
    return cols[index] if index < len(cols) else None



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
        first = columns(text.rstrip("\r"))
        words: list[tuple[int | None, str]] = [(c, w) for c, w in first]
        for more in continued:
            words += [(None, w) for _, w in columns(more.rstrip("\r"))]
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
        internal = ascii_lower(server) == "internal"     # strcasecmp, as xinetd's
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
                f"socket options {quoted(options)} ignored (pyxinetd sets no buffer sizes; xinetd "
                f"2.3.15.3 rejects the protocol {quoted(text)})"), col)
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
            f"service name {quoted(text)}: a '/' is only allowed for RPC services (protocol "
            "rpc/tcp or rpc/udp) and tcpmux/NAME")))

    def _wait(self, text: str, number: int, col: int | None
              ) -> tuple[bool, tuple[int, int] | None, int | None, int | None]:
        m = _WAIT_RE.fullmatch(text.lower())
        if m is None:
            raise _Skip(self._skip(number, col, (
                f"bad value for wait: {quoted(text)}: expected wait or nowait, optionally with .N "
                "or /A/B/C")))
        wait = m.group(1) == "wait"
        cps = instances = per_source = None
        if m.group(2) is not None:
            per_minute = self._within(decimal(m.group(2)) or 0, ULONG_MAX, text,
                                      "starts a minute", number, col)
            if per_minute > 0:
                cps = (per_minute, INETD_RETRY_SECONDS)
                self.sink.info(self.file, number, (
                    f"{text}: at most {per_minute} starts a minute in inetd; taken as cps = "
                    f"{per_minute} {INETD_RETRY_SECONDS} (paused 10 minutes after more than "
                    f"{per_minute} connections in one second)"))
        elif m.group(3) is not None:
            limits = [decimal(x) or 0 for x in m.group(3).split("/")[1:]]
            # The first and the third become `instances` and `per_source`.
            for index, what in ((0, "servers at once"), (2, "servers per client address")):
                if index < len(limits):
                    limits[index] = self._within(limits[index], INT_MAX, text, what,
                                                 number, col)
            instances = limits[0] or None
            if len(limits) > 1 and limits[1]:
                self.sink.warning(self.file, number, (
                    f"{text}: the limit of {limits[1]} connections a minute per client "
                    "address has no pyxinetd equivalent; ignored"), col)
            if len(limits) > 2 and limits[2]:
                per_source = limits[2]
        return wait, cps, instances, per_source

    def _within(self, value: int, maximum: int, text: str, what: str, number: int,
                col: int | None) -> int:
        """`value`, or 0 (no limit) with a warning when the xinetd attribute it becomes
        cannot hold it: the entry is served without that limit, as xinetd 2.3.15.3
        serves it (it ignores every suffix of the wait field), rather than dropped."""
        if value <= maximum:
            return value
        self.sink.warning(self.file, number, (
            f"{text}: {value} {what} is more than the largest limit ({maximum}); "
            "ignored: no limit"), col)
        return 0

    def _user(self, text: str, number: int, col: int | None) -> tuple[str, str | None]:
        user, slash, login_class = text.partition("/")
        if slash:
            self.sink.warning(self.file, number, (
                f"login class {quoted(login_class)} ignored (pyxinetd has no login classes)"), col)
        if ":" in user:
            name, separator, group = user.partition(":")
        elif "." in user and not is_digits(user):
            # As xinetd: the first '.' separates user and group.
            name, separator, group = user.partition(".")
        else:
            name, separator, group = user, "", ""
        if not name:
            raise _Skip(self._skip(number, col, f"no user name in {quoted(text)}"))
        if separator and not group:
            # xinetd: `Unknown group: ` and no service; not the user's own group.
            raise _Skip(self._skip(number, col, (
                f"no group name after {quoted(name + separator)}: write {quoted(name)} for the "
                "user's own group")))
        # Every inetd (OpenBSD, FreeBSD, NetBSD, netkit, GNU) looks both up by name only
        # (getpwnam, getgrnam) and ignores the service, as xinetd -inetd_compat does
        # (`Unknown user: 0`): a number here is not taken as an id.
        for kind, value in (("user", name), ("group", group)):
            if is_digits(value):
                raise _Skip(self._skip(number, col, (
                    f"{kind} {quoted(value)} is a number: inetd.conf takes {kind} names "
                    "only (inetd "
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
    return f"; write {quoted(name)}"


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason



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
