"""Value parsers for the limits a service runs under: the server's rlimits
(`rlimit_*`), how many may run (`instances`, `per_source`), how fast they may start
(`cps`), the load above which none start (`max_load`), how long a SENSOR keeps a client
out (`deny_time`) and when the service answers at all (`access_times`). Same contract as
pyxinetd.config.values: tokens in, typed value out, or ValueProblem.
"""

from __future__ import annotations

import re
import resource
from collections.abc import Callable

from pyxinetd.config.lookups import decimal
from pyxinetd.config.model import TimeWindow
from pyxinetd.config.values import (
    INT_MAX, LONG_MAX, ValueContext, ValueProblem, Values, byte_size, uint,
)
from pyxinetd.textbytes import ascii_lower, ascii_upper, quoted


def _rlimit(values: Values, suffixes: bool, words: str | None = None) -> int | None:
    if ascii_upper(values[0]) == "UNLIMITED":
        return resource.RLIM_INFINITY
    value = byte_size(values[0], "limit", suffixes,
                  None if words is None else f"{words} limit is invalid: {values[0]}")
    if value > LONG_MAX:
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
    # Only the values are bounded, not the digits: xinetd takes `000:00` or `023:0059`
    # (leading zeros) as the manual's hour 0-23 and minute 0-59.
    # xinetd judges the hour before it reads the minutes: `123:5x` is an invalid hour
    # where `12:99,` is an incorrect interval (its words for each, seen with 2.3.15.3).
    # An empty hour or minute is 0 (`:30-9:`, 0:30 to 9:00): xinetd reads each field by
    # multiplying in the digits it finds, starting from 0.
    hours, colon, minutes = text.partition(":")
    hour = 0 if not hours else decimal(hours)
    minute = 0 if colon and not minutes else decimal(minutes)
    incorrect = ValueProblem("incorrect time interval",
                             f"{quoted(interval)}: expected H:MM-H:MM")
    invalid = ValueProblem("invalid time interval",
                           f"{quoted(interval)}: hours 0-23, minutes 0-59")
    if not colon or hour is None:
        raise incorrect
    if hour == 24 and minute == 0:
        return 24 * 60
    if hour > 23:
        raise invalid
    if minute is None:
        raise incorrect
    if minute > 59:
        raise invalid
    return hour * 60 + minute


def parse_access_times(values: Values, ctx: ValueContext) -> tuple[TimeWindow, ...]:
    if not values:
        raise ValueProblem("access_times needs at least one H:MM-H:MM interval")
    windows = []
    for interval in values:
        start_text, dash, end_text = interval.partition("-")
        if not dash:
            raise ValueProblem("incorrect time interval", f"{quoted(interval)}: expected H:MM-H:MM")
        start, end = _clock(start_text, interval), _clock(end_text, interval)
        if start == 24 * 60:
            raise ValueProblem("invalid time interval",
                               f"{quoted(interval)}: 24:00 can only end an interval")
        if end == 24 * 60:
            ctx.remark(f"{interval}: 24:00 taken as the end of the day (xinetd 2.3.15.3 rejects "
                       "it and disables the service)")
        if start >= end:
            raise ValueProblem(f"invalid time interval: {interval}",
                               "the start must be before the end (split intervals that cross "
                               "midnight in two)")
        windows.append(TimeWindow(start, end))
    return tuple(windows)


def limit(words: str) -> Callable[[Values, ValueContext], int | None]:
    """The parser of a number-or-UNLIMITED xinetd calls `Number of WORDS`."""
    def parse(values: Values, ctx: ValueContext) -> int | None:
        if ascii_upper(values[0]) == "UNLIMITED":
            return None
        return uint(values[0], "limit", INT_MAX,
                     f"Number of {words} is invalid: {values[0]}")
    return parse


def parse_cps(values: Values, ctx: ValueContext) -> tuple[int, int]:
    return (uint(values[0], "cps rate", words="cps argument not a number"),
            uint(values[1], "cps wait", words="cps time argument not a number"))


# What strtod reads at the start of a word (xinetd reads max_load with it).
_LEADING_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|[+-]?(inf|nan))",
                             re.IGNORECASE | re.ASCII)


def parse_max_load(values: Values, ctx: ValueContext) -> float:
    word = values[0]
    # Only what strtod reads, whole: float() also takes `1_0.5` (10.5, where xinetd
    # stops at the `_`: 1) and digits of other scripts (`２.５`), which xinetd rejects.
    load = float(word) if _LEADING_NUMBER.fullmatch(word) else -1.0
    leading = _LEADING_NUMBER.match(word)
    if leading is not None and float(leading.group(1)) == 0:
        raise ValueProblem("error parsing max_load argument",
                           f"{quoted(word)}: expected a number greater than 0")
    if leading is None:
        raise ValueProblem("error reading max_load argument",
                           f"{quoted(word)}: expected a number greater than 0")
    if not load > 0 or load != load or load == float("inf"):
        # xinetd takes these (docs/compatibility.md): no words of its own.
        raise ValueProblem(f"bad max_load {quoted(word)}: expected a number greater than 0")
    return load


# strtol's spelling of -1: blanks, the sign, zeros.
_MINUS_ONE = re.compile(r"[ \t\n\v\f\r]*-0*1")


def parse_deny_time(values: Values, ctx: ValueContext) -> int:
    word = ascii_upper(values[0])
    if word == "FOREVER" or _MINUS_ONE.fullmatch(values[0]):
        # -1 is how xinetd keeps FOREVER (its CRITICAL line says `for -1 minutes`, its
        # dump `Deny Time: -1`), and reads it from the file as such (strtol).
        return -1
    if word == "NEVER":
        return 0
    if values[0].lstrip(" \t\n\v\f\r").startswith("-"):
        # xinetd takes it as minutes in the past: the client is listed until the next
        # scrub of the list, up to a minute, an accident nobody means.
        raise ValueProblem(f"Error parsing: {values[0]}",
                           f"{quoted(values[0])}: expected minutes (0 or more), FOREVER "
                           f"(or -1), or NEVER")
    return uint(values[0], "deny_time", LONG_MAX, f"Error parsing: {values[0]}")
