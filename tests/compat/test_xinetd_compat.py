"""Compatibility with the real xinetd 2.3.15.3, file by file over the corpus.

For every corpus file and variant (see corpus.py) both daemons read the same main
file: xinetd in private namespaces (tests/oracle.py), answering with its SIGUSR1
state dump, and pyxinetd through `pyxinetd check --json`. They must activate the
same services with the same socket_type, protocol, port, wait, user, server, server
argv, instances, per_source and cps, and the same of everything else the dump shows
reliably (corpus.COMPARED).

All runs happen once per session (compat_runs.py, shared with the diagnostics
comparison); the parametrised tests then only compare. Deliberate deviations are
listed in KNOWN with their reason and in docs/compatibility.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pytest

from compat_runs import CASES, CaseResult, case_params
from corpus import SHARED_ABSENT, Case, compare, deactivated_ids, shared_present
from oracle import DumpState, parse_dump

pytestmark = pytest.mark.oracle


@dataclass(frozen=True)
class Deviation:
    """A deliberate difference (docs/compatibility.md): why, and the only diffs it explains."""

    reason: str
    diffs: frozenset[str]


_BUILTIN_LISTS = ("pyxinetd serves the `servers` and `services` internal services that "
                  "xinetd 2.3.15 removed (`No such internal service`)")
_RECOVERY = ("after a missing `}` pyxinetd's error recovery stops at the next `service` "
             "line; xinetd drops the following service too")
_FATAL_DEFAULTS = ("a bad value in `defaults` (log_on_failure RECORD) makes xinetd exit "
                   "with status 0; pyxinetd reports it, ignores the line and goes on")

# (variant or "*", corpus label) -> the deliberate deviation seen there.
KNOWN: dict[tuple[str, str], Deviation] = {
    ("*", "xinetd.d/OpenMandrivaAssociation__xinetd__xinetd-services"): Deviation(
        _BUILTIN_LISTS, frozenset({"servers: activated by pyxinetd, not by xinetd"})),
    ("*", "xinetd.d/anthon-os__anthonos_SuSE_historical__servers"): Deviation(
        _BUILTIN_LISTS, frozenset({"servers: activated by pyxinetd, not by xinetd"})),
    ("*", "xinetd.d/openSUSE__xinetd__services.opensuse"): Deviation(
        _BUILTIN_LISTS, frozenset({"services: activated by pyxinetd, not by xinetd"})),
    ("stubbed", "xinetd.d/Bee1To__raspbmc-files__samba"): Deviation(
        _RECOVERY, frozenset({"netbios-ns: activated by pyxinetd, not by xinetd"})),
    ("stubbed", "xinetd.conf/adamyg__inetd-win32__inetd.xconf"): Deviation(
        _FATAL_DEFAULTS, frozenset({"ftp: activated by pyxinetd, not by xinetd",
                                    "telnet: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-brace-comment.conf"): Deviation(
        "`} # comment` closes the entry in pyxinetd; xinetd drops that entry and, skipping "
        "to the next lone `}`, the following one",
        frozenset({"commented-end: activated by pyxinetd, not by xinetd",
                   "swallowed: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-run-on-header.conf"): Deviation(
        "a `service` line right after an entry's `}` is read; xinetd never reads it when "
        "its scan of a lone attribute name on the line before that `}` ran on into it",
        frozenset({"after-run-on: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-crlf.conf"): Deviation(
        "CRLF files load as if LF; xinetd keeps the \\r in every last token",
        frozenset({"crlf: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-disable-no.conf"): Deviation(
        "a failed attribute keeps the service disabled; xinetd's later `disable = no` "
        "resurrects it without the attribute",
        frozenset({"resurrected: activated by xinetd, not by pyxinetd"})),
    ("asis", "synthetic/deviation-enabled-failed.conf"): Deviation(
        "a failed attribute keeps the service disabled; xinetd's defaults' `enabled` list "
        "re-enables it, without the attribute",
        frozenset({"revived: activated by xinetd, not by pyxinetd"})),
    ("asis", "synthetic/deviation-inline-comment.conf"): Deviation(
        "inline comments are stripped; xinetd takes `# the port` as values, ignores the "
        "port line and drops the UNLISTED service",
        frozenset({"inline: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-bind-family.conf"): Deviation(
        "a bind address of the other family than the IPv4/IPv6 flag is bound; xinetd "
        "ignores it and listens on every address with the flag's family",
        frozenset({"flag-against-bind: family: xinetd 'inet6', pyxinetd 'inet'"})),
    ("asis", "synthetic/deviation-long-line.conf"): Deviation(
        "lines are read whole; xinetd cuts a line at its 16 KiB buffer, reads the rest as "
        "an attribute line of its own and drops the entry",
        frozenset({"long-line: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-long-comment.conf"): Deviation(
        "a comment line is read whole; xinetd cuts it at its 16 KiB buffer and reads the "
        "rest as a line of its own, dropping the entry around it and, between entries, "
        "the next one",
        frozenset({"comment-inside: activated by pyxinetd, not by xinetd",
                   "after-comment: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-server-directory.conf"): Deviation(
        "a server that is not a regular file is rejected at load; xinetd serves the service "
        "and every exec fails",
        frozenset({"server-directory: activated by xinetd, not by pyxinetd"})),
    ("asis", "synthetic/deviation-fatal-defaults.conf"): Deviation(
        _FATAL_DEFAULTS, frozenset({"dual: activated by pyxinetd, not by xinetd"})),
    ("asis", "synthetic/deviation-traffic.conf"): Deviation(
        "TRAFFIC in the defaults is dropped from non-redirect services; xinetd disables them",
        frozenset({"plain: activated by pyxinetd, not by xinetd"})),
}


@pytest.mark.parametrize(("variant", "case"), case_params())
def test_same_services_as_xinetd(variant: str, case: Case,
                                 compat_results: dict[tuple[str, str], CaseResult]) -> None:
    result = compat_results[(variant, case.label)]
    assert result.error is None, f"pyxinetd check raised on {case.label}: {result.error}"
    assert result.report is not None
    run = result.run
    assert not run.harness_error, f"the xinetd run could not be set up: {run.harness_error}"
    state: DumpState | None = parse_dump(run.dump) if run.started else None
    if run.started:
        assert run.dump, f"xinetd started but wrote no dump:\n{run.log}"
    diffs = compare(state, result.report, deactivated_ids(run.log))
    known = KNOWN.get((variant, case.label)) or KNOWN.get(("*", case.label))
    if diffs and known is not None and set(diffs) <= known.diffs:
        pytest.xfail(known.reason)
    assert not diffs, (f"{case.label} ({variant}) differs from xinetd:\n  "
                       + "\n  ".join(diffs) + "\n--- xinetd log ---\n" + run.log
                       + "--- pyxinetd diagnostics ---\n"
                       + "\n".join(f"{d['file']}:{d['line']}: {d['severity']}: {d['message']}"
                                   for d in result.report["diagnostics"]))


def test_corpus_is_there() -> None:
    if not shared_present():
        pytest.skip(SHARED_ABSENT)
    assert len(CASES) > 100, "shared/corpus not found beside the repository"
    assert os.path.isdir(CASES[0].source.parent)


# xinetd's ERROR lines that are about the run, not about the configuration text.
_RUNTIME_ERRORS = re.compile(r"bind failed|pmap_set failed|failed to start and is deactivated|"
                             r"Setting IPV6_V6ONLY option failed")
_ERROR_LINE = re.compile(r"\]: (ERROR|CRITICAL): ")


@pytest.mark.parametrize(("variant", "case"), case_params())
def test_same_verdict_as_xinetd(variant: str, case: Case,
                                compat_results: dict[tuple[str, str], CaseResult]) -> None:
    """`check` fails (status 1) exactly when xinetd logs an error about the configuration."""
    result = compat_results[(variant, case.label)]
    assert result.report is not None, result.error
    errors = [line for line in result.run.log.splitlines()
              if _ERROR_LINE.search(line) and not _RUNTIME_ERRORS.search(line)]
    failed = result.report["status"] != 0
    known = KNOWN.get((variant, case.label)) or KNOWN.get(("*", case.label))
    if bool(errors) != failed and known is not None:
        pytest.xfail(known.reason)
    ours = [f"{d['severity']}: {d['message']}" for d in result.report["diagnostics"]
            if d["severity"] in ("error", "critical")]
    assert bool(errors) == failed, (f"xinetd errors: {errors}\npyxinetd status "
                                    f"{result.report['status']}, errors: {ours}")
