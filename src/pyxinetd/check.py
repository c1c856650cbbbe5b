"""`pyxinetd check`: load a configuration and show what would be served, like `nginx -t`.

The report is built from the loaded Configuration alone, so it shows exactly what the
daemon would run: every default already applied, users and ports resolved. Two
renderings share one report: a block of text per service for people, and one JSON
object (docs/check-json.md, a stable interface) for scripts and for the
compatibility suite, which compares it with the real xinetd's state dump.

Exit statuses: 0 everything loaded (warnings allowed), 1 something was dropped by an
error, 2 the main file could not be read. Only cli.py turns them into an exit.
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from typing import Any

from pyxinetd.config.diagnostics import Diagnostic, Severity
from pyxinetd.config.model import (
    LOG_ON_FAILURE_FLAGS,
    LOG_ON_SUCCESS_FLAGS,
    SERVICE_FLAGS,
    SERVICE_TYPES,
    AddressEntry,
    Configuration,
    DroppedEntry,
    FileTarget,
    LogTarget,
    ServiceConfig,
    SyslogTarget,
)
from pyxinetd.errors import ConfigError

# Bumped only for incompatible changes of the JSON layout; additions keep it.
JSON_SCHEMA_VERSION = 1

STATUS_OK = 0
STATUS_DROPPED = 1
STATUS_UNREADABLE = 2

# Severities that mean "something the administrator wrote was not applied".
_FAILING = (Severity.ERROR, Severity.CRITICAL)


def run_check(config_file: str, *, as_json: bool = False, inetd_compat: bool = False,
              inetd_path: str = "/etc/inetd.conf", needs_service: bool = False
              ) -> tuple[str, int]:
    """Load `config_file` (and inetd.conf, with `inetd_compat`); return (the report to
    print, the exit status). `needs_service`: a daemon without -stayalive (or -dontfork,
    which implies it) exits when
    nothing is activated, so that is STATUS_UNREADABLE too (it would not start)."""
    from pyxinetd.config import load

    try:
        config = load(config_file, inetd_compat=inetd_compat, inetd_path=inetd_path)
    except ConfigError as exc:
        return _unreadable(config_file, exc, as_json), STATUS_UNREADABLE
    config = with_redirect_problems(config)
    status = exit_status(config)
    if needs_service and not config.services:
        status = STATUS_UNREADABLE
    if as_json:
        return json.dumps(check_report(config, status), indent=2, sort_keys=False) + "\n", status
    text = render_text(config, status)
    if status == STATUS_UNREADABLE:
        # Before the verdict line, the reason it failed.
        head, verdict = text.rstrip("\n").rsplit("\n", 1)
        text = (f"{head}\n{config.path}: no service to activate, and without -stayalive "
                f"(or -dontfork) the daemon exits\n{verdict}\n")
    return text, status


def with_redirect_problems(config: Configuration) -> Configuration:
    """`config` with the ERROR the daemon logs once it has loaded it for each redirect
    target that cannot be resolved or leads back to its own service (pyxinetd.redirect),
    at the service's line: such a service closes every connection instead of relaying
    it. Judged by this host's addresses, as the daemon judges them."""
    from pyxinetd import redirect

    problems = redirect.resolve_targets(config.services)
    found: list[Diagnostic] = []
    for svc in config.services:
        problem = problems.pop(svc.id, None)
        if problem is not None:
            found.append(Diagnostic(Severity.ERROR, svc.origin.file, svc.origin.line,
                                    f"{svc.id}: redirect target {problem}"))
    if not found:
        return config
    return replace(config, diagnostics=config.diagnostics + tuple(found))


def exit_status(config: Configuration) -> int:
    """1 when an error dropped a service or an entry, else 0."""
    if any(d.severity in _FAILING for d in config.diagnostics):
        return STATUS_DROPPED
    if any(not _is_deliberate(entry) for entry in config.dropped):
        return STATUS_DROPPED
    return STATUS_OK


def _is_deliberate(entry: DroppedEntry) -> bool:
    """A service switched off on purpose: `disable = yes`, or the `enabled`/`disabled`
    lists of `defaults` (the loader's reasons for those, docs/check-json.md)."""
    reason = entry.reason.lower()
    return (reason.startswith("disabled (disable = yes)")
            or "defaults' enabled list" in reason or "defaults' disabled list" in reason)


# --------------------------------------------------------------------------- report


def check_report(config: Configuration, status: int | None = None) -> dict[str, Any]:
    """The JSON-ready report (layout documented in docs/check-json.md)."""
    return {
        "version": JSON_SCHEMA_VERSION,
        "config_file": config.path,
        "files": list(config.files),
        "status": exit_status(config) if status is None else status,
        "services": [service_report(svc) for svc in config.services],
        "dropped": [_dropped_report(entry) for entry in config.dropped],
        "diagnostics": [_diagnostic_report(d) for d in config.diagnostics],
    }


def service_report(svc: ServiceConfig) -> dict[str, Any]:
    argv = list(svc.server_argv)
    return {
        "name": svc.name,
        "id": svc.id,
        "type": _ordered(svc.types, SERVICE_TYPES),
        "flags": _ordered(svc.flags, SERVICE_FLAGS),
        "socket_type": svc.socket_type.value,
        "protocol": svc.protocol,
        "protocol_number": svc.protocol_number,
        "port": svc.port,
        "wait": svc.wait,
        "user": svc.user,
        "user_name": svc.user_name,
        "group": svc.group,
        "groups": svc.groups,
        "supplementary_groups": list(svc.supplementary_groups),
        "server": svc.server,
        "argv0": argv[0] if argv else None,
        "server_args": argv[1:],
        "instances": svc.instances,
        "per_source": svc.per_source,
        "cps": list(svc.cps),
        "max_load": svc.max_load,
        "bind": svc.bind,
        "family": _family(svc.family),
        "v6only": svc.v6only,
        "only_from": None if svc.only_from is None else _addresses(svc.only_from),
        "no_access": _addresses(svc.no_access),
        "access_times": [str(w) for w in svc.access_times],
        "redirect": None if svc.redirect is None else [svc.redirect[0], svc.redirect[1]],
        "env": _env_dict(svc.env),
        "passenv": None if svc.passenv is None else list(svc.passenv),
        "environment": None if svc.environment is None else list(svc.environment),
        "nice": svc.nice,
        "umask": svc.umask,
        "rlimits": {name: value for name, value in svc.rlimits.items()},
        "log_type": _log_type(svc.log_type),
        "log_on_success": _ordered(svc.log_on_success, LOG_ON_SUCCESS_FLAGS),
        "log_on_failure": _ordered(svc.log_on_failure, LOG_ON_FAILURE_FLAGS),
        "banner": svc.banner,
        "banner_success": svc.banner_success,
        "banner_fail": svc.banner_fail,
        "stderr": svc.stderr,
        "redirect_source": svc.redirect_source,
        "deny_time": svc.deny_time,
        "libwrap": svc.libwrap,
        "rpc_version": None if svc.rpc_version is None else list(svc.rpc_version),
        "rpc_number": svc.rpc_number,
        "origin": {"file": svc.origin.file, "line": svc.origin.line},
    }


def _ordered(values: frozenset[str], canonical: tuple[str, ...]) -> list[str]:
    """The canonical spelling and order of a word set; unknown words last, sorted."""
    known = {c.lower(): c for c in canonical}
    present = {known.get(v.lower(), v) for v in values}
    return [c for c in canonical if c in present] + sorted(present - set(canonical))


def _family(family: int) -> str:
    if family == socket.AF_INET:
        return "inet"
    if family == socket.AF_INET6:
        return "inet6"
    return str(family)


def _addresses(entries: tuple[AddressEntry, ...]) -> list[str]:
    return [e.text for e in entries]


def _env_dict(env: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in env:
        name, _, value = item.partition("=")
        pairs[name] = value
    return pairs


def _log_type(target: LogTarget | None) -> dict[str, Any] | None:
    if isinstance(target, SyslogTarget):
        return {"kind": "syslog", "facility": target.facility, "level": target.level}
    if isinstance(target, FileTarget):
        return {"kind": "file", "path": target.path, "soft_limit": target.soft_limit,
                "hard_limit": target.hard_limit, "common": target.common}
    return None


def _dropped_report(entry: DroppedEntry) -> dict[str, Any]:
    return {"name": entry.name, "id": entry.id, "file": entry.file, "line": entry.line,
            "reason": entry.reason}


def _diagnostic_report(d: Diagnostic) -> dict[str, Any]:
    return {"severity": d.severity.value, "file": d.file, "line": d.line, "col": d.col,
            "message": d.message}


def _unreadable(config_file: str, exc: ConfigError, as_json: bool) -> str:
    diag = Diagnostic(Severity.CRITICAL, exc.path or config_file, exc.line, exc.message,
                      exc.col)
    if as_json:
        report = {"version": JSON_SCHEMA_VERSION, "config_file": config_file, "files": [],
                  "status": STATUS_UNREADABLE, "services": [], "dropped": [],
                  "diagnostics": [_diagnostic_report(diag)]}
        return json.dumps(report, indent=2) + "\n"
    return f"{_diagnostic_line(diag)}\n{config_file}: configuration test failed\n"


# --------------------------------------------------------------------------- text


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _limit(value: int | None) -> str:
    return "UNLIMITED" if value is None else str(value)


def _service_lines(svc: ServiceConfig) -> list[tuple[str, str]]:
    report = service_report(svc)
    rows: list[tuple[str, str]] = []

    def add(key: str, value: str) -> None:
        rows.append((key, value))

    if report["type"]:
        add("type", " ".join(report["type"]))
    if report["flags"]:
        add("flags", " ".join(report["flags"]))
    add("socket_type", svc.socket_type.value)
    add("protocol", f"{svc.protocol} ({svc.protocol_number})")
    add("port", "-" if svc.port is None else str(svc.port))
    add("wait", _yes_no(svc.wait))
    if svc.user is not None:
        add("user", f"{svc.user_name} ({svc.user})" if svc.user_name else str(svc.user))
    if svc.group is not None:
        add("group", str(svc.group))
    add("groups", _yes_no(svc.groups))
    if svc.redirect is not None:
        add("redirect", f"{svc.redirect[0]} {svc.redirect[1]}")
    if svc.server is not None:
        add("server", svc.server)
        add("argv", " ".join(svc.server_argv))
    add("instances", _limit(svc.instances))
    add("per_source", _limit(svc.per_source))
    add("cps", f"{svc.cps[0]} {svc.cps[1]}")
    if svc.max_load is not None:
        add("max_load", f"{svc.max_load:g}")
    add("bind", svc.bind or "all addresses")
    add("family", f"{report['family']}" + (" v6only" if svc.v6only else ""))
    if svc.only_from is None:
        add("only_from", "(not set: everyone)")
    elif not svc.only_from:
        add("only_from", "(empty: no one)")
    else:
        add("only_from", " ".join(report["only_from"]))
    if svc.no_access:
        add("no_access", " ".join(report["no_access"]))
    if svc.access_times:
        add("access_times", " ".join(report["access_times"]))
    if svc.env:
        add("env", " ".join(svc.env))
    if svc.passenv is not None:
        add("passenv", " ".join(svc.passenv) or "(empty)")
    if svc.nice is not None:
        add("nice", str(svc.nice))
    if svc.umask is not None:
        add("umask", f"{svc.umask:03o}")
    for name, value in svc.rlimits.items():
        add(f"rlimit_{name}", str(value))
    add("log_type", _log_text(svc.log_type))
    if svc.log_on_success:
        add("log_on_success", " ".join(report["log_on_success"]))
    if svc.log_on_failure:
        add("log_on_failure", " ".join(report["log_on_failure"]))
    for key in ("banner", "banner_success", "banner_fail", "stderr", "redirect_source",
                "libwrap"):
        if report[key] is not None:
            add(key, str(report[key]))
    if svc.is_sensor:
        add("deny_time", {-1: "FOREVER", 0: "NEVER"}.get(svc.deny_time, str(svc.deny_time)))
    if svc.rpc_version is not None:
        low, high = svc.rpc_version
        add("rpc_version", str(low) if low == high else f"{low}-{high}")
    if svc.rpc_number is not None:
        add("rpc_number", str(svc.rpc_number))
    return rows


def _log_text(target: LogTarget | None) -> str:
    if isinstance(target, SyslogTarget):
        return f"SYSLOG {target.facility} {target.level}"
    if isinstance(target, FileTarget):
        text = f"FILE {target.path}"
        if target.soft_limit is not None:
            text += f" {target.soft_limit}"
            if target.hard_limit is not None:
                text += f" {target.hard_limit}"
        return text + (" (common)" if target.common else "")
    return "none"


def _diagnostic_line(d: Diagnostic) -> str:
    where = ""
    if d.file is not None:
        where = d.file if d.line is None else f"{d.file}:{d.line}"
        where += ": "
    return f"{where}{d.severity.value}: {d.message}"


def render_text(config: Configuration, status: int | None = None) -> str:
    """One block per service that would be activated, then drops and diagnostics."""
    status = exit_status(config) if status is None else status
    out: list[str] = []
    for svc in config.services:
        out.append(f"service {svc.name} (id {svc.id})  # {svc.origin}")
        rows = _service_lines(svc)
        width = max(len(k) for k, _ in rows)
        out.extend(f"    {key.ljust(width)}  {value}" for key, value in rows)
        out.append("")
    for entry in config.dropped:
        where = ""
        if entry.file is not None:
            where = entry.file if entry.line is None else f"{entry.file}:{entry.line}"
            where += ": "
        label = entry.name or "(entry)"
        if entry.id and entry.id != entry.name:
            label += f" (id {entry.id})"
        out.append(f"{where}dropped: {label}: {entry.reason}")
    # DEBUG lines (each included file read, ...) are noise here; --json keeps them.
    for d in config.diagnostics:
        if d.severity is not Severity.DEBUG:
            out.append(_diagnostic_line(d))
    counts = {sev: sum(1 for d in config.diagnostics if d.severity is sev) for sev in Severity}
    errors = counts[Severity.ERROR] + counts[Severity.CRITICAL]
    out.append(f"{config.path}: {len(config.services)} service(s) to activate, "
               f"{len(config.dropped)} dropped, {counts[Severity.WARNING]} warning(s), "
               f"{errors} error(s)")
    out.append(f"{config.path}: configuration test "
               f"{'is successful' if status == STATUS_OK else 'failed'}")
    return "\n".join(out) + "\n"
