"""Value parsers for logging: where a service's log entries go (`log_type`: syslog or a
file with its size limits) and what they say (`log_on_success`, `log_on_failure`). Same
contract as pyxinetd.config.values: tokens in, typed value out, or ValueProblem.
"""

from __future__ import annotations

from pyxinetd.config.diagnostics import did_you_mean
from pyxinetd.config.model import (
    LOG_ON_FAILURE_FLAGS, LOG_ON_SUCCESS_FLAGS, FileTarget, LogTarget, SyslogTarget,
)
from pyxinetd.config.values import KIB, ValueContext, ValueProblem, Values, byte_size, choices, one_of
from pyxinetd.textbytes import ascii_upper

SYSLOG_FACILITIES = ("daemon", "auth", "authpriv", "user", "mail", "lpr", "news", "uucp", "ftp",
                     "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
# The largest log size limit xinetd can hold (32-bit unsigned fields, src/filelog.h).
LOG_LIMIT_MAX = 2**32 - 1
SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def parse_log_type(values: Values, ctx: ValueContext) -> LogTarget:
    if not values:
        raise ValueProblem("log_type needs SYSLOG facility [level] or FILE path [soft [hard]]")
    kind = ascii_upper(values[0])
    if kind == "SYSLOG":
        if not 2 <= len(values) <= 3:
            raise ValueProblem("wrong number of arguments", "expected SYSLOG facility [level]")
        facility = one_of(values[1], SYSLOG_FACILITIES, "syslog facility",
                         f"Unknown syslog facility: {values[1]}")
        level = (one_of(values[2], SYSLOG_LEVELS, "syslog level",
                       f"Unknown syslog level: {values[2]}") if len(values) == 3 else "info")
        return SyslogTarget(facility, level)
    if kind == "FILE":
        if not 2 <= len(values) <= 4:
            raise ValueProblem("wrong number of arguments", "expected FILE path [soft [hard]]")
        soft = (byte_size(values[2], "soft limit", words="soft limit is invalid")
                if len(values) > 2 else None)
        hard = (byte_size(values[3], "hard limit", words="hard limit is invalid")
                if len(values) > 3 else None)
        if soft is not None and hard is None:
            hard = soft + min(max(soft // 100, 5 * KIB), 20 * KIB)
        for which, size, written in (("soft", soft, len(values) > 2),
                                     ("hard", hard, len(values) > 3)):
            if size is not None and size > LOG_LIMIT_MAX:
                # xinetd keeps the limits in 32-bit fields: it would run with another
                # size (5000M as about 904 MiB, 4096M as none at all), without a word.
                given = values[2 if which == "soft" else 3] if written else f"{hard}"
                raise ValueProblem(
                    f"{which} limit is invalid: {given}",
                    f"at most {LOG_LIMIT_MAX} bytes"
                    + ("" if written else " (the hard limit the soft one gives: soft + "
                                          "1 %, 5 to 20 KiB)")
                    + "; xinetd would keep the low 32 bits, another size")
        if soft is not None and hard is not None and hard < soft:
            raise ValueProblem(f"hard limit ({hard}) is less than soft limit ({soft})",
                               "the hard limit must be at least the soft one")
        if not values[1].startswith("/"):
            ctx.remark(f"log file name {values[1]} is relative: it is taken from /, the "
                       f"daemon's working folder (xinetd takes it from the folder it was "
                       f"started in until its first reload, then from /)")
        if soft == 0:
            # xinetd controls the size only when the soft limit is not 0 (src/log.h,
            # FILELOG_SIZE_CONTROL): `FILE path 0 [hard]` is a log without limits.
            return FileTarget(values[1])
        return FileTarget(values[1], soft, hard)
    raise ValueProblem(f"Unknown log type: {values[0]}",
                       f"expected SYSLOG or FILE{did_you_mean(values[0], ('SYSLOG', 'FILE'))}")


def _log_flags(values: Values, allowed: tuple[str, ...], what: str) -> frozenset[str]:
    flags = []
    for value in values:
        if ascii_upper(value) == "RECORD" and what == "log_on_failure":
            raise ValueProblem("Bad log_on_failure flag: RECORD",
                               f"it no longer exists; expected {choices(allowed)}")
        flags.append(one_of(value, allowed, f"{what} flag", f"Bad {what} flag: {value}"))
    return frozenset(flags)


def parse_log_on_success(values: Values, ctx: ValueContext) -> frozenset[str]:
    return _log_flags(values, LOG_ON_SUCCESS_FLAGS, "log_on_success")


def parse_log_on_failure(values: Values, ctx: ValueContext) -> frozenset[str]:
    return _log_flags(values, LOG_ON_FAILURE_FLAGS, "log_on_failure")
