"""The option fields of hosts_access rules (hosts_options(5)) and `%` expansions.

Reference: peers-and-tcp-wrappers.md §5.5-5.6. Options are parsed and checked when a
table is loaded, so the per-request work is a walk over ready-made values; an option
error is kept with the option and only counts (denying) when its rule matches, as in
libwrap. `user`/`group` names are resolved here, at load time, never per connection
(NSS may block). `severity` is checked against libwrap's own facility and level tables
(Debian 7.6.q: `authpriv`, `ftp`, `error`, `warn` or a number are bad values there).

Only `%n` and `%N` make libwrap look a name up; `%h %H %c %s` give the name when it is
already known (a name pattern or an earlier `%n` looked it up) and the address otherwise
(checked with Debian's libwrap). So a table can say in advance, from its patterns and
these two letters, whether a request must wait for a reverse lookup.
"""

from __future__ import annotations

import grp
import pwd
import re
from dataclasses import dataclass

from pyxinetd.access.hostspatterns import Endpoint, Request, iter_expansions
from pyxinetd.textbytes import as_written

# Characters kept as they are in `%` expansions; anything else becomes '_' so that
# the result cannot confuse a shell (percent_x in libwrap).
_SAFE = set("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# The letters `expand` knows; libwrap warns about any other and expands it to nothing.
KNOWN_LETTERS = frozenset("aAcdhHnNprRsu%")
# What C's isspace() takes for a space in the C locale (libwrap's chop_string() trims
# these); Python's str.strip() would also trim a no-break space or U+2028.
C_SPACES = " \t\n\v\f\r"
# Letters whose expansion libwrap makes safe in the request's own copy of the client's
# name (percent_x edits the buffer eval_hostname returns): from then on libwrap's own
# lines show the name with '_' in it too.
CLIENT_TEXT_LETTERS = frozenset("chn")
# Letters that look up a host name: the client's, the server's.
CLIENT_NAME_LETTERS = frozenset("n")
SERVER_NAME_LETTERS = frozenset("N")
# Letters that show a host's name once something has looked it up, its address before.
CLIENT_INFO_LETTERS = frozenset("ch")
SERVER_INFO_LETTERS = frozenset("Hs")
# Letters that read the connection's endpoints (addresses, ports) beyond the client
# address the caller always has.
ENDPOINT_LETTERS = frozenset("AHNRrs")

# keyword -> (needs a value, may have a value, must be last, %-expanded)
OPTIONS: dict[str, tuple[bool, bool, bool, bool]] = {
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

# The values libwrap accepts for numeric options: a C int, a linger time of 0 or more,
# an rfc931 timeout of 1 or more (checked with Debian's libwrap). pyxinetd also refuses
# values beyond a C int, which libwrap would silently wrap.
_INT_MAX = 2**31 - 1
NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "nice": (-_INT_MAX - 1, _INT_MAX), "linger": (0, _INT_MAX), "rfc931": (1, _INT_MAX)}

# libwrap's tables (options.c): the facilities and levels `severity` accepts.
SYSLOG_FACILITIES = frozenset({
    "kern", "user", "mail", "daemon", "auth", "lpr", "news", "uucp", "cron",
    *(f"local{n}" for n in range(8))})
SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


@dataclass(frozen=True)
class Option:
    keyword: str            # as written (the trace shows it so)
    value: str | None
    error: str | None = None
    # `user`/`group` resolved at load time.
    uid: int | None = None
    gid: int | None = None
    # `severity`: the level word, lower case (the facility is checked, then dropped).
    level: str | None = None

    @property
    def letters(self) -> frozenset[str]:
        """The `%` letters this option's value expands."""
        if self.value is None or not OPTIONS.get(self.keyword.lower(), (0, 0, 0, False))[3]:
            return frozenset()
        return frozenset(letter for _, letter in iter_expansions(self.value)
                         if letter is not None)


def _resolve_user(value: str) -> tuple[int | None, int | None, str | None]:
    user, dot, group = value.partition(".")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None, None, f'unknown user: "{user}"'
    gid = entry.pw_gid
    if dot:     # `user nobody.` names the group "", which does not exist
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return None, None, f'unknown group: "{group}"'
    return entry.pw_uid, gid, None


def _severity_level(value: str) -> str | None:
    """`[facility.]level` -> the level, lower case; None when either word is unknown."""
    facility, dot, level = value.lower().rpartition(".")
    if dot and facility not in SYSLOG_FACILITIES:
        return None
    return level if level in SYSLOG_LEVELS else None


def parse_option(field_text: str, is_last: bool, where: str) -> Option:
    """One option field of a rule; `where` ("hosts.allow, line 3") prefixes errors."""
    # libwrap's process_options(): the name ends at "= \t\r\n" (a vertical tab, a form
    # feed or a no-break space is part of it), one `=` may follow.
    match = re.match(r"([^= \t\r\n]*)[ \t\r\n]*(?:=[ \t\r\n]*)?(.*)$", field_text, re.S)
    assert match is not None
    key, value_text = match.group(1), match.group(2).strip(C_SPACES)
    value = value_text or None
    if key == "":
        return Option(key, value, f"{where}: missing option name")
    spec = OPTIONS.get(key.lower())
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
    if lowered == "severity" and value is not None:
        level = _severity_level(value)
        if level is None:
            return Option(key, value,
                          f'{where}: bad syslog facility or severity: "{value}"')
        return Option(key, value, level=level)
    if lowered in NUMBER_RANGES and value is not None and not _number_ok(lowered, value):
        return Option(key, value, f'{where}: bad {lowered} value: "{value}"')
    if lowered == "umask" and value is not None and umask_value(value) is None:
        return Option(key, value, f'{where}: bad umask value: "{value}"')
    if lowered == "setenv" and value is not None and "%" not in value \
            and setenv_pair(value) is None:
        return Option(key, value, f'{where}: bad setenv name: "{value}"')
    return Option(key, value)


def _number_ok(keyword: str, text: str) -> bool:
    """sscanf("%d") reads all of `text` (a sign allowed), in libwrap's range."""
    if not re.fullmatch(r"[+-]?\d+", text):
        return False
    low, high = NUMBER_RANGES[keyword]
    return low <= int(text) <= high


def umask_value(text: str) -> int | None:
    """sscanf("%o") of the whole value, which must fit in 0777 (libwrap's check)."""
    if not re.fullmatch(r"[+-]?[0-7]+", text):
        return None
    mask = int(text, 8) % 2**32     # a negative value wraps, as in C
    return mask if mask <= 0o777 else None


def setenv_pair(text: str) -> tuple[str, str] | None:
    """`NAME VALUE` split at the first blank; None when setenv(3) would refuse the name
    (empty, or with `=` in it, which libwrap reports as an error)."""
    name, value = _split_first_blank(text.strip(C_SPACES))
    if name == "" or "=" in name:
        return None
    return name, value.strip(C_SPACES)


def _split_first_blank(text: str) -> tuple[str, str]:
    match = re.search(r"[ \t\r\n]", text)
    if match is None:
        return text, ""
    return text[:match.start()], text[match.start():]


def unrecognized(text: str) -> list[str]:
    """libwrap's warnings about the `%` sequences of `text` it does not know, in order
    (`%z`, or a `%` before a CR)."""
    return [f"unrecognized %{letter}" for _, letter in iter_expansions(text)
            if letter is not None and letter not in KNOWN_LETTERS]


def expand(text: str, request: Request) -> str:
    """`%` sequences of hosts_access(5); unsafe characters of each expansion -> '_'."""
    out: list[str] = []
    for literal, letter in iter_expansions(text):
        if letter is None:
            out.append(literal)
            continue
        value = _expansion(letter, request)
        if letter != "%":
            # Byte by byte, as libwrap replaces them: a UTF-8 `é` is two `_`.
            value = "".join(c if c in _SAFE else "_" for c in map(chr, as_written(value)))
        out.append(value)
    return "".join(out)


def client_info(request: Request) -> str:
    """What `%c` stands for, before its unsafe characters are replaced."""
    return _expansion("c", request)


def _reads_name(letter: str, end: Endpoint) -> bool:
    """Whether `%letter` reads `end`'s name: `%n`/`%N` always, the others once a lazy
    endpoint's name has been asked for (the address before)."""
    return letter in "nN" or not end.lazy or end.name_asked


def _name_read(letter: str, request: Request) -> Endpoint | None:
    """The endpoint whose name `%letter` reads for `request`, if any."""
    for readers, end in ((CLIENT_NAME_LETTERS | CLIENT_INFO_LETTERS, request.client),
                         (SERVER_NAME_LETTERS | SERVER_INFO_LETTERS, request.server)):
        if letter in readers and _reads_name(letter, end):
            return end
    return None


def unasked_reader(letters: frozenset[str], request: Request) -> tuple[Endpoint, str] | None:
    """The first of `letters` (a text's `%` letters) that would read a name the gate
    never asked for (Endpoint.unasked), with its endpoint; None when none would."""
    for letter in sorted(letters):
        end = _name_read(letter, request)
        if end is not None and end.name_unasked:
            return end, f"%{letter}"
    return None


def _expansion(letter: str, request: Request) -> str:
    client, server = request.client, request.server
    end = _name_read(letter, request)
    if end is not None:
        end.read_by(f"%{letter}")
    if letter == "a":
        return client.addr_text
    if letter == "A":
        return server.addr_text
    if letter == "c":
        user = request.user_text
        return client.info if user == "unknown" else f"{user}@{client.info}"
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
