"""xinetd's command-line options for serving, read into MasterOptions.

xinetd's options exactly (reference §6.6): single-dash words, no bundling, parsing
stops at the first word that is not an option and any such word is a usage error,
unknown `-words` are ignored (Debian's init script passes -inetd_ipv6). click cannot
express that (it would read `-inetd_ipv6` as a bundle containing `-d`), so the words
are parsed by a small table here; pyxinetd.cli prints what this module reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from pyxinetd.master import MasterOptions
from pyxinetd.textbytes import quoted

_NUMBER = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_ULONG_MAX = 2**64 - 1
# The usage line of a usage error: xinetd's, word for word, which leaves out the flags
# below. --help shows every option, the flags a user starts with (-dontfork) included.
USAGE = ("Usage: pyxinetd [-d] [-f config_file] [-filelog filename] [-syslog facility] "
         "[-reuse] [-limit proc_limit] [-pidfile filename] [-logprocs limit] "
         "[-shutdownprocs limit] [-cc interval]")
SYNOPSIS = (USAGE.removeprefix("Usage: ")
            + " [-dontfork] [-stayalive] [-inetd_compat] [-version]")

# option -> (MasterOptions field or None, kind); kind: flag, str, int (>= 0), pos (> 0).
_OPTIONS: dict[str, tuple[str | None, str]] = {
    "-d": ("debug", "flag"),
    "-f": ("config_path", "str"),
    "-filelog": ("filelog", "str"),
    "-syslog": ("syslog_facility", "str"),
    "-pidfile": ("pidfile", "str"),
    "-dontfork": ("dontfork", "flag"),
    "-stayalive": ("stayalive", "flag"),
    "-limit": ("process_limit", "int"),
    "-logprocs": ("logprocs", "int"),
    "-cc": ("cc_interval", "int"),
    "-inetd_compat": ("inetd_compat", "flag"),
    "-reuse": (None, "flag"),
    "-shutdownprocs": (None, "str"),  # its argument is skipped unread, as in xinetd
    "-version": (None, "flag"),
}
# Every option word the daemon takes, in xinetd's order (man/pyxinetd.8 lists them all).
OPTION_WORDS: tuple[str, ...] = tuple(_OPTIONS)


class UsageError(Exception):
    pass


def parse_serving_args(args: Sequence[str]) -> tuple[MasterOptions, list[str], list[str]]:
    """Parse xinetd's options; returns (options, seen option words, messages).

    Words are taken in order, as xinetd does: `-version` ends the parsing where it
    stands (what follows it is not looked at), and the messages (unknown options, the
    -shutdownprocs deprecation) are in the order of their words."""
    values: dict[str, object] = {}
    seen: list[str] = []
    warnings: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("-") or word == "-":
            raise UsageError(f"unexpected argument {quoted(word)}")
        spec = _OPTIONS.get(word)
        if spec is None:
            warnings.append(f"pyxinetd: ignoring unknown option {word}")
            i += 1
            continue
        name, kind = spec
        seen.append(word)
        if word == "-version":
            return MasterOptions(), seen, warnings
        if kind == "flag":
            if name is not None:
                values[name] = True
            i += 1
            continue
        if i + 1 >= len(args):
            raise UsageError(f"option {word} needs an argument")
        raw = args[i + 1]
        i += 2
        value: object = raw
        if kind == "int":
            # As xinetd's strtol with an end check: leading white space and a sign,
            # then ASCII digits only (Python's int() would also take `1_0` or `5 `).
            if _NUMBER.fullmatch(raw) is None or int(raw) < 0:
                raise UsageError(f"option {word}: bad number {quoted(raw)}")
            # xinetd reads -limit and -logprocs with strtoul: beyond an unsigned long
            # it reports ERANGE and prints the usage (-cc, an int there, is taken as is).
            if word != "-cc" and int(raw) > _ULONG_MAX:
                raise UsageError(f"option {word}: number out of range {quoted(raw)}")
            value = int(raw)
        if name is not None:
            values[name] = value
        if word == "-shutdownprocs":
            warnings.append("The shutdownprocs option has been deprecated.")
    if "filelog" in values and "syslog_facility" in values:
        raise UsageError("-filelog and -syslog cannot be used together")
    options = MasterOptions()
    options = replace(options, **values)  # type: ignore[arg-type]
    # 0 means "none" for both, as in xinetd: `-limit 0` sets no process limit (it does
    # not refuse everything), `-cc 0` schedules no periodic check.
    if options.process_limit == 0:
        options = replace(options, process_limit=None)
    if options.cc_interval == 0:
        options = replace(options, cc_interval=None)
    return options, seen, warnings
