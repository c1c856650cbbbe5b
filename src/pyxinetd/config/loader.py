"""load_configuration(): read the main file and everything it includes, in order.

Entries are applied in the order xinetd reads them, because order matters: list
attributes of the defaults reach a service when its block is read (§1.6), so a
`defaults` placed after an `includedir` does not give its only_from to the included
services. Only an unreadable main file raises (ConfigError); everything else becomes
a Diagnostic, and a service that cannot run becomes a DroppedEntry.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from collections.abc import Mapping
from typing import TypeVar, cast

from pyxinetd.config.attributes import COPIED_AT_PARSE, Applier, Draft
from pyxinetd.config.ceilings import Ceilings
from pyxinetd.config.diagnostics import Diagnostic, DiagnosticSink, Severity
from pyxinetd.config.grammar import parse_text
from pyxinetd.config.rawentries import RawEntry, RawInclude
from pyxinetd.config.includes import list_includedir, read_included_text, read_text
from pyxinetd.config.inetdconf import (read_inetd_conf, served_by_twin, twin_on_ipv4,
                                      unserved_twin, unyielded,
                                       yielded)
from pyxinetd.config.lookups import Lookups
from pyxinetd.config.model import (
    AddressEntry, Configuration, Defaults, DroppedEntry, LogTarget, ServiceConfig,
)
from pyxinetd.config.duplicates import SocketTable
from pyxinetd.config.checks import fallback_notice, interception_errors
from pyxinetd.config.pipeline import (
    FillContext, ServiceRejected, build_service, rejected_claim, rejection_line,
    without_ident_userid,
)
from pyxinetd.config.netvalues import BindSpec
from pyxinetd.config.values import ValueContext, xinetd_first
from pyxinetd.errors import ConfigError

T = TypeVar("T")
# Loops are caught by identity (below); this only bounds the recursion for a chain of
# distinct files, far deeper than any real configuration (xinetd has no bound at all).
MAX_INCLUDE_DEPTH = 64
# xinetd reads this fixed path with -inetd_compat.
DEFAULT_INETD_CONF = "/etc/inetd.conf"


class _Reader:
    def __init__(self, lookups: Lookups, sink: DiagnosticSink,
                 environ: Mapping[str, str] | None = None) -> None:
        self.sink = sink
        self.defaults = Draft("defaults", "defaults", "", 0)
        self.services: list[Draft] = []
        self.dropped: list[DroppedEntry] = []
        self.files: list[str] = []
        self.applier = Applier(ValueContext(lookups, environ), sink)
        # (device, inode) of the files being read, to refuse include loops.
        self._active: list[tuple[int, int]] = []
        # The grammar's diagnostics of the file being read not reported yet, last first.
        self._syntax: list[Diagnostic] = []

    def read_file(self, path: str, text: str, identity: tuple[int, int]) -> None:
        self.files.append(path)
        self._active.append(identity)
        # The grammar's lines (syntax errors) wait for the lines before them: xinetd
        # reports a file's lines in order, reading each when it meets it.
        syntax = DiagnosticSink()
        items = parse_text(text, path, syntax)
        outer, self._syntax = self._syntax, syntax.items[::-1]
        try:
            for item in items:
                self._report_syntax(before=item.line)
                if isinstance(item, RawInclude):
                    self._include(item)
                else:
                    self._entry(item)
            self._report_syntax(before=None)
        finally:
            self._active.pop()
            self._syntax = outer

    def _report_syntax(self, before: int | None) -> None:
        """Pass on the grammar's diagnostics of the lines before `before` (all: None)."""
        pending = self._syntax
        while pending and (before is None or (pending[-1].line or 0) < before):
            self.sink.items.append(pending.pop())

    def _unreport_syntax(self, file: str, line: int) -> None:
        """Withdraw the grammar's error at `file`:`line`, a line xinetd does not read."""
        self._syntax = [d for d in self._syntax if not (
            d.file == file and d.line == line and d.severity is Severity.ERROR)]

    def _include(self, item: RawInclude) -> None:
        if item.kind == "include":
            paths = [item.path]
        else:
            paths = list_includedir(item.path, item.file, item.line, self.sink)
        for path in paths:
            try:
                info = os.stat(path)
                identity = (info.st_dev, info.st_ino)
                if identity in self._active:
                    self.sink.error(item.file, item.line, f"{path} includes itself (directly or "
                                                          "through other files); not read again")
                    continue
                if len(self._active) >= MAX_INCLUDE_DEPTH:
                    self.sink.error(item.file, item.line, (
                        f"{path} not read: includes nested more than {MAX_INCLUDE_DEPTH} deep "
                        "(xinetd 2.3.15.3 would read on)"))
                    continue
                text = read_included_text(path)
            except (OSError, ValueError) as exc:
                # xinetd's words (the path last, alone), and the reason after it.
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                self.sink.error(item.file, item.line,
                                f"Unable to open included configuration file: {path} ({why})")
                continue
            self.sink.debug(item.file, item.line, f"Reading included configuration file: {path}",
                            always=True)
            self.read_file(path, text, identity)

    def _entry(self, entry: RawEntry) -> None:
        if entry.ignored:
            return
        if entry.kind == "defaults":
            # A syntax error cut the block short; what came before it still counts.
            for raw in entry.attrs:
                self._report_syntax(before=raw.line)
                self.applier.apply(self.defaults, raw)
            if self.defaults.line == 0:
                self.defaults.file, self.defaults.line = entry.file, entry.line
            return
        # A broken entry is dropped; but its lines before the syntax error are read for
        # their diagnostics, as xinetd reads them before it meets the error.
        draft = Draft.start(entry)
        for name in COPIED_AT_PARSE:
            if name in self.defaults.values:
                draft.values[name] = self.defaults.values[name]
        stopped = False
        for raw in entry.attrs:
            self._report_syntax(before=raw.line)
            if not self.applier.apply(draft, raw):
                stopped = True
                break
        if entry.broken is not None and not (stopped and entry.broken_line is not None):
            self.dropped.append(DroppedEntry(entry.name, None, entry.file, entry.line, entry.broken))
            return
        if entry.broken_line is not None:
            # xinetd stopped reading the block at a `disable` line and skipped to its
            # `}`: the line with the syntax error is never read, and the service is
            # dropped for its failed attribute. A header line there (the block's `}`
            # missing) keeps the grammar's warning that starts the next entry, which
            # xinetd's skip loses.
            self._unreport_syntax(entry.file, entry.broken_line)
        self.services.append(draft)


def _defaults_model(draft: Draft) -> Defaults:
    values = draft.values
    bind = values.get("bind")
    enabled = values.get("enabled")
    return Defaults(
        log_type=cast(LogTarget | None, values.get("log_type")),
        log_on_success=_frozen(values.get("log_on_success")),
        log_on_failure=_frozen(values.get("log_on_failure")),
        only_from=_addresses(values.get("only_from")),
        no_access=_addresses(values.get("no_access")) or (),
        passenv=_strings(values.get("passenv")),
        instances=_typed(values.get("instances"), int),
        per_source=_typed(values.get("per_source"), int),
        unlimited=frozenset(name for name in ("instances", "per_source")
                            if name in values and values[name] is None),
        cps=_typed(values.get("cps"), tuple),
        max_load=_typed(values.get("max_load"), float),
        groups=_typed(values.get("groups"), bool),
        umask=_typed(values.get("umask"), int),
        bind=bind.text if isinstance(bind, BindSpec) else None,
        banner=_typed(values.get("banner"), str),
        banner_success=_typed(values.get("banner_success"), str),
        banner_fail=_typed(values.get("banner_fail"), str),
        stderr=_typed(values.get("stderr"), str),
        v6only=_typed(values.get("v6only"), bool),
        enabled=_frozen(enabled) if enabled is not None else None,
        disabled=_frozen(values.get("disabled")),
    )


def _typed(value: object, kind: type[T]) -> T | None:
    return value if isinstance(value, kind) else None


def _frozen(value: object) -> frozenset[str]:
    return value if isinstance(value, frozenset) else frozenset()


def _strings(value: object) -> tuple[str, ...] | None:
    return tuple(str(x) for x in value) if isinstance(value, tuple) else None


def _addresses(value: object) -> tuple[AddressEntry, ...] | None:
    if not isinstance(value, tuple):
        return None
    return tuple(x for x in value if isinstance(x, AddressEntry))


def load_configuration(path: str, *, environ: Mapping[str, str] | None = None,
                       lookups: Lookups | None = None, inetd_compat: bool = False,
                       inetd_path: str = DEFAULT_INETD_CONF) -> Configuration:
    """Load `path` (and, with `inetd_compat`, `inetd_path` after it); raises ConfigError
    only if the main file cannot be read."""
    try:
        text = read_text(path)
        info = os.stat(path)
    except OSError as exc:
        # xinetd's own line for this (log parsers know it): open( PATH ) failed: %m.
        why = (f"{os.strerror(exc.errno)} (errno = {exc.errno})" if exc.errno is not None
               else str(exc))
        raise ConfigError(f"open( {path} ) failed: {why}") from exc
    except ValueError as exc:
        raise ConfigError(f"cannot read configuration file: {exc}", path) from exc
    env = dict(os.environ if environ is None else environ)
    lookups = lookups or Lookups()
    sink = DiagnosticSink()
    reader = _Reader(lookups, sink, env)
    reader.read_file(path, text, (info.st_dev, info.st_ino))
    if inetd_compat:
        _read_inetd(reader, inetd_path)
    defaults = reader.defaults
    if defaults.values.get("v6only") is True:
        sink.warning(defaults.file, defaults.line, "defaults: v6only = yes makes every IPv6 "
                     "socket v6-only (xinetd 2.3.15.3 ignores v6only in defaults)")

    dropped = list(reader.dropped)
    enabled = defaults.values.get("enabled")
    disabled = defaults.values.get("disabled") or frozenset()
    ctx = FillContext(defaults, lookups, env, sink,
                      tuple(f"{k}={v}" for k, v in env.items()), Ceilings.of_this_process())
    services: list[ServiceConfig] = []
    sockets = SocketTable(sink)
    takes_defaults_env = False
    # (file, line) -> the services kept: an inetd.conf twin is served by its line's
    # dual-stack socket only if that line is among them, and listens on IPv6.
    kept: dict[tuple[str, int], ServiceConfig] = {}
    for draft in _twins_after_their_lines(reader.services):
        # A twin or v6-only line served on its own says so once it is kept: it may
        # still be dropped (a duplicate of a converted block, say).
        on_its_own: str | None = None
        if draft.twin_of is not None:
            protocol = draft.own["protocol"].values[0] if "protocol" in draft.own else "tcp"
            twin = kept.get((draft.file, draft.twin_of))
            if twin is not None and twin.family == socket.AF_INET6:
                dual = not twin.v6only and twin.bind in (None, "::")
                sink.info(draft.file, draft.line,
                          served_by_twin(draft.name, protocol, draft.twin_of, dual=dual))
                continue
            if twin is not None:
                reason = twin_on_ipv4(draft.name, protocol, draft.twin_of, twin.bind)
                sink.warning(draft.file, draft.line, reason)
                dropped.append(DroppedEntry(draft.name, None, draft.file, draft.line, reason))
                continue
            on_its_own = unserved_twin(draft.name, protocol, draft.twin_of)
        if draft.yields_to is not None:
            protocol = draft.own["protocol"].values[0] if "protocol" in draft.own else "tcp"
            if (draft.file, draft.yields_to) in kept:
                reason = yielded(draft.name, protocol, draft.yields_to)
                sink.warning(draft.file, draft.line, reason)
                dropped.append(DroppedEntry(draft.name, None, draft.file, draft.line, reason))
                continue
            on_its_own = unyielded(draft.name, protocol, draft.yields_to)
        sid = str(draft.values.get("id") or draft.name)
        removal = _removal(draft, sid, enabled, disabled)
        if _revived_by_enabled(draft, sid, enabled, disabled):
            sink.warning(draft.file, draft.line, (
                f"service {draft.name}: the defaults' enabled list does not re-enable a "
                f"service whose attribute failed (xinetd 2.3.15.3 would run it with that "
                f"attribute unset)"))
        if removal is not None:
            reason, named_by_xinetd = removal
            sink.debug(draft.file, draft.line, f"removing {draft.name}: {reason}",
                       always=named_by_xinetd)
            dropped.append(DroppedEntry(draft.name, sid, draft.file, draft.line, reason))
            continue
        try:
            service = build_service(draft, ctx)
            # xinetd builds the defaults' environment for the first service without a
            # passenv of its own (its dump then shows it under `Service defaults`).
            takes_defaults_env = takes_defaults_env or "passenv" not in draft.own
        except ServiceRejected as exc:
            # xinetd tests uniqueness before its checks and the required attributes: a
            # duplicate of a bound service gets only that line.
            claim = rejected_claim(draft, ctx, exc)
            duplicate = sockets.duplicate_of_bound(claim) if claim is not None else None
            if duplicate is not None:
                dropped.append(DroppedEntry(draft.name, sid, draft.file, draft.line, duplicate))
                continue
            for error in exc.cleared:
                sink.error(draft.file, draft.line, error)
            if exc.notice is not None:
                sink.info(draft.file, draft.line, exc.notice)
            for reason in exc.reasons:
                sink.error(draft.file, draft.line, rejection_line(reason))
            dropped.append(DroppedEntry(draft.name, sid, draft.file, draft.line,
                                        "; ".join(exc.reasons)))
            continue
        written = draft.values.get("port") if service.is_tcpmux_client else None
        port_line = written if isinstance(written, int) else None
        # xinetd clears an INTERCEPT it cannot serve, and announces the fallback, only
        # for a service that passed its uniqueness test: before pyxinetd's own verdict
        # on a socket that cannot bind (xinetd runs into that later), after the warning
        # of one pyxinetd keeps though xinetd's test drops it.
        unique_to_xinetd = sockets.passes_xinetds_test(service, port_line)
        if unique_to_xinetd:
            _log_checked(draft, service, sink)
        duplicate = sockets.admit(service, port_line)
        if duplicate is not None:
            dropped.append(DroppedEntry(service.name, service.id, service.origin.file,
                                        service.origin.line, duplicate))
            continue
        if not unique_to_xinetd:
            _log_checked(draft, service, sink)
        services.append(without_ident_userid(service, sink))
        kept[(draft.file, draft.line)] = service
        if on_its_own is not None:
            sink.info(draft.file, draft.line, on_its_own)
    _report_unresolved(reader.applier, lookups, sink)
    _warn_shared_ids(services, sink, inetd_path if inetd_compat else None)
    _warn_tcpmux_unreachable(services, sink, inetd_path if inetd_compat else None)
    model = _defaults_model(defaults)
    if model.passenv is not None and takes_defaults_env:
        model = replace(model, environment=tuple(
            f"{name}={env[name]}" for name in model.passenv if name in env))
    return Configuration(path=path, defaults=model, services=tuple(services),
                         dropped=tuple(dropped), diagnostics=tuple(sink.items),
                         files=tuple(reader.files))


def _report_unresolved(applier: Applier, lookups: Lookups, sink: DiagnosticSink) -> None:
    """A host name of an address list that does not resolve, at the line that first
    wrote it, in xinetd's words first (it drops such a name; pyxinetd keeps it)."""
    if lookups.hosts is None or not applier.host_names:
        return
    failures = lookups.hosts.failures()
    for name, (file, line, col, title) in applier.host_names.items():
        why = failures.get(name)
        if why is not None:
            sink.warning(file, line, xinetd_first(
                f"failed to parse {name}", title,
                f"the name does not resolve now ({why}); kept: it matches a client whose "
                "reverse name it is (xinetd 2.3.15.3 drops it)"), col)


def _log_checked(draft: Draft, service: ServiceConfig, sink: DiagnosticSink) -> None:
    """The lines xinetd logs for a service past its uniqueness test: an INTERCEPT it
    clears, then the fallback of `flags = IPv4 IPv6`."""
    for error in interception_errors(draft):
        sink.error(draft.file, draft.line, error)
    notice = fallback_notice(service.name, service.flags)
    if notice is not None:
        sink.info(service.origin.file, service.origin.line, notice)


def _twins_after_their_lines(drafts: list[Draft]) -> list[Draft]:
    """`drafts` in order, but an inetd.conf twin that comes before its dual-stack line
    right after that line, which decides whether the twin is served by it."""
    later: dict[tuple[str, int], list[Draft]] = {}
    for draft in drafts:
        line = draft.twin_of if draft.twin_of is not None else draft.yields_to
        if line is not None and line > draft.line:
            later.setdefault((draft.file, line), []).append(draft)
    ordered: list[Draft] = []
    for draft in drafts:
        line = draft.twin_of if draft.twin_of is not None else draft.yields_to
        if line is not None and line > draft.line:
            continue
        ordered.append(draft)
        ordered += later.pop((draft.file, draft.line), [])
    for rest in later.values():
        ordered += rest
    return ordered


def _read_inetd(reader: _Reader, path: str) -> None:
    """Append the services of inetd.conf after every xinetd file, as xinetd does."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        # Debian's init script passes -inetd_compat whether or not the file exists (a
        # package's update-inetd may create it later): its absence is no problem, and
        # xinetd says nothing about it.
        reader.sink.info(path, None, f"no {path} to read (-inetd_compat); it is looked "
                                     "for again at each reload")
        return
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        reader.sink.warning(path, None, f"cannot read {path} (-inetd_compat): {why}")
        return
    reader.files.append(path)
    drafts, dropped = read_inetd_conf(text, path, reader.applier, reader.sink)
    reader.services.extend(drafts)
    reader.dropped.extend(dropped)


def _removal(draft: Draft, sid: str, enabled: object, disabled: object
             ) -> tuple[str, bool] | None:
    """Why the service is dropped, and whether xinetd names it then: its
    remove_disabled_services() writes `removing NAME` (without -d too) for the services
    it marked, a failed attribute or one not in `enabled`, and drops those with
    `disable = yes` or in `disabled` without a word. None: it is kept."""
    if draft.disabled:
        return "disabled (disable = yes)", False
    if draft.failures:
        return _failed(draft), True
    key = sid.lower()
    if isinstance(enabled, frozenset) and key not in enabled:
        return f"id {sid} is not in the defaults' enabled list", True
    if isinstance(disabled, frozenset) and key in disabled:
        return f"id {sid} is in the defaults' disabled list", False
    return None


def _failed(draft: Draft) -> str:
    """The reason a service whose attribute values failed is dropped."""
    if len(draft.failures) == 1:
        file, line, problem = draft.failures[0]
        return f"bad attribute value: {file}:{line}: {problem}"
    # Each was logged at its line already: the places, not the texts again (a service
    # with seven bad lines made a line of 600 characters, twice).
    lines: dict[str, list[str]] = {}
    for file, line, _ in draft.failures:
        lines.setdefault(file, []).append(str(line))
    places = "; ".join(f"{file}:{', '.join(numbers)}" for file, numbers in lines.items())
    return f"bad attribute values at {places} (the errors logged there)"


def _revived_by_enabled(draft: Draft, sid: str, enabled: object, disabled: object) -> bool:
    """xinetd 2.3.15.3 marks every service disabled when the defaults have `enabled`,
    then enables the listed ones (confparse.c remove_disabled_services), which clears
    the mark a failed attribute set: such a service runs with that attribute unset."""
    key = sid.lower()
    return (bool(draft.failures) and not draft.disabled
            and isinstance(enabled, frozenset) and key in enabled
            and not (isinstance(disabled, frozenset) and key in disabled))


def _warn_shared_ids(services: list[ServiceConfig], sink: DiagnosticSink,
                     inetd_path: str | None) -> None:
    seen: dict[str, ServiceConfig] = {}
    for service in services:
        first = seen.setdefault(service.id.lower(), service)
        if first is not service:
            # inetd.conf has no field for an id: the entry has to move to an xinetd file.
            advice = ("move it to an xinetd file (pyxinetd convert writes one) and give it "
                      "its own `id`" if service.origin.file == inetd_path else "give each an "
                      "`id`")
            sink.warning(service.origin.file, service.origin.line, (
                f"service {service.name}: id {service.id} is also used by the service at "
                f"{first.origin}; they share their running servers' count (`instances`, "
                f"`per_source`), where xinetd counts each apart; {advice} so that limits, "
                f"logs and reconfiguration can tell them apart"))


def _warn_tcpmux_unreachable(services: list[ServiceConfig], sink: DiagnosticSink,
                             inetd_path: str | None) -> None:
    """TCPMUX services own no socket: only the `tcpmux` builtin reaches them, by name.
    Without it they load and are never served, which xinetd 2.3.15.3 does not mention."""
    if any(s.is_internal and s.name == "tcpmux" and not s.is_sensor and not s.is_redirect
           for s in services):
        return
    for service in services:
        if service.is_tcpmux_client:
            kind = "TCPMUXPLUS" if "TCPMUXPLUS" in service.types else "TCPMUX"
            add = ("a `tcpmux stream tcp nowait root internal` line"
                   if service.origin.file == inetd_path else
                   "a `service tcpmux` block with `type = INTERNAL`")
            sink.warning(service.origin.file, service.origin.line, (
                f"service {service.name}: type {kind}, but no tcpmux service is enabled, "
                f"so no client can reach it (add {add}, which listens on port 1)"))
