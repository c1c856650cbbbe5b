"""The log lines about the configuration, compared with the real xinetd 2.3.15.3's.

Log parsers and administrators grep these lines, so where both daemons report the
same problem pyxinetd's line must have xinetd's level, start with xinetd's text (it
may go on with more: a reason, what was expected) and carry the same
`[file=F] [line=N]`. The runs are those of test_xinetd_compat.py (compat_runs.py):
xinetd's program log against the diagnostics of `pyxinetd check --json` on the same
main file, which are the lines the daemon writes at start-up and on reload
(ProgramLog.diagnostic: `message [file=F] [line=N]`, DEBUG ones only with -d, while
xinetd's -filelog always has them). test_daemon_logs_the_check_diagnostics shows
that on a real daemon.

Lines the comparison cannot pair are explained by KNOWN: each entry is a deliberate
difference (docs/compatibility.md, "Diagnostics") or a wording not aligned yet, with
the reason; a line no entry explains fails the test of its case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compat_runs import SYNTHETIC, CaseResult, case_params
from corpus import Case

pytestmark = pytest.mark.oracle

_LOG_LINE = re.compile(r"^\d\d/\d+/\d+@[\d:]+ xinetd\[\d+\]: ([A-Z]+): (.*)$")
_WHERE = re.compile(r" \[file=([^\]]*)\](?: \[line=(\d+)\])?\s*$")
# Where the configuration has been read: the rest of the log is about the run.
_STARTED = re.compile(r"^(pyxinetd \S+ \(compatible with xinetd \S+\) |\S+ )?started with ")
# xinetd's lines about binding and starting services, not about the text (a raw IPv6
# socket refuses IPV6_V6ONLY: docs/compatibility.md, "Raw IPv6 services").
_RUNTIME = re.compile(r"bind failed|socket creation failed|bind retry attempt|pmap_set|"
                      r"failed to start and is deactivated|^Exiting\.\.\.$|"
                      r"^Setting IPV6_V6ONLY option failed ")


@dataclass(frozen=True)
class Line:
    level: str
    text: str                 # without the [file=] [line=] part
    file: str | None
    line: int | None

    def __str__(self) -> str:
        where = "" if self.file is None else f" [file={self.file}]" + (
            "" if self.line is None else f" [line={self.line}]")
        return f"{self.level}: {self.text}{where}"


def _split_where(level: str, text: str) -> Line:
    m = _WHERE.search(text)
    if m is None:
        return Line(level, text.rstrip(), None, None)
    return Line(level, text[:m.start()], m.group(1),
                int(m.group(2)) if m.group(2) is not None else None)


def xinetd_lines(log: str) -> list[Line]:
    """xinetd's lines about the configuration text, in order."""
    entries: list[tuple[str, str]] = []
    # Lines end at '\n' only: str.splitlines() would also cut at a \v or \f that a
    # value in a message holds.
    for raw in log.split("\n"):
        m = _LOG_LINE.match(raw)
        if m is None:
            if entries:   # a message with a newline inside (a value holding one)
                entries[-1] = (entries[-1][0], entries[-1][1] + "\n" + raw)
            continue
        if _STARTED.search(m.group(2)):
            break
        entries.append((m.group(1), m.group(2)))
    return [_split_where(level, text) for level, text in entries
            if not _RUNTIME.search(text)]


def pyxinetd_lines(report: dict[str, Any]) -> list[Line]:
    """The lines the daemon logs for the diagnostics of `check --json` (-d for DEBUG)."""
    return [Line(d["severity"].upper(), d["message"], d["file"], d["line"])
            for d in report["diagnostics"]]


def pair(theirs: list[Line], ours: list[Line]) -> tuple[list[Line], list[Line]]:
    """(xinetd's lines pyxinetd has no counterpart for, pyxinetd's left over).

    A counterpart has the same level and place and a text starting with xinetd's.
    xinetd's checks of a whole service give no place; pyxinetd's name the service's
    file and line, so such a line pairs with one at any place.
    """
    left = list(ours)
    missing: list[Line] = []
    for line in theirs:
        match = next((o for o in left if o.level == line.level
                      and (line.file is None or (o.file == line.file and o.line == line.line))
                      # rstrip: xinetd ends a few messages with a newline of their own
                      # (`umask argument is invalid.\n [file=F] [line=N]`).
                      and o.text.startswith(line.text.rstrip())), None)
        if match is None:
            missing.append(line)
        else:
            left.remove(match)
    return missing, left


@dataclass(frozen=True)
class Known:
    """Lines of one side ("xinetd" or "pyxinetd") matching `pattern`, and why.

    With `beside`, only where the other daemon has a line at the same place matching it
    (at any place when either line has none, or with `anywhere`); `(?P=sid)` in it
    stands for the service name the pattern's group `sid` matched.
    """

    side: str
    pattern: str
    reason: str
    beside: str | None = None
    anywhere: bool = False

    def explains(self, side: str, line: Line, other: list[Line]) -> bool:
        m = re.search(self.pattern, str(line)) if side == self.side else None
        if m is None:
            return False
        if self.beside is None:
            return True
        beside = self.beside
        if "sid" in m.groupdict():
            beside = beside.replace("(?P=sid)", re.escape(m.group("sid")))
        return any((self.anywhere or line.file is None or o.file is None
                    or (o.file == line.file and o.line == line.line))
                   and re.search(beside, str(o)) for o in other)


_ONE_LINE = ("pyxinetd reports a bad value in one line that ends with what happens to the "
             "service; xinetd follows its own line with a second one")
_NOT_YET = "wording not aligned with xinetd's yet (see docs/compatibility.md, Diagnostics)"

KNOWN: tuple[Known, ...] = (
    # -- deliberate ------------------------------------------------------------------
    Known("xinetd", r"^ERROR: Error parsing attribute \S+ - DISABLING SERVICE", _ONE_LINE),
    Known("xinetd", r"^WARNING: attribute \S+ expects at least 1 value and none was given\.",
          "the same words start pyxinetd's one ERROR line for the empty value (" + _ONE_LINE
          + ")"),
    Known("pyxinetd", r"^ERROR: attribute \S+ expects at least 1 value and none was given\. ",
          "xinetd's WARNING words, in pyxinetd's one ERROR line (" + _ONE_LINE + ")"),
    Known("xinetd", r"^ERROR: Must specify a server in (?P<sid>\S+)$",
          "xinetd goes on with a service whose server line failed; pyxinetd's line for "
          "that failure disables it",
          beside=r"^ERROR: Server \S+ is not executable \(service (?P=sid):"),
    Known("xinetd", r"^ERROR: Service (?P<sid>\S+) missing attribute user - DISABLING$",
          "xinetd goes on with a service whose user line failed; pyxinetd's line for "
          "that failure disables it",
          beside=r"^ERROR: Unknown user: .* \(service (?P=sid):"),
    Known("xinetd", r"^(?:ERROR|INFO): (?:Service |Unlisted service: )(?P<sid>\S+) (?:missing "
                    r"attribute \S+ - DISABLING|must have a port entry|will use IPv6 or "
                    r"fallback to IPv4)$",
          "xinetd's `disable = no` revives a service whose attribute failed, and then its "
          "checks reject it; pyxinetd keeps it disabled (docs/compatibility.md) and says so",
          beside=r"^WARNING: service (?P=sid): 'disable = no' does not re-enable"),
    Known("xinetd", r"^ERROR: (?:Must specify a server in |Service (?=\S+ expects port )|"
                    r"Port not specified (?:for|and can't find) service: )(?P<sid>\S+)(?:$| "
                    r"expects port \d+, not \d+$| and no protocol given$| with getservbyname$)",
          "the same, for xinetd's checks of the server and the port",
          beside=r"^WARNING: service (?P=sid): 'disable = no' does not re-enable"),
    Known("xinetd", r"^ERROR: Unlisted service: (?P<sid>\S+) must have a port entry$",
          "the port line had an inline comment, which xinetd counts as values",
          beside=r"^WARNING: .*inline comment after the value of port"),
    Known("xinetd", r"^ERROR: Service \S+ should not have TRAFFIC flag set since its not "
                    r"redirected$",
          "TRAFFIC from the defaults is dropped with a warning (docs/compatibility.md)",
          beside=r"^WARNING: .*TRAFFIC from the defaults' log_on_success dropped"),
    Known("pyxinetd", r"^INFO: Service (servers|services) will use IPv6 or fallback to IPv4",
          "pyxinetd serves the `servers` and `services` internal services"),
    Known("pyxinetd", r"^(ERROR|WARNING|INFO): ",
          "xinetd stops at a bad value in the defaults; pyxinetd ignores that line and "
          "reads on (docs/compatibility.md), reporting what follows (a service's `will "
          "use IPv6 or fallback to IPv4` too)",
          beside=r"^ERROR: A fatal error was encountered while parsing the default section",
          anywhere=True),
    Known("pyxinetd", r"^(ERROR|WARNING): ",
          "xinetd's skip after a block missing its `}` swallows the next entry; pyxinetd "
          "stops before it (docs/grammar.md) and reports that entry's lines",
          beside=r"^ERROR: Bad operator for attribute: service ", anywhere=True),
    Known("pyxinetd", r"^ERROR: service \S+: protocol \S+ does not carry socket_type ",
          "xinetd takes the pair and fails when it creates the socket, a run-time line"),
    Known("pyxinetd", r"^WARNING: service \S+: port \d+ ignored: a TCPMUX service has no ",
          "xinetd ignores a TCPMUX service's port silently (it listens on no such port)"),
    Known("pyxinetd", r"^WARNING: service \S+: (banner|banner_success|banner_fail)(, \S+)* "
                      r"ignored: a stream wait = yes server accepts ",
          "xinetd takes the banners silently and fails at run time (its child writes them "
          "to the listening socket and dies of SIGPIPE)"),
    Known("pyxinetd", r"^WARNING: service \S+: id \S+ is also used by the service at ",
          "pyxinetd warns of two services sharing an id; xinetd is silent"),
    Known("pyxinetd", r"^WARNING: service \S+: TRAFFIC from the defaults' log_on_success "
                      r"dropped ",
          "TRAFFIC in the defaults no longer disables services (docs/compatibility.md)"),
    Known("pyxinetd", r"^WARNING: extra words after service '[^']*' ignored: \{ ",
          "pyxinetd says why the next line is not the `{` (xinetd: `missing '{'` only)"),
    Known("xinetd", r"^DEBUG: removing \S+$",
          "pyxinetd's `removing ID: reason` DEBUG line names the service's file and line"),
    Known("pyxinetd", r"^DEBUG: removing ", "the same line, with its place"),
    Known("pyxinetd", r"^WARNING: .*\(xinetd 2\.3\.15\.3 (would|rejects|reads)",
          "a warning about a deliberate difference of behaviour (docs/compatibility.md), "
          "which xinetd has no line for"),
    Known("pyxinetd", r"^ERROR: Server \S+ is not executable \(service \S+: expected an "
                      r"executable regular file;",
          "a server that is not a regular file (a folder) is rejected at load; xinetd's "
          "access(X_OK) check passes it (docs/compatibility.md)"),
    Known("pyxinetd", r"^WARNING: NUL byte at column \d+: the rest of the line is ignored",
          "a NUL byte ends its line in both daemons (C strings); pyxinetd says so, xinetd "
          "is silent"),
    Known("pyxinetd", r"^WARNING: .*inline comment after the value",
          "inline comments are stripped (docs/compatibility.md); xinetd has no line for it"),
    Known("xinetd", r"^WARNING: attribute \S+ expects \d+ values and \d+ values were specified",
          "xinetd counts the words of an inline comment as values; pyxinetd strips it",
          beside=r"^WARNING: .*inline comment after the value"),
    Known("pyxinetd", r"^WARNING: .*: env string '=",
          "pyxinetd warns of a value that does not do what it seems to; xinetd is silent"),
    Known("xinetd", r"^ERROR: No such internal service: (servers|services)/",
          "pyxinetd serves the `servers` and `services` internal services"),
    Known("xinetd", r"^(ERROR|WARNING): (Unknown user: nobody|Server /bin/cat|"
                    r"Bad (service|socket) type: \S+|Bad value for wait: no)\r",
          "CRLF files: xinetd keeps the \\r in the last value of a line"),
    Known("xinetd", r"^ERROR: missing service keyword",
          "a lone `}` between entries: pyxinetd ignores that line with a WARNING in "
          "xinetd's words; xinetd skips up to the next `}` (docs/compatibility.md)",
          beside=r"^WARNING: missing service keyword \(stray '\}'"),
    Known("pyxinetd", r"^WARNING: missing service keyword \(stray '\}'",
          "xinetd's words for the lone `}`, at WARNING: only that line is ignored",
          beside=r"^ERROR: missing service keyword"),
    Known("xinetd", r"^WARNING: missing \} in last service entry",
          "xinetd's skip after a lone `}` runs to the end of the file; pyxinetd's stops "
          "at that line",
          beside=r"^WARNING: missing service keyword \(stray '\}'", anywhere=True),
    Known("xinetd", r"^ERROR: missing service keyword \[",
          "xinetd's scan of a lone attribute name cut away the `service` line after the "
          "entry's `}`, so it takes the `{` for a stray line (its numbers one short from "
          "there); pyxinetd reads that entry and warns that xinetd drops it",
          beside=r"^WARNING: service \S+ starts here \(xinetd 2\.3\.15\.3 would never read "
                 r"this line, which its scan of the attribute name", anywhere=True),
    Known("xinetd", r"^WARNING: missing \} in last service entry",
          "the same words, one line later in pyxinetd: xinetd's numbers are one short after "
          "its scan of a lone attribute name ran on past the end of its line",
          beside=r"^WARNING: missing \} in last service entry \(xinetd 2\.3\.15\.3 would "
                 r"reach the end of the file", anywhere=True),
    Known("xinetd", r"^ERROR: Bad operator for attribute: \}",
          "`} # comment` ends the entry in pyxinetd (docs/compatibility.md); xinetd reads "
          "it as an attribute",
          beside=r"^WARNING: '\}' followed by a comment", anywhere=True),
    Known("xinetd", r"^ERROR: Bad operator for attribute: ",
          "xinetd cuts a line of 16 KiB in two; pyxinetd reads it whole and warns",
          beside=r"^WARNING: line is \d+ bytes long", anywhere=True),
    Known("xinetd", r"^ERROR: missing service keyword \[",
          "xinetd cuts a comment line of 16 KiB between entries and reads its rest as a "
          "line; pyxinetd reads it whole and warns",
          beside=r"^WARNING: line is \d+ bytes long, a comment", anywhere=True),
    Known("xinetd", r"^WARNING: Bad (\S+ flag|service type): ",
          "the same words start pyxinetd's one ERROR line for the bad word (" + _ONE_LINE
          + ")",
          beside=r"^ERROR: Bad (\S+ flag|service type): "),
    Known("pyxinetd", r"^ERROR: Bad (\S+ flag|service type): ",
          "xinetd's WARNING words, in pyxinetd's one ERROR line (" + _ONE_LINE + ")",
          beside=r"^WARNING: Bad (\S+ flag|service type): "),
    Known("xinetd", r"^WARNING: operator '-=' not supported for env attribute",
          "the same words start pyxinetd's one ERROR line (" + _ONE_LINE + ")",
          beside=r"^ERROR: operator '-=' not supported for env attribute"),
    Known("pyxinetd", r"^ERROR: operator '-=' not supported for env attribute",
          "xinetd's WARNING words, in pyxinetd's one ERROR line (" + _ONE_LINE + ")",
          beside=r"^WARNING: operator '-=' not supported for env attribute"),
    Known("xinetd", r"^ERROR: failed to parse ",
          "both drop the word and read on; pyxinetd's line is a WARNING",
          beside=r"^WARNING: failed to parse "),
    Known("pyxinetd", r"^WARNING: failed to parse ",
          "xinetd's words for a dropped address word, at WARNING: the service is kept",
          beside=r"^ERROR: failed to parse "),
    # -- not aligned yet: xinetd's text, then pyxinetd's (the levels and places agree) ----
    *(Known(side, pattern, _NOT_YET) for side, pattern in (
        ("xinetd", r"^ERROR: (A fatal error|creation of default log failed)"),
    )),
)


def _unexplained(side: str, lines: list[Line], other: list[Line]) -> list[str]:
    return [f"{side} only: {line}" for line in lines
            if not any(k.explains(side, line, other) for k in KNOWN)]


def compare_lines(result: CaseResult) -> tuple[list[str], set[Known]]:
    """(the unexplained differences, the KNOWN entries used) for one case."""
    assert result.report is not None, result.error
    theirs, ours = xinetd_lines(result.run.log), pyxinetd_lines(result.report)
    missing, extra = pair(theirs, ours)
    used = {k for side, lines, other in (("xinetd", missing, ours), ("pyxinetd", extra, theirs))
            for line in lines for k in KNOWN if k.explains(side, line, other)}
    return (_unexplained("xinetd", missing, ours)
            + _unexplained("pyxinetd", extra, theirs), used)


@pytest.mark.parametrize(("variant", "case"), case_params())
def test_same_diagnostics_as_xinetd(variant: str, case: Case,
                                    compat_results: dict[tuple[str, str], CaseResult]) -> None:
    result = compat_results[(variant, case.label)]
    assert not result.run.harness_error, result.run.harness_error
    diffs, _used = compare_lines(result)
    assert not diffs, (f"{case.label} ({variant}):\n  " + "\n  ".join(diffs)
                       + "\n--- xinetd log ---\n" + result.run.log)


def in_order(theirs: list[Line], ours: list[Line]) -> list[str]:
    """pyxinetd's counterparts of xinetd's lines (paired as `pair` does) that come in
    another order than xinetd's; xinetd's lines without a place are left out."""
    left = list(enumerate(ours))
    found: list[tuple[int, Line]] = []
    for line in theirs:
        if line.file is None:
            continue
        match = next((item for item in left if item[1].level == line.level
                      and item[1].file == line.file and item[1].line == line.line
                      and item[1].text.startswith(line.text.rstrip())), None)
        if match is not None:
            left.remove(match)
            found.append(match)
    return [f"{line} (after a line xinetd logs later)"
            for (index, line), (before, _) in zip(found[1:], found) if index < before]


@pytest.mark.parametrize("case", [c for c in SYNTHETIC], ids=lambda c: c.label)
def test_lines_in_xinetds_order(case: Case,
                                compat_results: dict[tuple[str, str], CaseResult]) -> None:
    result = compat_results[("asis", case.label)]
    assert result.report is not None, result.error
    late = in_order(xinetd_lines(result.run.log), pyxinetd_lines(result.report))
    assert not late, "\n".join(late)


def test_every_known_difference_still_occurs(
        compat_results: dict[tuple[str, str], CaseResult]) -> None:
    used: set[Known] = set()
    for result in compat_results.values():
        if result.report is not None:
            used |= compare_lines(result)[1]
    stale = [k for k in KNOWN if k not in used]
    assert not stale, "KNOWN entries no line needs any more:\n" + "\n".join(map(str, stale))


def test_a_pyxinetd_line_no_entry_lists_is_a_difference() -> None:
    new = Line("WARNING", "service s: something new", "/f", 3)
    assert _unexplained("pyxinetd", [new], []) == [f"pyxinetd only: {new}"]
    known = Line("WARNING", "service s: id s is also used by the service at /f:1", "/f", 3)
    assert _unexplained("pyxinetd", [known], []) == []


def test_a_line_beside_another_needs_that_line() -> None:
    theirs = Line("ERROR", "Must specify a server in s", None, None)
    failed = Line("ERROR", "Server /x is not executable (service s: gone; service disabled)",
                  "/f", 9)
    assert _unexplained("xinetd", [theirs], [failed]) == []
    assert _unexplained("xinetd", [theirs], []) == [f"xinetd only: {theirs}"]


# ------------------------------------------------------------------- the real daemon


def _run_daemon(conf: Path, log: Path, tmp: Path) -> str:
    """Start pyxinetd -dontfork -filelog LOG on `conf`; its log once it started working."""
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyxinetd", "-dontfork", "-d", "-filelog", str(log),
         "-pidfile", str(tmp / "pid"), "-f", str(conf)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and "Started working" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
        return log.read_text(errors="replace") if log.exists() else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


# -d: `DATE: LEVEL: PID {function} text`.
_DAEMON_LINE = re.compile(r"^\d\d/\d+/\d+@[\d:]+: ([A-Z]+): (\d+ \{parse\} )?(.*)$")


@pytest.mark.parametrize("name", ["value-errors.conf", "users-and-groups.conf"])
def test_daemon_logs_the_check_diagnostics(name: str, tmp_path: Path) -> None:
    """The daemon's program log holds exactly check's diagnostics, in this layout."""
    from pyxinetd.check import run_check

    conf = next(c for c in SYNTHETIC if c.name == name).source
    report = json.loads(run_check(str(conf), as_json=True)[0])
    text = _run_daemon(conf, tmp_path / "log", tmp_path)
    logged = []
    for raw in text.splitlines():
        m = _DAEMON_LINE.match(raw)
        if m and m.group(2):
            logged.append(str(_split_where(m.group(1), m.group(3))))
    assert logged == [str(line) for line in pyxinetd_lines(report)]
