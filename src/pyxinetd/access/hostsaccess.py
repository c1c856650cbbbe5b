"""A hosts_access(5) evaluator: /etc/hosts.allow, then /etc/hosts.deny, first match wins.

Reference: peers-and-tcp-wrappers.md §5 (language, options of hosts_options(5), `%`
expansions); the vectors in shared/vectors/hosts_access.json are what tcpdmatch printed.

`evaluate()` is pure: it returns a Decision listing what the matched rule asks for
(spawn and twist commands already `%`-expanded, setenv pairs, banners, process
attributes) and leaves running them to the caller (pyxinetd.access.gate). Options are
parsed when a table is loaded but, as in libwrap, an option error only counts when its
rule matches, and then it denies. User names in `user` options are resolved at load
time, never per connection (NSS may block).

`HostsTables` keeps both files parsed and re-reads one only when its mtime, size or
inode changes, checked at most once per `recheck` seconds: no file I/O per connection.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pyxinetd.access.hostspatterns import Lookups, Request, client_match, daemon_match, \
    iter_expansions, list_match, patterns_need_names, split_at, tokens

DEFAULT_ALLOW = "/etc/hosts.allow"
DEFAULT_DENY = "/etc/hosts.deny"
# Characters kept as they are in `%` expansions; anything else becomes '_' so that
# the result cannot confuse a shell (percent_x in libwrap).
_SAFE = set("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

Access = Literal["granted", "denied", "delegated"]

# keyword -> (needs a value, may have a value, must be last, %-expanded)
_OPTIONS: dict[str, tuple[bool, bool, bool, bool]] = {
    "allow": (False, False, True, False),
    "deny": (False, False, True, False),
    "twist": (True, True, True, True),
    "spawn": (True, True, False, True),
    "aclexec": (True, True, False, True),
    "setenv": (True, True, False, True),
    "severity": (True, True, False, False),
    "banners": (True, True, False, False),
    "nice": (False, True, False, False),
    "umask": (True, True, False, False),
    "user": (True, True, False, False),
    "group": (True, True, False, False),
    "rfc931": (False, True, False, False),
    "keepalive": (False, False, False, False),
    "linger": (True, True, False, False),
}


@dataclass(frozen=True)
class Option:
    keyword: str            # as written (the trace shows it so)
    value: str | None
    error: str | None = None
    # `user`/`group` resolved at load time.
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class Rule:
    label: str              # hosts.allow or hosts.deny
    line: int               # last physical line of the (continued) rule
    daemons: tuple[str, ...]
    clients: tuple[str, ...]
    options: tuple[Option, ...] | None   # None: two-field rule

    @property
    def where(self) -> str:
        return f"{self.label} line {self.line}"


@dataclass(frozen=True)
class Table:
    label: str
    rules: tuple[Rule, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def needs_names(self) -> bool:
        return any(patterns_need_names(list(r.clients)) for r in self.rules) or any(
            "@" in d[1:] and patterns_need_names([split_at(d[1:], "@")[1] or ""])
            for r in self.rules for d in r.daemons)


@dataclass(frozen=True)
class Decision:
    access: Access
    matched: str | None = None               # "hosts.allow line 3", None: no rule
    trace: tuple[str, ...] = ()              # "option: ..." / "error: ..." lines
    spawn: tuple[str, ...] = ()
    twist: str | None = None
    setenv: tuple[tuple[str, str], ...] = ()
    banners: str | None = None
    nice: int | None = None
    umask: int | None = None
    uid: int | None = None
    gid: int | None = None
    keepalive: bool = False
    linger: int | None = None
    aclexec: tuple[str, ...] = ()

    @property
    def granted(self) -> bool:
        return self.access != "denied"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash-newline continuations; number each rule by its last line."""
    result: list[tuple[int, str]] = []
    pending = ""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        result.append((number, pending + line))
        pending = ""
    if pending:
        result.append((len(text.split("\n")), pending))
    return result


def _split_options(text: str) -> list[str]:
    """Fields separated by ':' not escaped with a backslash; blanks trimmed."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] == ":":
            current.append(":")
            i += 2
            continue
        if char == ":":
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    fields.append("".join(current).strip())
    return fields


def _resolve_user(value: str) -> tuple[int | None, int | None, str | None]:
    user, _, group = value.partition(".")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None, None, f'unknown user: "{user}"'
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return None, None, f'unknown group: "{group}"'
    return entry.pw_uid, gid, None


def _parse_option(field_text: str, is_last: bool, where: str) -> Option:
    match = re.match(r"([^\s=]*)\s*(?:=\s*)?(.*)$", field_text, re.S)
    assert match is not None
    key, value_text = match.group(1), match.group(2).strip()
    value = value_text or None
    if key == "":
        return Option(key, value, f"{where}: missing option name")
    spec = _OPTIONS.get(key.lower())
    if spec is None:
        return Option(key, value, f'{where}: bad option name: "{key}"')
    needs, may, last, _ = spec
    if value is None and needs:
        return Option(key, value, f'{where}: option "{key}" requires value')
    if value is not None and not may:
        return Option(key, value, f'{where}: option "{key}" requires no value')
    if last and not is_last:
        return Option(key, value, f'{where}: option "{key}" must be at end')
    lowered = key.lower()
    if lowered == "user" and value is not None:
        uid, gid, error = _resolve_user(value)
        return Option(key, value, f"{where}: {error}" if error else None, uid, gid)
    if lowered == "group" and value is not None:
        try:
            return Option(key, value, gid=grp.getgrnam(value).gr_gid)
        except KeyError:
            return Option(key, value, f'{where}: unknown group: "{value}"')
    if lowered in ("nice", "linger", "rfc931") and value is not None \
            and not re.fullmatch(r"-?\d+", value):
        return Option(key, value, f'{where}: bad {lowered} value: "{value}"')
    if lowered == "umask" and value is not None and not re.fullmatch(r"[0-7]+", value):
        return Option(key, value, f'{where}: bad umask value: "{value}"')
    return Option(key, value)


def parse_table(text: str, label: str) -> Table:
    """Parse one file's text; `label` (hosts.allow / hosts.deny) names it in messages."""
    rules: list[Rule] = []
    warnings: list[str] = []
    for number, line in _logical_lines(text):
        if line.startswith("#") or line.strip() == "":
            continue
        daemons, rest = split_at(line, ":")
        if rest is None:
            warnings.append(f'{label}, line {number}: missing ":" separator')
            continue
        clients, option_text = split_at(rest, ":")
        options: tuple[Option, ...] | None = None
        if option_text is not None:
            where = f"{label}, line {number}"
            fields = _split_options(option_text)
            options = tuple(_parse_option(f, i == len(fields) - 1, where)
                            for i, f in enumerate(fields))
        rules.append(Rule(label, number, tuple(tokens(daemons)), tuple(tokens(clients)),
                          options))
    return Table(label, tuple(rules), tuple(warnings))


def expand(text: str, request: Request) -> str:
    """`%` sequences of hosts_options(5); unsafe characters of each expansion -> '_'."""
    out: list[str] = []
    for literal, letter in iter_expansions(text):
        if letter is None:
            out.append(literal)
            continue
        value = _expansion(letter, request)
        if letter != "%":
            value = "".join(c if c in _SAFE else "_" for c in value)
        out.append(value)
    return "".join(out)


def _expansion(letter: str, request: Request) -> str:
    client, server = request.client, request.server
    if letter == "a":
        return client.addr_text
    if letter == "A":
        return server.addr_text
    if letter == "c":
        return f"{request.user}@{client.info}" if request.user else client.info
    if letter == "d":
        return request.daemon
    if letter == "h":
        return client.info
    if letter == "H":
        return server.info
    if letter == "n":
        return client.name_text
    if letter == "N":
        return server.name_text
    if letter == "p":
        return str(request.pid)
    if letter == "r":
        return str(client.port)
    if letter == "R":
        return str(server.port)
    if letter == "s":
        info = server.info
        return request.daemon if info == "unknown" else f"{request.daemon}@{info}"
    if letter == "u":
        return request.user_text
    if letter == "%":
        return "%"
    return ""


def _rule_matches(rule: Rule, request: Request, lookups: Lookups) -> bool:
    return list_match(list(rule.daemons), lambda p: daemon_match(p, request, lookups)) \
        and list_match(list(rule.clients), lambda p: client_match(p, request, lookups))


def _apply_options(rule: Rule, request: Request, file_access: Access,
                   serving: bool) -> Decision:
    """Process the matched rule's options left to right, as libwrap does."""
    assert rule.options is not None
    trace: list[str] = []
    fields: dict[str, object] = {}
    spawn: list[str] = []
    setenv: list[tuple[str, str]] = []
    aclexec: list[str] = []
    access: Access = file_access
    for option in rule.options:
        if option.error is not None:
            trace.append(f"error: {option.error}")
            return Decision("denied", rule.where, tuple(trace), spawn=tuple(spawn))
        key = option.keyword.lower()
        spec = _OPTIONS[key]
        value = option.value
        if value is not None and spec[3]:
            value = expand(value, request)
        trace.append(f"option: {option.keyword} {value or ''}")
        if key == "allow":
            access = "granted"
        elif key == "deny":
            access = "denied"
        elif key == "twist":
            fields["twist"] = value
            access = "delegated"
        elif key == "spawn" and value is not None:
            spawn.append(value)
        elif key == "setenv" and value is not None:
            name, _, text = value.partition(" ")
            setenv.append((name, text.lstrip()))
        elif key == "aclexec" and value is not None:
            if serving:
                trace.append(f"error: {rule.label}, line {rule.line}: "
                             "aclexec is not supported")
                return Decision("denied", rule.where, tuple(trace), spawn=tuple(spawn))
            aclexec.append(value)
        elif key == "banners":
            fields["banners"] = value
        elif key == "nice":
            fields["nice"] = int(value) if value is not None else 10
        elif key == "umask" and value is not None:
            fields["umask"] = int(value, 8)
        elif key == "user":
            fields["uid"] = option.uid
            fields["gid"] = option.gid
        elif key == "group":
            fields["gid"] = option.gid
        elif key == "keepalive":
            fields["keepalive"] = True
        elif key == "linger" and value is not None:
            fields["linger"] = int(value)
        # severity and rfc931 are accepted; pyxinetd logs at its own levels and does
        # not ask identd from the access check.
    return Decision(access, rule.where, tuple(trace), spawn=tuple(spawn),
                    setenv=tuple(setenv), aclexec=tuple(aclexec), **fields)  # type: ignore[arg-type]


def evaluate(allow: Table, deny: Table, request: Request, lookups: Lookups, *,
             serving: bool = True) -> Decision:
    """The verdict for one request. `serving=False` predicts like tcpdmatch (aclexec is
    shown but not run); with `serving=True` an aclexec option is an error."""
    for table, access in ((allow, "granted"), (deny, "denied")):
        for rule in table.rules:
            if _rule_matches(rule, request, lookups):
                if rule.options is None:
                    return Decision(access, rule.where)  # type: ignore[arg-type]
                return _apply_options(rule, request, access, serving)  # type: ignore[arg-type]
    return Decision("granted")


@dataclass
class _Loaded:
    key: tuple[int, int, int, int] | None
    table: Table


@dataclass
class HostsTables:
    """Both files, parsed, re-read when they change (checked at most every `recheck` s)."""

    allow_path: str = DEFAULT_ALLOW
    deny_path: str = DEFAULT_DENY
    recheck: float = 1.0
    clock: Callable[[], float] = time.monotonic
    on_warning: Callable[[str], None] | None = None
    _allow: _Loaded | None = field(default=None, init=False)
    _deny: _Loaded | None = field(default=None, init=False)
    _checked_at: float = field(default=float("-inf"), init=False)
    _empty: bool = field(default=True, init=False)
    _needs_names: bool = field(default=False, init=False)

    def current(self) -> tuple[Table, Table]:
        now = self.clock()
        if self._allow is None or self._deny is None or now - self._checked_at >= self.recheck:
            self._checked_at = now
            self._allow = self._load(self.allow_path, "hosts.allow", self._allow)
            self._deny = self._load(self.deny_path, "hosts.deny", self._deny)
            self._empty = not self._allow.table.rules and not self._deny.table.rules
            self._needs_names = self._allow.table.needs_names or self._deny.table.needs_names
        return self._allow.table, self._deny.table

    @property
    def empty(self) -> bool:
        """No rule in either file (after `current()`): every request is granted."""
        self.current()
        return self._empty

    @property
    def needs_names(self) -> bool:
        self.current()
        return self._needs_names

    def _load(self, path: str, label: str, old: _Loaded | None) -> _Loaded:
        try:
            st = os.stat(path)
        except OSError:
            return _Loaded(None, Table(label))
        key = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        if old is not None and old.key == key:
            return old
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return _Loaded(None, Table(label))
        table = parse_table(text, label)
        if self.on_warning is not None:
            for warning in table.warnings:
                self.on_warning(warning)
        return _Loaded(key, table)
