"""The attribute table, and how one attribute line changes a service or the defaults.

One row per attribute, in the spirit of xinetd's own table: how many values it takes,
whether it is a list (which may be modified with `+=`/`-=`), whether `defaults` may
carry it, and the value parser. The severities are xinetd's (reference §1.8): an unknown
attribute, a wrong number of values, a forbidden operator or a repeated attribute is a
warning and the line is ignored; a value the parser rejects disables the service (or,
in defaults, is reported as an error and the line ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

from pyxinetd.config import limitvalues as lv
from pyxinetd.config import logvalues as lg
from pyxinetd.config import netvalues as nv
from pyxinetd.config import values as v
from pyxinetd.config.addresses import same_address
from pyxinetd.config.diagnostics import DiagnosticSink, did_you_mean
from pyxinetd.config.linesyntax import shown_name
from pyxinetd.config.rawentries import RawAttribute, RawEntry
from pyxinetd.config.model import AddressEntry
from pyxinetd.textbytes import ascii_lower

Parser = Callable[[v.Values, v.ValueContext], object]
_ALL_OPS = frozenset({"=", "+=", "-="})
_ASSIGN = frozenset({"="})
# What _parse returns for a rejected value; None cannot say it, being a value itself
# (`instances = UNLIMITED`).
_REJECTED = object()


@dataclass(frozen=True)
class AttributeSpec:
    """One row of the table. `count` None means the parser checks the number of values."""

    name: str
    parse: Parser
    count: int | None = 1
    is_list: bool = False
    service_ops: frozenset[str] = _ASSIGN
    in_defaults: bool = False
    defaults_only: bool = False


def _spec(name: str, parse: Parser, count: int | None = 1, *, is_list: bool = False,
          ops: frozenset[str] = _ASSIGN, defaults: bool = False,
          defaults_only: bool = False) -> AttributeSpec:
    return AttributeSpec(name, parse, count, is_list, ops, defaults, defaults_only)


_LIST_OPS = _ALL_OPS
TABLE: dict[str, AttributeSpec] = {s.name: s for s in (
    _spec("id", v.parse_text),
    _spec("type", v.parse_types, None),
    _spec("flags", v.parse_flags, None),
    _spec("disable", v.parse_yes_no),
    _spec("socket_type", v.parse_socket_type),
    _spec("protocol", v.parse_protocol),
    _spec("wait", v.yes_no("wait")),
    _spec("port", v.parse_port),
    _spec("rpc_version", v.parse_rpc_version),
    _spec("rpc_number", v.parse_uint),
    _spec("server", v.parse_server),
    _spec("server_args", v.parse_server_args, None),
    _spec("user", v.parse_user),
    _spec("group", v.parse_group),
    _spec("groups", v.yes_no("groups"), defaults=True),
    _spec("umask", v.parse_umask, defaults=True),
    _spec("nice", v.parse_nice),
    _spec("env", v.parse_env, None, is_list=True, ops=frozenset({"=", "+="})),
    _spec("passenv", v.parse_names, None, is_list=True, ops=_LIST_OPS, defaults=True),
    _spec("rlimit_as", lv.rlimit_size("Address space")),
    _spec("rlimit_cpu", lv.parse_rlimit_cpu),
    _spec("rlimit_data", lv.rlimit_size("Data")),
    _spec("rlimit_rss", lv.rlimit_size("RSS")),
    _spec("rlimit_stack", lv.rlimit_size("Stack")),
    _spec("rlimit_files", lv.rlimit_size("Max files")),
    _spec("redirect", nv.parse_redirect, 2),
    _spec("redirect_source", nv.parse_redirect_source),  # pyxinetd's own
    _spec("libwrap", v.parse_text),
    _spec("bind", nv.parse_bind, defaults=True),
    _spec("v6only", v.yes_no("v6only"), defaults=True),
    _spec("only_from", nv.parse_addresses, None, is_list=True, ops=_LIST_OPS, defaults=True),
    _spec("no_access", nv.parse_addresses, None, is_list=True, ops=_LIST_OPS, defaults=True),
    _spec("access_times", lv.parse_access_times, None),
    _spec("instances", lv.limit("instances"), defaults=True),
    _spec("per_source", lv.limit("per source instances"), defaults=True),
    _spec("cps", lv.parse_cps, 2, defaults=True),
    _spec("max_load", lv.parse_max_load, defaults=True),
    _spec("deny_time", lv.parse_deny_time),
    _spec("banner", v.parse_text, defaults=True),
    _spec("banner_success", v.parse_text, defaults=True),
    _spec("banner_fail", v.parse_text, defaults=True),
    _spec("stderr", v.parse_stderr, defaults=True),     # pyxinetd's own
    _spec("log_type", lg.parse_log_type, None, defaults=True),
    _spec("log_on_success", lg.parse_log_on_success, None, is_list=True, ops=_LIST_OPS,
          defaults=True),
    _spec("log_on_failure", lg.parse_log_on_failure, None, is_list=True, ops=_LIST_OPS,
          defaults=True),
    _spec("enabled", v.parse_ids, None, is_list=True, defaults=True, defaults_only=True),
    _spec("disabled", v.parse_ids, None, is_list=True, defaults=True, defaults_only=True),
)}
ALIASES = {"interface": "bind"}
# Copied from the defaults into a service when its block starts (reference §1.6).
COPIED_AT_PARSE = ("log_on_success", "log_on_failure", "only_from", "no_access", "passenv",
                   "banner", "banner_success", "banner_fail")


def lookup(name: str) -> AttributeSpec | None:
    key = ascii_lower(name)
    return TABLE.get(ALIASES.get(key, key))


@dataclass
class Draft:
    """A service or the defaults while its lines are applied."""

    kind: Literal["service", "defaults"]
    name: str
    file: str
    line: int
    values: dict[str, object] = field(default_factory=dict)
    # Attributes written in this block (as opposed to copied from the defaults).
    own: dict[str, RawAttribute] = field(default_factory=dict)
    # Every line of a list attribute applied, in order (own keeps only the last).
    list_lines: list[RawAttribute] = field(default_factory=list)
    # The attribute lines whose value failed: (file, line, what was wrong).
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    disabled: bool = False
    # xinetd's disabled mark: set by a failed attribute (or `disable = yes`), cleared by
    # a `disable = no` read after it. Any `disable` line that leaves it set ends the block.
    marked: bool = False
    explicit_traffic: bool = False
    # An inetd.conf tcp6/udp6 line: the line of its tcp/udp twin in the same file, whose
    # dual-stack socket serves it if that line is served (pyxinetd.config.inetdconf).
    twin_of: int | None = None
    # An inetd.conf tcp6/udp6 line that is no twin of its service's tcp/udp line: the
    # line of that entry, which takes the port (both families) if it is served.
    yields_to: int | None = None
    # Read from an inetd.conf line (-inetd_compat): its hints cannot suggest xinetd
    # attributes that line cannot hold.
    inetd: bool = False

    @classmethod
    def start(cls, entry: RawEntry) -> Draft:
        return cls(entry.kind, entry.name, entry.file, entry.line)

    def title(self) -> str:
        return "defaults" if self.kind == "defaults" else f"service {self.name}"


def _combine(name: str, old: object, new: object, op: str) -> object:
    """Apply a list operator; `old` is the current value or None."""
    if op == "=" or old is None:
        if op == "-=":
            return _empty(new)
        return new
    if isinstance(new, frozenset) and isinstance(old, frozenset):
        return old | new if op == "+=" else old - new
    assert isinstance(old, tuple) and isinstance(new, tuple)
    if name == "passenv":
        # xinetd compares the names of an existing passenv list without regard to case:
        # `passenv -= home` removes HOME, `passenv += path` keeps PATH alone.
        present = {str(x).casefold() for x in (new if op == "-=" else old)}
        if op == "+=":
            return old + tuple(x for x in new if str(x).casefold() not in present)
        return tuple(x for x in old if str(x).casefold() not in present)
    if op == "+=":
        return old + tuple(x for x in new if x not in old)
    if name in ("only_from", "no_access"):
        return tuple(a for a in old if not any(
            isinstance(a, AddressEntry) and isinstance(b, AddressEntry) and same_address(a, b)
            for b in new))
    return tuple(x for x in old if x not in new)


def _empty(sample: object) -> object:
    return frozenset() if isinstance(sample, frozenset) else ()


class Applier:
    """Applies attribute lines to drafts, reporting through the sink."""

    def __init__(self, ctx: v.ValueContext, sink: DiagnosticSink) -> None:
        self.ctx = ctx
        self.sink = sink
        # Host names of the address lists -> where each was first written (file, line,
        # column, the block's title), for the loader's report of those that do not
        # resolve (pyxinetd.config.hostnames).
        self.host_names: dict[str, tuple[str, int, int | None, str]] = {}

    def apply(self, draft: Draft, raw: RawAttribute) -> bool:
        """Apply one line; False means stop reading this block.

        xinetd stops at a `disable` line after which the service is marked disabled:
        `disable = yes`, a `disable` value that fails, and also a `disable` line ignored
        (repeated, a wrong operator or number of values) in a service whose attribute
        failed earlier, unless a `disable = no` came in between.
        """
        if draft.kind == "defaults":
            self._apply_defaults(draft, raw, lookup(raw.name))
            return True
        self._apply_service(draft, raw)
        return not (draft.marked and raw.name.lower() == "disable")

    def _apply_service(self, draft: Draft, raw: RawAttribute) -> None:
        spec = lookup(raw.name)
        where = (raw.file, raw.line)
        if spec is None or spec.defaults_only:
            hint = did_you_mean(raw.name, [n for n, s in TABLE.items() if not s.defaults_only])
            what = ("only allowed in defaults" if spec is not None
                    else "not a known attribute")
            self.sink.warning(*where, v.xinetd_first(
                f"bad service attribute: {shown_name(raw.name)}", draft.title(),
                f"{what}{hint}; line ignored"), raw.col)
            return
        # xinetd's order: a repeated line is "already set" whatever its operator or its
        # number of values; then the operator; then the number of values.
        if not spec.is_list and spec.name in draft.own:
            first = draft.own[spec.name]
            self.sink.warning(*where, f"Service {draft.name}: attribute already set: "
                                      f"{shown_name(raw.name)} (first at {first.file}:"
                                      f"{first.line}; this line is ignored)", raw.col)
            return
        if raw.op not in spec.service_ops:
            if spec.is_list:  # env -=: xinetd disables the service
                self._fail(draft, raw, v.ValueProblem(
                    f"operator '{raw.op}' not supported for {spec.name} attribute",
                    "expected '=' or '+='"))
                return
            self.sink.warning(*where, f"Service {draft.name}: operator '{raw.op}' cannot be "
                                      f"used for attribute '{shown_name(raw.name)}' (only '=' "
                                      "can; line ignored)", raw.col)
            return
        if not self._count_ok(draft, raw, spec):
            return
        value = self._parse(draft, raw, spec)
        if spec.name == "passenv" and value is not _REJECTED:
            value = self._passenv_names(draft, raw, cast(tuple[str, ...], value),
                                        replace=raw.op == "=")
        if value is _REJECTED:
            return
        draft.own[spec.name] = raw
        if spec.is_list:
            draft.list_lines.append(raw)
            draft.values[spec.name] = _combine(spec.name, draft.values.get(spec.name), value, raw.op)
            if spec.name == "log_on_success" and isinstance(value, frozenset):
                if raw.op == "=":
                    draft.explicit_traffic = "TRAFFIC" in value
                elif "TRAFFIC" in value:
                    draft.explicit_traffic = raw.op == "+="
        else:
            draft.values[spec.name] = value
        if spec.name == "disable":
            draft.marked = value is True
            if value is True:
                draft.disabled = True
                return
            if draft.failures:
                self.sink.warning(*where, f"{draft.title()}: 'disable = no' does not re-enable a "
                                          "service whose attribute failed (xinetd 2.3.15.3 "
                                          "would run it with that attribute unset)", raw.col)

    # -- helpers -------------------------------------------------------------------

    def _passenv_names(self, draft: Draft, raw: RawAttribute, names: tuple[str, ...],
                       replace: bool) -> tuple[str, ...]:
        """The names of a passenv line that add to the list, as xinetd adds them: one by
        one, a name already listed (whatever its case) silently skipped, a name the
        daemon was not started with skipped with a warning naming this line (each time
        it is written: being skipped, it is never listed)."""
        environ = self.ctx.environ
        if raw.op == "-=" or environ is None:
            return names
        listed = () if replace else cast(tuple[str, ...], draft.values.get("passenv") or ())
        present = {name.casefold() for name in listed}
        added: list[str] = []
        # The line's words as written: `names` holds a repeated one once.
        for name in raw.values:
            if name.casefold() in present:
                continue
            if name not in environ:
                self.sink.warning(raw.file, raw.line, f"undefined environment variable: {name} "
                                  f"({draft.title()}: named in passenv; skipped)", raw.col)
                continue
            present.add(name.casefold())
            added.append(name)
        return tuple(added)

    def _count_ok(self, draft: Draft, raw: RawAttribute, spec: AttributeSpec) -> bool:
        if spec.count is None or len(raw.values) == spec.count:
            return True
        # xinetd's words, plural even for 1, then where and what happens.
        self.sink.warning(raw.file, raw.line, v.xinetd_first(
            f"attribute {shown_name(raw.name)} expects {spec.count} values and "
            f"{len(raw.values)} values "
            "were specified", draft.title(), "line ignored"), raw.col)
        return False

    def _parse(self, draft: Draft, raw: RawAttribute, spec: AttributeSpec) -> object | None:
        """The parsed value (None is a value: UNLIMITED), or _REJECTED."""
        self.ctx.remarks.clear()
        self.ctx.host_names.clear()
        try:
            value = spec.parse(raw.values, self.ctx)
        except v.ValueProblem as problem:
            exc = problem
            if not raw.values and problem.reason is None:
                # An empty value the parser refuses: xinetd's count check stops it first.
                exc = v.ValueProblem(v.expects_at_least_one(spec.name), problem.message)
            if draft.kind == "defaults":
                self.sink.error(raw.file, raw.line, v.describe(
                    exc, "defaults", "this defaults line is ignored (xinetd 2.3.15.3 would "
                    "stop with exit status 0)"), raw.col)
            else:
                self._fail(draft, raw, exc)
            return _REJECTED
        finally:
            hosts = self.ctx.lookups.hosts
            if hosts is not None:
                for name in self.ctx.host_names:
                    if name not in self.host_names:
                        self.host_names[name] = (raw.file, raw.line, raw.col,
                                                 draft.title())
                        hosts.ask(name)
            for words, remark in self.ctx.remarks:
                self.sink.warning(raw.file, raw.line, f"{draft.title()}: {remark}"
                                  if words is None else v.xinetd_first(words, draft.title(), remark),
                                  raw.col)
        return value

    def _fail(self, draft: Draft, raw: RawAttribute, problem: v.ValueProblem) -> None:
        self.sink.error(raw.file, raw.line, v.describe(problem, draft.title(),
                                                       "service disabled"), raw.col)
        draft.failures.append((raw.file, raw.line, str(problem)))
        draft.marked = True

    def _apply_defaults(self, draft: Draft, raw: RawAttribute, spec: AttributeSpec | None) -> None:
        where = (raw.file, raw.line)
        if spec is None or not spec.in_defaults:
            hint = ""
            if spec is None:
                # ' (did you mean "x"?)' goes inside the parentheses, before the effect.
                hint = did_you_mean(raw.name, [n for n, s in TABLE.items() if s.in_defaults])
                hint = f"{hint.strip()[1:-1]}; " if hint else ""
            self.sink.warning(*where, v.xinetd_first(
                f"attribute: {shown_name(raw.name)} should not be in default section",
                "defaults", f"{hint}line ignored"), raw.col)
            return
        cumulative = spec.is_list or spec.name == "log_type"
        if not cumulative and spec.name in draft.own:   # before the operator, as xinetd
            first = draft.own[spec.name]
            self.sink.warning(*where, f"defaults: attribute already set: "
                                      f"{shown_name(raw.name)} (first at {first.file}:"
                                      f"{first.line}; line ignored)", raw.col)
            return
        if not cumulative and raw.op != "=":
            # xinetd names the defaults "(null)" in this line; pyxinetd says defaults.
            self.sink.warning(*where, f"defaults: operator '{raw.op}' cannot be used for "
                                      f"attribute '{shown_name(raw.name)}' (only '=' can; "
                                      "line ignored)",
                              raw.col)
            return
        if not self._count_ok(draft, raw, spec):
            return
        if spec.name == "log_type" and spec.name in draft.own:
            first = draft.own[spec.name]
            self.sink.error(*where, "Cannot set more than one log_type attribute (defaults: "
                                    f"first at {first.file}:{first.line}; line ignored)",
                            raw.col)
            return
        value = self._parse(draft, raw, spec)
        if value is _REJECTED:
            return
        if spec.name == "passenv":
            value = self._passenv_names(draft, raw, cast(tuple[str, ...], value), replace=False)
        draft.own[spec.name] = raw
        if spec.is_list:
            draft.list_lines.append(raw)
            # In defaults '=' adds; for enabled/disabled even '-=' adds (xinetd).
            op = "+=" if raw.op == "=" or spec.defaults_only else raw.op
            draft.values[spec.name] = _combine(spec.name, draft.values.get(spec.name), value, op)
        else:
            draft.values[spec.name] = value
