"""Value parsers of the attribute table: tokens in, typed value out, or ValueProblem.

Each parser gets the tokens after the operator (count already checked where the count
is fixed) and a ValueContext for look-ups and non-fatal remarks. A ValueProblem's
message says what is wrong and what was expected; the loader adds file:line and the
consequence (service disabled, defaults line ignored).

This module holds that contract (ValueProblem, ValueContext, how a problem is worded)
and the word readers every parser shares (`one_of`, `uint`, `byte_size`), with the
parsers of what a service is and runs: its type and flags, socket, port, server,
account and environment. The parsers of its limits are in pyxinetd.config.limitvalues,
of its logging in pyxinetd.config.logvalues, of its network addresses in
pyxinetd.config.netvalues.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pyxinetd.config.addresses import AddressError, AddressParse
from pyxinetd.config.diagnostics import did_you_mean
from pyxinetd.config.lookups import Lookups, UserInfo
from pyxinetd.config.lookups import decimal
from pyxinetd.config.model import SERVICE_FLAGS, SERVICE_TYPES, SocketType
from pyxinetd.interpreter import interpreter_problem
from pyxinetd.textbytes import ascii_lower, ascii_upper, quoted

Values = tuple[str, ...]

KIB = 1024
MIB = 1024 * 1024
# The largest numbers xinetd's parsers take into their C types (int, unsigned 32-bit
# wire fields, unsigned long / rlim_t); anything larger is rejected as it is there.
INT_MAX = 2**31 - 1
U32_MAX = 2**32 - 1
LONG_MAX = 2**63 - 1
ULONG_MAX = 2**64 - 1
# The widest rpc_version range a service may register.
MAX_RPC_VERSIONS = 1000
# A value word never holds a blank or a tab; xinetd's strtol/strtoul/strtod skip these
# other C-locale spaces before a number and accept them after it (`instances = 5\v`).
NUMBER_SPACES = "\n\v\f\r"


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
    # The daemon's start-up environment, for passenv's names (None: not checked here).
    environ: Mapping[str, str] | None = None
    # (xinetd's words or None, pyxinetd's text): see remark.
    remarks: list[tuple[str | None, str]] = field(default_factory=list)
    # Parsed address tokens: the same lists recur in file after file.
    addresses: dict[str, AddressParse | AddressError] = field(default_factory=dict)
    # The host names of the address list being parsed, as written (pyxinetd.config.
    # hostnames checks at load that they resolve).
    host_names: list[str] = field(default_factory=list)
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


def choices(words: Iterable[str]) -> str:
    """`a, b or c`."""
    items = list(words)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


def one_of(word: str, allowed: Iterable[str], what: str, words: str | None = None) -> str:
    """`word` as spelt in `allowed` (any case); `words` are xinetd's for a bad one."""
    pool = list(allowed)
    for candidate in pool:
        if ascii_lower(candidate) == ascii_lower(word):
            return candidate
    expected = f"expected {choices(pool)}{did_you_mean(word, pool)}"
    if words is not None:
        raise ValueProblem(words, expected)
    raise ValueProblem(f"bad {what} {quoted(word)}: {expected}")


def unsigned(word: str) -> int | None:
    """An unsigned decimal word as xinetd's strtol/strtoul read it: an optional '+'."""
    word = word.strip(NUMBER_SPACES)
    return decimal(word[1:] if word[:1] == "+" else word)


def uint(word: str, what: str, maximum: int | None = None, words: str | None = None) -> int:
    """An unsigned number up to `maximum`; `words` are xinetd's for a bad one (the
    reason names the word unless they do)."""
    value = unsigned(word)
    limit = ULONG_MAX if maximum is None else maximum
    if value is None:
        expected = "expected a non-negative decimal number"
    elif value > limit:
        expected = f"expected a number from 0 to {limit}"
    else:
        return value
    if words is None:
        raise ValueProblem(f"bad {what} {quoted(word)}: {expected}")
    raise ValueProblem(words, expected if word in words else f"{quoted(word)}: {expected}")


def parse_yes_no(values: Values, ctx: ValueContext) -> bool:
    """`disable`: xinetd's message does not name the attribute."""
    return one_of(values[0], ("yes", "no"), "yes/no value", f"Bad value: {values[0]}") == "yes"


def yes_no(name: str) -> Callable[[Values, ValueContext], bool]:
    """The parser of a yes/no attribute xinetd names in its message (`wait`, ...)."""
    def parse(values: Values, ctx: ValueContext) -> bool:
        return one_of(values[0], ("yes", "no"), "yes/no value",
                     f"Bad value for {name}: {values[0]}") == "yes"
    return parse


def parse_text(values: Values, ctx: ValueContext) -> str:
    return values[0]


def parse_types(values: Values, ctx: ValueContext) -> frozenset[str]:
    if not values:
        raise ValueProblem(f"type needs at least one of {choices(SERVICE_TYPES)}")
    return frozenset(one_of(v, SERVICE_TYPES, "service type", f"Bad service type: {v}")
                     for v in values)


def parse_flags(values: Values, ctx: ValueContext) -> frozenset[str]:
    if not values:   # xinetd: "attribute flags expects at least 1 value"
        raise ValueProblem(f"flags needs at least one of {choices(SERVICE_FLAGS)}")
    return frozenset(one_of(v, SERVICE_FLAGS, "service flag", f"Bad service flag: {v}")
                     for v in values)


def parse_socket_type(values: Values, ctx: ValueContext) -> SocketType:
    return SocketType(one_of(values[0], [s.value for s in SocketType], "socket type",
                            f"Bad socket type: {values[0]}"))


def parse_protocol(values: Values, ctx: ValueContext) -> tuple[str, int]:
    found = ctx.lookups.protocol(values[0])
    if found is None:
        raise ValueProblem(f"Protocol {values[0]} not in /etc/protocols",
                           "expected a protocol name listed there")
    return found


def parse_port(values: Values, ctx: ValueContext) -> int:
    return uint(values[0], "port number", 65535, "port number is invalid")


def parse_rpc_version(values: Values, ctx: ValueContext) -> tuple[int, int]:
    low, dash, high = values[0].partition("-")
    first = uint(low, "rpc_version", U32_MAX, f"bad version range: {low}")
    last = uint(high, "rpc_version", U32_MAX, f"bad version range: {low}") if dash else first
    if first > last:
        raise ValueProblem(f"bad version range: {first}",
                           f"{quoted(values[0])}: expected N or N-M with N <= M")
    if last - first >= MAX_RPC_VERSIONS:
        # Each version is registered with the portmapper, one call each (xinetd sleeps a
        # second per version at start): a range of millions is a typo, never a service.
        raise ValueProblem(f"bad version range {quoted(values[0])}: at most {MAX_RPC_VERSIONS} "
                           "versions")
    return first, last


def parse_uint(values: Values, ctx: ValueContext) -> int:
    return uint(values[0], "number", U32_MAX, f"Error parsing: {values[0]}")


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
    problem = interpreter_problem(path)
    if problem is not None:
        # xinetd takes it, and every client's exec fails (ENOENT): kept, but said now.
        ctx.remark(f"server {path}: {problem}; every exec of it will fail")
    return path


def parse_stderr(values: Values, ctx: ValueContext) -> str:
    """pyxinetd's `stderr = FILE`: where a server's descriptor 2 goes instead of the
    client (appended to; /dev/null to discard)."""
    path = values[0]
    if not path.startswith("/"):
        raise ValueProblem(f"stderr needs an absolute file name, not {quoted(path)}")
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
    bare = word.strip(NUMBER_SPACES)
    digits = bare[1:] if bare[:1] == "+" else bare
    if not digits or any(c not in "01234567" for c in digits) or int(digits, 8) > 0o777:
        raise ValueProblem("umask argument is invalid.",
                           f"{quoted(word)}: expected an octal number 0-777")
    return int(digits, 8)


def parse_nice(values: Values, ctx: ValueContext) -> int:
    word = values[0]
    bare = word.strip(NUMBER_SPACES)
    magnitude = decimal(bare[1:] if bare[:1] in "+-" else bare)
    if magnitude is None:
        raise ValueProblem(f"Error parsing: {word}", "expected a signed decimal number")
    if magnitude > LONG_MAX:
        raise ValueProblem(f"Error parsing: {word}", "out of range (-20 to 19 are useful)")
    return -magnitude if bare[:1] == "-" else magnitude


def parse_env(values: Values, ctx: ValueContext) -> Values:
    for value in values:
        if "=" not in value:
            raise ValueProblem(f"{value} has no '='", "expected NAME=value")
        if value.startswith("="):
            # xinetd accepts it; no server could read a variable without a name.
            ctx.remark(f"env string {quoted(value)} has no variable name before '='; it is not "
                       "passed to the server")
    return values


def parse_names(values: Values, ctx: ValueContext) -> Values:
    # A set of names, as xinetd keeps it: `passenv = PATH PATH` names PATH once.
    return tuple(dict.fromkeys(values))


def byte_size(word: str, what: str, suffixes: bool = True, words: str | None = None) -> int:
    """A number of bytes, with an optional k or m suffix when `suffixes`; `words` are
    xinetd's for a bad one."""
    multiplier = 1
    number = word = word.strip(NUMBER_SPACES)
    if suffixes and word[-1:] in ("k", "K"):
        multiplier, number = KIB, word[:-1]
    elif suffixes and word[-1:] in ("m", "M"):
        multiplier, number = MIB, word[:-1]
    value = unsigned(number)
    if value is None:
        expected = "a number with an optional k or m suffix" if suffixes else "a number"
        if words is not None:
            raise ValueProblem(words, f"expected {expected}")
        raise ValueProblem(f"{what} {quoted(word)} is invalid: expected {expected}")
    if value * multiplier > ULONG_MAX:
        if words is not None:
            raise ValueProblem(words, f"more than {ULONG_MAX}")
        raise ValueProblem(f"{what} {quoted(word)} is invalid: more than {ULONG_MAX}")
    return value * multiplier


def parse_ids(values: Values, ctx: ValueContext) -> frozenset[str]:
    return frozenset(v.lower() for v in values)
