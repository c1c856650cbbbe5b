"""Value parsers of the attribute table: tokens in, typed value out, or ValueProblem.

Each parser gets the tokens after the operator (count already checked where the count
is fixed) and a ValueContext for look-ups and non-fatal remarks. A ValueProblem's
message says what is wrong and what was expected; the loader adds file:line and the
consequence (service disabled, defaults line ignored).
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyxinetd.config.addresses import AddressError, AddressParse
from pyxinetd.config.diagnostics import did_you_mean
from pyxinetd.config.lookups import Lookups, UserInfo
from pyxinetd.config.lookups import decimal, is_digits
from pyxinetd.config.model import (
    LOG_ON_FAILURE_FLAGS, LOG_ON_SUCCESS_FLAGS, SERVICE_FLAGS, SERVICE_TYPES,
    FileTarget, LogTarget, SocketType, SyslogTarget, TimeWindow,
)

Values = tuple[str, ...]

SYSLOG_FACILITIES = ("daemon", "auth", "authpriv", "user", "mail", "lpr", "news", "uucp", "ftp",
                     "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_KIB = 1024
_MIB = 1024 * 1024
# The largest numbers xinetd's parsers take into their C types (int, unsigned 32-bit
# wire fields, unsigned long / rlim_t); anything larger is rejected as it is there.
_INT_MAX = 2**31 - 1
_U32_MAX = 2**32 - 1
_LONG_MAX = 2**63 - 1
_ULONG_MAX = 2**64 - 1
# The widest rpc_version range a service may register.
MAX_RPC_VERSIONS = 1000


class ValueProblem(ValueError):
    """The value is unusable; the message names it and what was expected.

    With `reason`, `message` is xinetd's own words for the problem, which log parsers
    and administrators grep: the loader's line starts with them and goes on with the
    service and the reason (see xinetd_first).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        joint = " " if message.endswith(".") else ": "
        super().__init__(message if reason is None else f"{message}{joint}{reason}")
        self.message = message
        self.reason = reason


def xinetd_first(words: str, title: str, rest: str) -> str:
    """A log line that starts with xinetd's `words`, then says where and what follows:
    `Server /x is not executable (service S: No such file or directory; service disabled)`."""
    return f"{words} ({title}: {rest})"


def expects_at_least_one(name: str) -> str:
    """xinetd's words for an attribute of a variable number of values written empty."""
    return f"attribute {name} expects at least 1 value and none was given."


def describe(problem: ValueProblem, title: str, consequence: str) -> str:
    """The line reporting `problem` in the service or defaults `title`."""
    if problem.reason is None:
        return f"{title}: {problem.message}; {consequence}"
    return xinetd_first(problem.message, title, f"{problem.reason}; {consequence}")


@dataclass
class ValueContext:
    lookups: Lookups
    # (xinetd's words or None, pyxinetd's text): see remark.
    remarks: list[tuple[str | None, str]] = field(default_factory=list)
    # Parsed address tokens: the same lists recur in file after file.
    addresses: dict[str, AddressParse | AddressError] = field(default_factory=dict)
    # xinetd.conf takes numeric uids and gids; inetd.conf names only (its numbers are
    # refused before they get here), so its messages must not suggest a number.
    numeric_ids: bool = True

    def remark(self, message: str, words: str | None = None) -> None:
        """A warning about the value; with `words`, xinetd's for it, which start the line."""
        self.remarks.append((words, message))


@dataclass(frozen=True)
class UserSpec:
    text: str
    info: UserInfo


def _choices(words: Iterable[str]) -> str:
    items = list(words)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


def _enum(word: str, allowed: Iterable[str], what: str, words: str | None = None) -> str:
    """`word` as spelt in `allowed` (any case); `words` are xinetd's for a bad one."""
    pool = list(allowed)
    for candidate in pool:
        if candidate.lower() == word.lower():
            return candidate
    expected = f"expected {_choices(pool)}{did_you_mean(word, pool)}"
    if words is not None:
        raise ValueProblem(words, expected)
    raise ValueProblem(f"bad {what} {word!r}: {expected}")


def unsigned(word: str) -> int | None:
    """An unsigned decimal word as xinetd's strtol/strtoul read it: an optional '+'."""
    return decimal(word[1:] if word[:1] == "+" else word)


def _uint(word: str, what: str, maximum: int | None = None, words: str | None = None) -> int:
    """An unsigned number up to `maximum`; `words` are xinetd's for a bad one (the
    reason names the word unless they do)."""
    value = unsigned(word)
    limit = _ULONG_MAX if maximum is None else maximum
    if value is None:
        expected = "expected a non-negative decimal number"
    elif value > limit:
        expected = f"expected a number from 0 to {limit}"
    else:
        return value
    if words is None:
        raise ValueProblem(f"bad {what} {word!r}: {expected}")
    raise ValueProblem(words, expected if word in words else f"{word!r}: {expected}")


def parse_yes_no(values: Values, ctx: ValueContext) -> bool:
    return _enum(values[0], ("yes", "no"), "yes/no value") == "yes"


def yes_no(name: str) -> Callable[[Values, ValueContext], bool]:
    """The parser of a yes/no attribute xinetd names in its message (`wait`, ...)."""
    def parse(values: Values, ctx: ValueContext) -> bool:
        return _enum(values[0], ("yes", "no"), "yes/no value",
                     f"Bad value for {name}: {values[0]}") == "yes"
    return parse


def parse_text(values: Values, ctx: ValueContext) -> str:
    return values[0]


def parse_types(values: Values, ctx: ValueContext) -> frozenset[str]:
    if not values:
        raise ValueProblem(f"type needs at least one of {_choices(SERVICE_TYPES)}")
    return frozenset(_enum(v, SERVICE_TYPES, "service type", f"Bad service type: {v}")
                     for v in values)


def parse_flags(values: Values, ctx: ValueContext) -> frozenset[str]:
    if not values:   # xinetd: "attribute flags expects at least 1 value"
        raise ValueProblem(f"flags needs at least one of {_choices(SERVICE_FLAGS)}")
    return frozenset(_enum(v, SERVICE_FLAGS, "service flag", f"Bad service flag: {v}")
                     for v in values)


def parse_socket_type(values: Values, ctx: ValueContext) -> SocketType:
    return SocketType(_enum(values[0], [s.value for s in SocketType], "socket type",
                            f"Bad socket type: {values[0]}"))


def parse_protocol(values: Values, ctx: ValueContext) -> tuple[str, int]:
    found = ctx.lookups.protocol(values[0])
    if found is None:
        raise ValueProblem(f"Protocol {values[0]} not in /etc/protocols",
                           "expected a protocol name listed there")
    return found


def parse_port(values: Values, ctx: ValueContext) -> int:
    return _uint(values[0], "port number", 65535, "port number is invalid")


def parse_rpc_version(values: Values, ctx: ValueContext) -> tuple[int, int]:
    low, dash, high = values[0].partition("-")
    first = _uint(low, "rpc_version", _U32_MAX)
    last = _uint(high, "rpc_version", _U32_MAX) if dash else first
    if first > last:
        raise ValueProblem(f"bad version range {values[0]!r}: expected N or N-M with N <= M")
    if last - first >= MAX_RPC_VERSIONS:
        # Each version is registered with the portmapper, one call each (xinetd sleeps a
        # second per version at start): a range of millions is a typo, never a service.
        raise ValueProblem(f"bad version range {values[0]!r}: at most {MAX_RPC_VERSIONS} "
                           "versions")
    return first, last


def parse_uint(values: Values, ctx: ValueContext) -> int:
    return _uint(values[0], "number", _U32_MAX)


def parse_server(values: Values, ctx: ValueContext) -> str:
    path = values[0]
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ValueProblem(f"Server {path} is not executable", why) from None
    if not stat.S_ISREG(mode) or not os.access(path, os.X_OK):
        raise ValueProblem(f"Server {path} is not executable",
                           "expected an executable regular file")
    return path


def parse_stderr(values: Values, ctx: ValueContext) -> str:
    """pyxinetd's `stderr = FILE`: where a server's descriptor 2 goes instead of the
    client (appended to; /dev/null to discard)."""
    path = values[0]
    if not path.startswith("/"):
        raise ValueProblem(f"stderr needs an absolute file name, not {path!r}")
    return path


def parse_server_args(values: Values, ctx: ValueContext) -> Values:
    if not values:
        raise ValueProblem(expects_at_least_one("server_args"),
                           "remove the line to run the server without arguments")
    return values


def parse_user(values: Values, ctx: ValueContext) -> UserSpec:
    info = ctx.lookups.user(values[0])
    if info is None:
        raise ValueProblem(f"Unknown user: {values[0]}", (
            "expected a user name or a numeric uid" if ctx.numeric_ids
            else "expected a user name (inetd.conf takes names only)"))
    return UserSpec(values[0], info)


def parse_group(values: Values, ctx: ValueContext) -> int:
    gid = ctx.lookups.group(values[0])
    if gid is None:
        raise ValueProblem(f"Unknown group: {values[0]}", (
            "expected a group name or a numeric gid" if ctx.numeric_ids
            else "expected a group name (inetd.conf takes names only)"))
    return gid


def parse_umask(values: Values, ctx: ValueContext) -> int:
    word = values[0]
    digits = word[1:] if word[:1] == "+" else word
    if not digits or any(c not in "01234567" for c in digits) or int(digits, 8) > 0o777:
        raise ValueProblem(f"umask argument {word!r} is invalid: expected an octal number 0-777")
    return int(digits, 8)


def parse_nice(values: Values, ctx: ValueContext) -> int:
    word = values[0]
    magnitude = decimal(word[1:] if word[:1] in "+-" else word)
    if magnitude is None:
        raise ValueProblem(f"Error parsing: {word}", "expected a signed decimal number")
    if magnitude > _LONG_MAX:
        raise ValueProblem(f"Error parsing: {word}", "out of range (-20 to 19 are useful)")
    return -magnitude if word[:1] == "-" else magnitude


def parse_env(values: Values, ctx: ValueContext) -> Values:
    for value in values:
        if "=" not in value:
            raise ValueProblem(f"{value} has no '='", "expected NAME=value")
        if value.startswith("="):
            # xinetd accepts it; no server could read a variable without a name.
            ctx.remark(f"env string {value!r} has no variable name before '='; it is not "
                       "passed to the server")
    return values


def parse_names(values: Values, ctx: ValueContext) -> Values:
    return values


def _size(word: str, what: str, suffixes: bool = True, words: str | None = None) -> int:
    multiplier = 1
    number = word
    if suffixes and word[-1:] in ("k", "K"):
        multiplier, number = _KIB, word[:-1]
    elif suffixes and word[-1:] in ("m", "M"):
        multiplier, number = _MIB, word[:-1]
    value = unsigned(number)
    if value is None:
        expected = "a number with an optional k or m suffix" if suffixes else "a number"
        if words is not None:
            raise ValueProblem(words, f"expected {expected}")
        raise ValueProblem(f"{what} {word!r} is invalid: expected {expected}")
    if value * multiplier > _ULONG_MAX:
        if words is not None:
            raise ValueProblem(words, f"more than {_ULONG_MAX}")
        raise ValueProblem(f"{what} {word!r} is invalid: more than {_ULONG_MAX}")
    return value * multiplier


def _rlimit(values: Values, suffixes: bool, words: str | None = None) -> int | None:
    if values[0].upper() == "UNLIMITED":
        return resource.RLIM_INFINITY
    value = _size(values[0], "limit", suffixes,
                  None if words is None else f"{words} limit is invalid: {values[0]}")
    if value > _LONG_MAX:
        # Beyond what setrlimit can be handed from Python, and no smaller in effect.
        return resource.RLIM_INFINITY
    return value or None  # 0 means "not set"


def parse_rlimit_cpu(values: Values, ctx: ValueContext) -> int | None:
    return _rlimit(values, False, "CPU")


def rlimit_size(words: str) -> Callable[[Values, ValueContext], int | None]:
    """The parser of a size limit xinetd calls `WORDS limit` (`Data`, ...)."""
    def parse(values: Values, ctx: ValueContext) -> int | None:
        return _rlimit(values, True, words)
    return parse


def _clock(text: str, interval: str) -> int:
    hours, colon, minutes = text.partition(":")
    if (not colon or not is_digits(hours) or not is_digits(minutes)
            or len(hours) > 2 or len(minutes) > 2):
        raise ValueProblem(f"invalid time interval {interval!r}: expected H:MM-H:MM")
    hour, minute = int(hours), int(minutes)
    if hour == 24 and minute == 0:
        return 24 * 60
    if hour > 23 or minute > 59:
        raise ValueProblem(f"invalid time interval {interval!r}: hours 0-23, minutes 0-59")
    return hour * 60 + minute


def parse_access_times(values: Values, ctx: ValueContext) -> tuple[TimeWindow, ...]:
    if not values:
        raise ValueProblem("access_times needs at least one H:MM-H:MM interval")
    windows = []
    for interval in values:
        start_text, dash, end_text = interval.partition("-")
        if not dash:
            raise ValueProblem(f"invalid time interval {interval!r}: expected H:MM-H:MM")
        start, end = _clock(start_text, interval), _clock(end_text, interval)
        if start == 24 * 60:
            raise ValueProblem(f"invalid time interval {interval!r}: 24:00 can only end an interval")
        if end == 24 * 60:
            ctx.remark(f"{interval}: 24:00 taken as the end of the day (xinetd 2.3.15.3 rejects "
                       "it and disables the service)")
        if start >= end:
            raise ValueProblem(f"invalid time interval {interval!r}: the start must be before the "
                               "end (split intervals that cross midnight in two)")
        windows.append(TimeWindow(start, end))
    return tuple(windows)


def limit(words: str) -> Callable[[Values, ValueContext], int | None]:
    """The parser of a number-or-UNLIMITED xinetd calls `Number of WORDS`."""
    def parse(values: Values, ctx: ValueContext) -> int | None:
        if values[0].upper() == "UNLIMITED":
            return None
        return _uint(values[0], "limit", _INT_MAX,
                     f"Number of {words} is invalid: {values[0]}")
    return parse


def parse_cps(values: Values, ctx: ValueContext) -> tuple[int, int]:
    return _uint(values[0], "cps rate"), _uint(values[1], "cps wait")


def parse_max_load(values: Values, ctx: ValueContext) -> float:
    try:
        load = float(values[0])
    except ValueError:
        load = -1.0
    if not load > 0 or load != load or load == float("inf"):
        raise ValueProblem(f"bad max_load {values[0]!r}: expected a number greater than 0")
    return load


def parse_deny_time(values: Values, ctx: ValueContext) -> int:
    word = values[0].upper()
    if word == "FOREVER":
        return -1
    if word == "NEVER":
        return 0
    return _uint(values[0], "deny_time", _LONG_MAX, f"Error parsing: {values[0]}")


def parse_log_type(values: Values, ctx: ValueContext) -> LogTarget:
    if not values:
        raise ValueProblem("log_type needs SYSLOG facility [level] or FILE path [soft [hard]]")
    kind = values[0].upper()
    if kind == "SYSLOG":
        if not 2 <= len(values) <= 3:
            raise ValueProblem("wrong number of arguments: expected SYSLOG facility [level]")
        facility = _enum(values[1], SYSLOG_FACILITIES, "syslog facility",
                         f"Unknown syslog facility: {values[1]}")
        level = (_enum(values[2], SYSLOG_LEVELS, "syslog level",
                       f"Unknown syslog level: {values[2]}") if len(values) == 3 else "info")
        return SyslogTarget(facility, level)
    if kind == "FILE":
        if not 2 <= len(values) <= 4:
            raise ValueProblem("wrong number of arguments: expected FILE path [soft [hard]]")
        soft = _size(values[2], "soft limit") if len(values) > 2 else None
        hard = _size(values[3], "hard limit") if len(values) > 3 else None
        if soft is not None and hard is None:
            hard = soft + min(max(soft // 100, 5 * _KIB), 20 * _KIB)
        if soft is not None and hard is not None and hard < soft:
            raise ValueProblem(f"hard limit ({hard}) is less than soft limit ({soft})")
        return FileTarget(values[1], soft, hard)
    raise ValueProblem(f"unknown log type {values[0]!r}: expected SYSLOG or FILE"
                       f"{did_you_mean(values[0], ('SYSLOG', 'FILE'))}")


def _log_flags(values: Values, allowed: tuple[str, ...], what: str) -> frozenset[str]:
    flags = []
    for value in values:
        if value.upper() == "RECORD" and what == "log_on_failure":
            raise ValueProblem("Bad log_on_failure flag: RECORD",
                               f"it no longer exists; expected {_choices(allowed)}")
        flags.append(_enum(value, allowed, f"{what} flag", f"Bad {what} flag: {value}"))
    return frozenset(flags)


def parse_log_on_success(values: Values, ctx: ValueContext) -> frozenset[str]:
    return _log_flags(values, LOG_ON_SUCCESS_FLAGS, "log_on_success")


def parse_log_on_failure(values: Values, ctx: ValueContext) -> frozenset[str]:
    return _log_flags(values, LOG_ON_FAILURE_FLAGS, "log_on_failure")


def parse_ids(values: Values, ctx: ValueContext) -> frozenset[str]:
    return frozenset(v.lower() for v in values)
