"""The hosts.allow and hosts.deny tables: reading, parsing, and keeping them current.

Reference: peers-and-tcp-wrappers.md §5. `parse_table()` turns one file's text into
rules, joining continued lines and numbering each rule by its last line, as libwrap does;
options are parsed here (pyxinetd.access.hostsoptions) but, as in libwrap, an option
error only counts when its rule matches (pyxinetd.access.hostsaccess), and then it denies.

`HostsTables` keeps both files parsed and re-reads one only when its mtime, ctime, size
or inode changes, checked at most once per `recheck` seconds: no file I/O per connection.
A missing file is empty; one that exists but cannot be opened (no permission, a symbolic
link loop) is an error, as in libwrap: the scan of it fails at once (see `Rule.broken`).
"""

from __future__ import annotations

import errno
import re
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyxinetd.access.hostsoptions import C_SPACES, CLIENT_NAME_LETTERS, ENDPOINT_LETTERS, \
    SERVER_NAME_LETTERS, Option, parse_option
from pyxinetd.access.hostspatterns import daemon_may_match, pattern_files, \
    patterns_need_names, split_at, tokens
from pyxinetd.files import open_problem, read_regular

__all__ = ["DEFAULT_ALLOW", "DEFAULT_DENY", "HostsTables", "LINE_BUFFER", "Rule", "Table",
           "TablesView", "parse_table"]

# Daemon names whose scan plans a table keeps (one per service's libwrap name, usually).
MAX_DAEMON_PLANS = 256
DEFAULT_ALLOW = "/etc/hosts.allow"
DEFAULT_DENY = "/etc/hosts.deny"


@dataclass(frozen=True)
class Rule:
    label: str              # hosts.allow or hosts.deny
    line: int               # last physical line of the (continued) rule
    daemons: tuple[str, ...]
    clients: tuple[str, ...]
    options: tuple[Option, ...] | None   # None: two-field rule
    # A line libwrap cannot read whole (no final newline, or longer than its buffer):
    # reaching it ends the scan of the file with an error, which hosts.deny turns into
    # a refusal and hosts.allow into "no match" (checked with Debian's libwrap).
    broken: bool = False
    source: str = ""        # the file's path, for messages (libwrap names it so)

    @property
    def where(self) -> str:
        return f"{self.label} line {self.line}"

    @property
    def place(self) -> str:
        """The rule as libwrap's warnings name it: "/etc/hosts.allow, line 3"."""
        return f"{self.source or self.label}, line {self.line}"

    @property
    def server_hosts(self) -> list[str]:
        """The host parts of the `daemon@host` patterns."""
        return [split_at(d[1:], "@")[1] or "" for d in self.daemons if "@" in d[1:]]

    @property
    def letters(self) -> frozenset[str]:
        """Every `%` letter the options expand."""
        return frozenset().union(*(o.letters for o in self.options or ()))

    @property
    def client_names(self) -> bool:
        """Matching or expanding this rule may need the client's host name."""
        return bool(patterns_need_names(list(self.clients))
                    or self.letters & CLIENT_NAME_LETTERS)

    @property
    def server_names(self) -> bool:
        """Matching or expanding this rule may need the server's (local) host name."""
        return bool(patterns_need_names(self.server_hosts)
                    or self.letters & SERVER_NAME_LETTERS)

    def may_serve(self, daemon: str) -> bool:
        """Whether the daemon list may match requests for `daemon`, whatever the
        server's host (hostspatterns.daemon_may_match)."""
        return daemon_may_match(list(self.daemons), daemon)


# A client pattern libwrap compares with the client's address as text, and only so:
# digits and dots, neither first nor last (no `10.` prefix, no `.domain`, no name).
_LITERAL_ADDRESS = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def _literal_rule(rule: Rule) -> bool:
    """Whether `rule` can match a client only when one of its client patterns is that
    client's address as written, and its daemon list reads nothing but the daemon's
    name: fail2ban's `ALL: 192.0.2.7` and DenyHosts' `sshd: 192.0.2.7`, appended by
    the ten thousand."""
    return (not rule.broken and bool(rule.clients)
            and all(_LITERAL_ADDRESS.fullmatch(c) for c in rule.clients)
            and all("@" not in d[1:] for d in rule.daemons))


@dataclass(frozen=True)
class LiteralRun:
    """Consecutive literal rules (_literal_rule) with an index from each client address
    they name to their positions: a request looks at the rules naming its address, in
    order, instead of testing every rule in turn."""

    rules: tuple[Rule, ...]
    by_address: dict[str, tuple[int, ...]]
    # The rules with options: only their `%` letters can need the client's or the
    # server's name (the patterns are addresses and daemon names).
    optioned: tuple[Rule, ...] = ()

    def names(self, daemon: str) -> tuple[bool, bool]:
        """Whether a rule of the run that may serve `daemon` may need the client's and
        the server's names."""
        rules = [rule for rule in self.optioned if rule.may_serve(daemon)]
        return (any(rule.client_names for rule in rules),
                any(rule.server_names for rule in rules))

    def candidates(self, address: str) -> tuple[Rule, ...]:
        """The rules of the run that may match a client whose address (as the patterns
        compare it) is `address`, in their order."""
        return tuple(self.rules[i] for i in self.by_address.get(address, ()))


# Shorter runs are tested rule by rule: an index pays only when it skips many.
LITERAL_RUN_MIN = 8


def _literal_run(rules: list[Rule]) -> LiteralRun:
    index: dict[str, list[int]] = {}
    for position, rule in enumerate(rules):
        for address in dict.fromkeys(rule.clients):
            index.setdefault(address, []).append(position)
    return LiteralRun(tuple(rules), {a: tuple(p) for a, p in index.items()},
                      tuple(rule for rule in rules if rule.options))


def scan_plan(rules: tuple[Rule, ...]) -> tuple[Rule | LiteralRun, ...]:
    """`rules` in order, runs of literal rules grouped with their index."""
    plan: list[Rule | LiteralRun] = []
    run: list[Rule] = []

    def flush() -> None:
        if len(run) >= LITERAL_RUN_MIN:
            plan.append(_literal_run(run))
        else:
            plan.extend(run)
        run.clear()
    for rule in rules:
        if _literal_rule(rule):
            run.append(rule)
            continue
        flush()
        plan.append(rule)
    flush()
    return tuple(plan)


@dataclass(frozen=True)
class Table:
    label: str
    rules: tuple[Rule, ...] = ()
    warnings: tuple[str, ...] = ()
    # The rules as scan_plan groups them, made once per table (a one-element holder,
    # empty until the first request).
    _grouped: list[tuple[Rule | LiteralRun, ...]] = field(
        default_factory=list, compare=False, repr=False)
    # daemon name -> the plan's steps that may apply to its requests: its runs of
    # address rules (each candidate is still tested whole, its daemon list included)
    # and the other rules that may serve it (Rule.may_serve; broken rules kept, they
    # end the scan). A table of tens of thousands of rules for other daemons, or of
    # addresses, costs a request little, and a new daemon name little more.
    _plans: dict[str, tuple[Rule | LiteralRun, ...]] = field(
        default_factory=dict, compare=False, repr=False)

    def plan_for(self, daemon: str) -> tuple[Rule | LiteralRun, ...]:
        plan = self._plans.get(daemon)
        if plan is None:
            if not self._grouped:
                self._grouped.append(scan_plan(self.rules))
            if len(self._plans) >= MAX_DAEMON_PLANS:
                self._plans.clear()
            plan = tuple(step for step in self._grouped[0]
                         if isinstance(step, LiteralRun) or step.broken
                         or step.may_serve(daemon))
            self._plans[daemon] = plan
        return plan

    @property
    def client_names(self) -> bool:
        """Matching or expanding may need the client's host name."""
        return any(r.client_names for r in self.rules)

    @property
    def server_names(self) -> bool:
        """Matching or expanding may need the server's (local) host name."""
        return any(r.server_names for r in self.rules)

    @property
    def client_files(self) -> tuple[tuple[str, str], ...]:
        """The `/file` lists of the client patterns, each with the place of its rule:
        their words may need the client's name (files_need_names)."""
        return tuple((path, r.place) for r in self.rules
                     for path in pattern_files(list(r.clients)))

    @property
    def server_files(self) -> tuple[tuple[str, str], ...]:
        """The `/file` lists of the `daemon@host` patterns, with their rules' places."""
        return tuple((path, r.place) for r in self.rules
                     for path in pattern_files(r.server_hosts))

    @property
    def endpoints(self) -> bool:
        """A rule reads the server address or a port: a `daemon@host` pattern, one of
        `%A %H %N %R %r %s`, or a banner file (whose text is only known when sent)."""
        return any(r.server_hosts or r.letters & ENDPOINT_LETTERS
                   or any(o.keyword.lower() == "banners" for o in r.options or ())
                   for r in self.rules)


# libwrap reads a rule into a buffer of this many bytes (continuations included); a rule
# that does not fit, or a last line without its newline, is an error (see `Rule.broken`).
LINE_BUFFER = 2048


def _logical_lines(data: bytes) -> list[tuple[int, str, bool]]:
    """The rules as libwrap's xgets() reads them: fgets() into a buffer of LINE_BUFFER
    bytes, each piece kept up to its first NUL (strlen), backslash-newline joining the
    next line. The flag is False for a rule libwrap cannot read whole: one that does not
    fit in its buffer with the final newline, or that the end of the file cuts before a
    newline; nothing after it is returned (libwrap's scan stops there).

    So a NUL byte drops the rest of what fgets() read with it, and the next line, its
    newline unseen, is joined to the line. A rule is numbered by the line it ends on,
    and decoded on its own, a byte that is not UTF-8 kept as a surrogate escape (so a
    Latin-1 host name matches, and a command or path gets the file's bytes)."""
    result: list[tuple[int, str, bool]] = []
    pos = 0
    newlines = 0        # read so far: the number of the line a rule ends on
    while pos < len(data):
        text, room, whole = b"", LINE_BUFFER, False
        while room > 1 and pos < len(data):
            end = data.find(b"\n", pos, pos + room - 1)
            stop = end + 1 if end >= 0 else min(len(data), pos + room - 1)
            newlines += end >= 0
            piece = data[pos:stop].split(b"\0", 1)[0]
            pos = stop
            if piece.endswith(b"\\\n"):
                piece = piece[:-2]
            elif piece.endswith(b"\n"):
                text, whole = text + piece[:-1], True
                break
            text += piece
            room -= len(piece)
        if not whole and text == b"":
            break       # xgets() returns NULL at the end of the file when it kept nothing
        number = newlines + (0 if whole else 1)
        result.append((number, text.decode("utf-8", errors="surrogateescape"), whole))
        if not whole:
            break
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
            fields.append("".join(current).strip(C_SPACES))
            current = []
        else:
            current.append(char)
        i += 1
    fields.append("".join(current).strip(C_SPACES))
    return fields


def parse_table(text: str | bytes, label: str, path: str | None = None) -> Table:
    """Parse one file's text (or its bytes, as read); `label` (hosts.allow / hosts.deny) says which file it is,
    `path` (the label when not given) names it in error messages, as libwrap does."""
    source = path or label
    rules: list[Rule] = []
    warnings: list[str] = []
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    for number, line, whole in _logical_lines(data):
        if not whole:
            warnings.append(f"{source}, line {number}: missing newline or line too long "
                            f"(longer than {LINE_BUFFER - 1} bytes): "
                            + ("every request reaching it is refused" if label == "hosts.deny"
                               else "the rest of the file is ignored"))
            rules.append(Rule(label, number, (), (), None, broken=True))
            break
        if line.startswith("#") or line.strip(" \t\r\n") == "":
            continue
        daemons, rest = split_at(line, ":")
        if rest is None:
            warnings.append(f'{source}, line {number}: missing ":" separator')
            continue
        clients, option_text = split_at(rest, ":")
        options: tuple[Option, ...] | None = None
        if option_text is not None:
            where = f"{source}, line {number}"
            fields = _split_options(option_text)
            options = tuple(parse_option(f, i == len(fields) - 1, where)
                            for i, f in enumerate(fields))
        rules.append(Rule(label, number, tuple(tokens(daemons)), tuple(tokens(clients)),
                          options, source=source))
    return Table(label, tuple(rules), tuple(warnings))


@dataclass
class _Loaded:
    key: tuple[int, ...] | None
    table: Table


def _unopenable(path: str, label: str, reason: str) -> Table:
    """A table libwrap cannot open (any error but ENOENT): its scan fails before the
    first rule, so hosts.deny refuses every request and hosts.allow matches none."""
    consequence = ("every request is refused" if label == "hosts.deny"
                   else "no rule of it applies")
    return Table(label, (Rule(label, 0, (), (), None, broken=True, source=path),),
                 (f"cannot open {path}: {reason}: {consequence}",))


@dataclass(frozen=True)
class TablesView:
    """Both tables as one request reads them, with what their rules need: the names a
    request waits for and the rules that then judge it come from the same view, so a
    file rewritten meanwhile cannot bring in a rule by a name never looked up."""

    allow: Table
    deny: Table
    empty: bool = True              # no rule in either file: every request is granted
    endpoints: bool = False         # a rule may read the server address or a port
    _needs: dict[str, _DaemonNeeds] = field(default_factory=dict, compare=False,
                                            repr=False)

    def names(self, daemon: str) -> tuple[bool, bool]:
        """Whether the rules that may apply to requests for `daemon` may need the
        client's and the server's host names. libwrap looks a name up only when a rule
        whose daemon list matched reads it, so one `sshd: .example.com` rule does not
        make every other service's client wait for a reverse lookup."""
        return self._for(daemon).names

    def files(self, daemon: str
              ) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """The `/file` lists of the client and of the `daemon@host` patterns of the
        rules that may apply to requests for `daemon`, each with its rule's place: the
        lists a request reads to know whether it needs a name (files_need_names). Those
        of other daemons' rules are never read for it (libwrap reads a list only when
        the rule's daemon matched), so a service they do not name reads no file."""
        return self._for(daemon).files

    def _for(self, daemon: str) -> _DaemonNeeds:
        needs = self._needs.get(daemon)
        if needs is None:
            # The tables' scan plans hold the rules that may serve the daemon (and the
            # broken ones, left out here); a run of address rules tells its needs whole.
            steps = [step for t in (self.allow, self.deny) for step in t.plan_for(daemon)]
            # A run holds other daemons' rules too: its needs are those of its rules
            # that may serve this one (one `sshd: ADDRESS: spawn ... %n` rule must not
            # make every other service's client wait for its name).
            run_needs = [step.names(daemon) for step in steps if isinstance(step, LiteralRun)]
            rules = [step for step in steps
                     if isinstance(step, Rule) and step.may_serve(daemon)]
            needs = _DaemonNeeds(
                (any(r.client_names for r in rules) or any(c for c, _ in run_needs),
                 any(r.server_names for r in rules) or any(s for _, s in run_needs)),
                (tuple((path, r.place) for r in rules
                       for path in pattern_files(list(r.clients))),
                 tuple((path, r.place) for r in rules
                       for path in pattern_files(r.server_hosts))))
            self._needs[daemon] = needs
        return needs


@dataclass(frozen=True)
class _DaemonNeeds:
    """What the rules that may apply to one daemon's requests need (TablesView)."""

    names: tuple[bool, bool]
    files: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def _view(allow: Table, deny: Table) -> TablesView:
    tables = (allow, deny)
    return TablesView(allow, deny, empty=not allow.rules and not deny.rules,
                      endpoints=any(t.endpoints for t in tables))


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
    _view: TablesView | None = field(default=None, init=False)

    def view(self) -> TablesView:
        """The tables as they are now (re-read if they changed): what one request is
        judged by from its first look at the rules to its verdict."""
        now = self.clock()
        if self._view is None or now - self._checked_at >= self.recheck:
            self._checked_at = now
            allow = self._load(self.allow_path, "hosts.allow", self._allow)
            deny = self._load(self.deny_path, "hosts.deny", self._deny)
            if self._view is None or allow is not self._allow or deny is not self._deny:
                self._view = _view(allow.table, deny.table)
            self._allow, self._deny = allow, deny
        return self._view

    def current(self) -> tuple[Table, Table]:
        view = self.view()
        return view.allow, view.deny

    @property
    def empty(self) -> bool:
        """No rule in either file (after `current()`): every request is granted."""
        return self.view().empty

    @property
    def endpoints(self) -> bool:
        """A rule may read the server address or a port (after `current()`)."""
        return self.view().endpoints

    def _load(self, path: str, label: str, old: _Loaded | None) -> _Loaded:
        key: tuple[int, ...]
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return _Loaded(None, Table(label))
            # Any other reason (a link loop, a folder without search permission) is
            # an error in libwrap, not an empty file; reported once while it lasts.
            key = (-1, exc.errno or 0)
            if old is not None and old.key == key:
                return old
            table = _unopenable(path, label, exc.strerror or str(exc))
        else:
            # ctime too: a chmod that makes the file readable again changes nothing else.
            key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)
            if old is not None and old.key == key:
                return old
            raw = read_regular(path)    # never a wait, whatever the path names
            problem = (open_problem(path) if raw is None and stat.S_ISREG(st.st_mode)
                       else None)
            if problem is not None and problem.errno != errno.ENOENT:
                table = _unopenable(path, label, problem.strerror or str(problem))
            elif raw is None:
                # Not a regular file (docs/compatibility.md), removed meanwhile, or a
                # read error, which libwrap's fgets takes for the end of the file.
                return _Loaded(None, Table(label))
            else:
                table = parse_table(raw, label, path)
        if self.on_warning is not None:
            for warning in table.warnings:
                self.on_warning(warning)
        return _Loaded(key, table)
