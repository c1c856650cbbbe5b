"""A hosts_access(5) evaluator: /etc/hosts.allow, then /etc/hosts.deny, first match wins.

Reference: peers-and-tcp-wrappers.md §5 (language, options of hosts_options(5), `%`
expansions); the vectors in shared/vectors/hosts_access.json are what tcpdmatch printed.

`evaluate()` is pure: it returns a Decision listing what the matched rule asks for
(spawn and twist commands already `%`-expanded, setenv pairs, banners, process
attributes) and leaves running them to the caller (pyxinetd.access.gate). The tables
it reads are parsed and kept current by pyxinetd.access.hoststables; as in libwrap, an
option error only counts when its rule matches, and then it denies.

`aclexec` is the one option whose outcome is not known here: its commands' exit status
decides whether the rule applies at all. So a Decision with aclexec commands carries
`otherwise`, the decision to use when the last command fails: libwrap then ends the scan
of that rule's file as if nothing had matched (the rest of hosts.allow is skipped and
hosts.deny is scanned; a failure in hosts.deny grants). Checked with Debian's libwrap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Literal

from pyxinetd.access.hostsoptions import CLIENT_INFO_LETTERS, CLIENT_NAME_LETTERS, \
    CLIENT_TEXT_LETTERS, OPTIONS, SERVER_INFO_LETTERS, SERVER_NAME_LETTERS, client_info, \
    expand, setenv_pair, umask_value, unrecognized
from pyxinetd.access.hostspatterns import Endpoint, Lookups, Request, client_match, daemon_match, \
    list_match, needs_name, normalize_address
# The tables are read and kept by their own module; their names stay importable here.
from pyxinetd.access.hoststables import DEFAULT_ALLOW, DEFAULT_DENY, HostsTables, LiteralRun, \
    Rule, Table, parse_table
from pyxinetd.textbytes import ascii_lower

__all__ = ["DEFAULT_ALLOW", "DEFAULT_DENY", "Banner", "Decision", "HostsTables", "Rule", "Table",
           "evaluate", "expand", "parse_table"]

Access = Literal["granted", "denied", "delegated"]


@dataclass(frozen=True)
class CommandSetup:
    """What a spawn or aclexec command inherits from the options before it: libwrap
    runs it from the process those options changed (`setenv` pairs, `umask`, and the
    `nice` increments, which add up as nice(2) calls do)."""

    setenv: tuple[tuple[str, str], ...] = ()
    umask: int | None = None
    nice: int = 0


NO_SETUP = CommandSetup()


@dataclass(frozen=True)
class Banner:
    """One `banners DIR` option of the matched rule. libwrap sends each such file as it
    processes the option, so a rule with several sends them all, in order, and a rule
    that an error or a failed aclexec cuts short still sends those before. `request` is
    the request as it stood at the option (a `%h` before an option that looks the name
    up shows the address); `where` ("/etc/hosts.allow, line 3") prefixes libwrap's
    warnings (DIR cannot be read, an unknown `%` letter in the file); `step`: how many
    lines of the decision's trace come before it, so that the messages keep libwrap's
    order."""

    folder: str
    request: Request
    where: str
    step: int = 0


@dataclass(frozen=True)
class Decision:
    access: Access
    matched: str | None = None               # "hosts.allow line 3", None: no rule
    trace: tuple[str, ...] = ()              # "option: ..." / "warning: ..." / "error: ..."
    spawn: tuple[str, ...] = ()
    spawn_setup: tuple[CommandSetup, ...] = ()     # one per spawn command
    twist: str | None = None
    setenv: tuple[tuple[str, str], ...] = ()
    banners: tuple[Banner, ...] = ()
    nice: int | None = None
    umask: int | None = None
    uid: int | None = None
    gid: int | None = None
    keepalive: bool = False
    linger: int | None = None
    severity: str | None = None              # syslog level word for the refusal line
    # Commands whose exit status decides whether the rule applies (the last one's
    # status counts, as in libwrap), and the decision when it is not 0.
    aclexec: tuple[str, ...] = ()
    aclexec_setup: CommandSetup = NO_SETUP
    otherwise: Decision | None = None
    # The client as `%c` showed it when the twist was processed (for libwrap's log
    # line `twist CLIENT to COMMAND`).
    twist_client: str | None = None
    # libwrap's warnings of the scan that are no rule's options: a PARANOID name's
    # mismatch, at the rule that first read the name ("/etc/hosts.deny, line 1: host
    # name/address mismatch: A != NAME").
    notes: tuple[str, ...] = ()

    @property
    def granted(self) -> bool:
        return self.access != "denied"


def _rule_matches(rule: Rule, request: Request, lookups: Lookups) -> bool:
    return list_match(list(rule.daemons),
                      lambda p: daemon_match(p, request, lookups, rule.place)) \
        and list_match(list(rule.clients),
                       lambda p: client_match(p, request, lookups, rule.place))


def _apply_options(rule: Rule, request: Request, file_access: Access,
                   lookups: Lookups) -> Decision:
    """Process the matched rule's options left to right, as libwrap does."""
    assert rule.options is not None
    trace: list[str] = []
    fields: dict[str, object] = {}
    # spawn and aclexec commands in option order: ("spawn"|"aclexec", command, setup).
    commands: list[tuple[str, str, CommandSetup]] = []
    setenv: list[tuple[str, str]] = []
    banners: list[Banner] = []
    place = rule.place
    access: Access = file_access
    niced = 0
    # Whether an expansion so far has made the client's name safe in place, as libwrap's
    # does: its `twist CLIENT to CMD` line shows the name as it is until then.
    made_safe = False
    for option in rule.options:
        if option.error is not None:
            trace.append(f"error: {option.error}")
            return _refused(rule, trace, commands, banners)
        key = option.keyword.lower()
        value = option.value
        if key == "aclexec":
            # Its status decides the verdict: a name never looked up is no `unknown`
            # (a hosts.deny check by %n would grant the client it was to refuse).
            # `%h` and the like show the name only once a pattern or an expansion
            # has asked for it (libwrap looked it up then), the address before.
            if option.letters & CLIENT_NAME_LETTERS or (
                    option.letters & CLIENT_INFO_LETTERS and request.client.name_asked):
                needs_name(request.client, f"aclexec {value}")
            if option.letters & SERVER_NAME_LETTERS or (
                    option.letters & SERVER_INFO_LETTERS and request.server.name_asked):
                needs_name(request.server, f"aclexec {value}")
        if value is not None and OPTIONS[key][3]:
            trace.extend(f"warning: {place}: {text}" for text in unrecognized(value))
            value = expand(value, request)
            made_safe = made_safe or bool(option.letters & CLIENT_TEXT_LETTERS)
        trace.append(f"option: {option.keyword} {value or ''}")
        if key == "allow":
            access = "granted"
        elif key == "deny":
            access = "denied"
        elif key == "twist" and request.resident:
            # libwrap refuses to replace a resident process (xinetd itself).
            trace.append(f"error: {place}: twist option in resident process")
            return _refused(rule, trace, commands, banners)
        elif key == "twist":
            fields["twist"] = value
            fields["twist_client"] = expand("%c", request) if made_safe \
                else client_info(request)
            access = "delegated"
        elif key in ("spawn", "aclexec") and value is not None:
            umask = fields.get("umask")
            commands.append((key, value, CommandSetup(
                tuple(setenv), umask if isinstance(umask, int) else None, niced)))
        elif key == "setenv" and value is not None:
            pair = setenv_pair(value)
            if pair is None:    # a `%` expansion put `=` in the name
                trace.append(f'error: {place}: bad setenv name: "{value}"')
                return _refused(rule, trace, commands, banners)
            setenv.append(pair)
        elif key == "severity":
            fields["severity"] = option.level
        elif key == "banners":
            if value is not None:
                banners.append(Banner(value, _as_now(request), place, len(trace)))
                # Its %n/%N look the name up (in libwrap, as the file is sent): the
                # options after it see the name in %h %H %c %s.
                letters = lookups.banner_letters(os.path.join(value, request.daemon))
                made_safe = made_safe or bool(letters & CLIENT_TEXT_LETTERS)
                if "n" in letters:
                    request.client.look_up()
                if "N" in letters:
                    request.server.look_up()
        elif key == "nice":
            # Each one is a nice(2) call in libwrap: they add up.
            niced += int(value) if value is not None else 10
            fields["nice"] = niced
        elif key == "umask" and value is not None:
            fields["umask"] = umask_value(value)
        elif key == "user":
            fields["uid"] = option.uid
            fields["gid"] = option.gid
        elif key == "group":
            fields["gid"] = option.gid
        elif key == "keepalive":
            fields["keepalive"] = True
        elif key == "linger" and value is not None:
            fields["linger"] = int(value)
        # rfc931 is accepted: the user name comes from the request when an ident
        # lookup has given one (Request.user), else it is `unknown`.
    # allow/deny/twist end libwrap's processing before the aclexec status is looked
    # at: then the commands only run.
    terminal = any(o.keyword.lower() in ("allow", "deny", "twist") for o in rule.options)
    checks = [] if terminal else [(c, setup) for k, c, setup in commands if k == "aclexec"]
    deciding = tuple(c for c, _ in checks)
    if checks:
        fields["aclexec_setup"] = checks[-1][1]
    spawned = [c for c in commands if c[0] == "spawn" or not deciding]
    return Decision(access, rule.where, tuple(trace), setenv=tuple(setenv),
                    banners=tuple(banners), spawn=tuple(c for _, c, _ in spawned),
                    spawn_setup=tuple(setup for _, _, setup in spawned),
                    aclexec=deciding, **fields)  # type: ignore[arg-type]


def _as_now(request: Request) -> Request:
    """A copy of `request` whose endpoints keep what has been looked up so far (the
    original goes on with the options after this one)."""
    def endpoint(end: Endpoint) -> Endpoint:
        return replace(end, _looked=[end._looked[0]], _asked=[end._asked[0]])
    return replace(request, client=endpoint(request.client), server=endpoint(request.server))


def _refused(rule: Rule, trace: list[str],
             commands: list[tuple[str, str, CommandSetup]], banners: list[Banner]
             ) -> Decision:
    """An error stops the options: the commands and banners before it have run or
    been sent in libwrap, and no command decides any more."""
    return Decision("denied", rule.where, tuple(trace), banners=tuple(banners),
                    spawn=tuple(c for _, c, _ in commands),
                    spawn_setup=tuple(setup for _, _, setup in commands))


def _first_match(step: Rule | LiteralRun, address: str, request: Request,
                 lookups: Lookups) -> Rule | None:
    """The rule of `step` that matches the request first, if any."""
    if isinstance(step, LiteralRun):
        # Only a rule naming the client's address can match it (hoststables).
        for rule in step.candidates(address):
            if _rule_matches(rule, request, lookups):
                return rule
        return None
    return step if _rule_matches(step, request, lookups) else None


class _Mismatches:
    """libwrap logs a PARANOID name's mismatch when a rule first reads the name, with
    that rule's place: which endpoints' names were read before each rule tells it."""

    def __init__(self, request: Request) -> None:
        self.ends = [e for e in (request.client, request.server) if e.mismatch]
        self.read = [e.name_asked for e in self.ends]
        self.notes: list[str] = []

    def fork(self) -> _Mismatches:
        """For the scan that follows a failed aclexec: the names read so far stay
        read, its own decision carries only what it notes itself."""
        other = _Mismatches.__new__(_Mismatches)
        other.ends, other.read, other.notes = self.ends, list(self.read), []
        return other

    def after(self, step: Rule | LiteralRun, rule: Rule | None) -> None:
        for i, end in enumerate(self.ends):
            if not self.read[i] and end.name_asked:
                self.read[i] = True
                # A run of address rules reads no name but in the options of its match.
                place = rule.place if rule is not None else _place(step)
                self.notes.append(f"{place}: {end.mismatch}")


def _place(step: Rule | LiteralRun) -> str:
    return step.place if isinstance(step, Rule) else step.rules[0].place


def _scan(tables: tuple[tuple[Table, Access], ...], request: Request, lookups: Lookups,
          serving: bool, mismatches: _Mismatches | None = None) -> Decision:
    notes = mismatches or _Mismatches(request)
    # The client's address as a literal pattern is compared with it (string_match).
    address = request.client.addr_text
    if ascii_lower(address).startswith("::ffff:"):
        address = normalize_address(address)
    for index, (table, access) in enumerate(tables):
        for step in table.plan_for(request.daemon):
            if isinstance(step, Rule) and step.broken:
                if access == "denied":
                    return Decision("denied", step.where, notes=tuple(notes.notes))
                break
            rule = _first_match(step, address, request, lookups)
            if rule is None:
                notes.after(step, None)
                continue
            if rule.options is None:
                notes.after(step, rule)
                return Decision(access, rule.where, notes=tuple(notes.notes))
            decision = _apply_options(rule, request, access, lookups)
            notes.after(step, rule)
            decision = replace(decision, notes=tuple(notes.notes))
            if decision.aclexec and serving:
                # A failed aclexec ends this file's scan with no match.
                rest = _scan(tables[index + 1:], request, lookups, serving, notes.fork())
                decision = replace(decision, otherwise=rest)
            return decision
    return Decision("granted", notes=tuple(notes.notes))


def evaluate(allow: Table, deny: Table, request: Request, lookups: Lookups, *,
             serving: bool = True) -> Decision:
    """The verdict for one request, as if every aclexec command succeeds; with
    `serving` (the default) a Decision with aclexec commands also carries `otherwise`.
    `serving=False` predicts like tcpdmatch, which never runs aclexec."""
    return _scan(((allow, "granted"), (deny, "denied")), request, lookups, serving)
