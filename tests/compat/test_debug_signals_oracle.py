"""Signals taken by a `-d` daemon on its terminal, side by side with xinetd 2.3.15.3.

tests/helpers/debug_signals_scenario.py runs each daemon with `-d` on a terminal of its
own (xinetd writes its debug log to /dev/tty) and sends SIGHUP onto a changed
configuration, SIGUSR2 onto a missing file, SIGABRT, SIGUSR1, an ignored SIGWINCH and
SIGINT. The lines both write, `{function}` names included, must be the same; what
differs is listed in docs/compatibility.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "debug_signals_scenario.py"


@dataclass(frozen=True)
class Results:
    theirs: dict[str, Any]
    ours: dict[str, Any]
    root: Path     # xinetd ran in root/x, pyxinetd in root/p

    def lines(self, key: str = "lines") -> tuple[list[str], list[str]]:
        """(xinetd's comparable lines, pyxinetd's)."""
        return (comparable(self.theirs, self.root / "x", key),
                comparable(self.ours, self.root / "p", key))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    root = tmp_path_factory.mktemp("debug-signals")
    theirs, ours = run_scenario_both(SCENARIO, root, require_xinetd(), mount=True)
    return Results(theirs, ours, root)


def comparable(result: dict[str, Any], workdir: Path, key: str = "lines") -> list[str]:
    """The log lines without stamp and pid; xinetd's configuration dumps (printed to the
    terminal at start and at each reload) and its DEBUG lines about its own internals
    left out, and so is SIGCHLD's `Got signal` line (pyxinetd's reload loader is a
    child process: its end is one more SIGCHLD). The start-up line names each daemon's
    version (compared elsewhere)."""
    lines = []
    for line in result[key]:
        match = re.fullmatch(r"\d\d/\d\d/\d\d@\d\d:\d\d:\d\d: (\w+): \d+ (\{\w+\}) (.*)", line)
        if match is None:
            continue
        level, func, text = match.groups()
        if level == "DEBUG" and not text.startswith("Got signal ") or "(Child exited)" in text:
            continue
        if " started with " in text:
            continue
        lines.append(f"{level}: {func} {text.replace(str(workdir), 'WORKDIR')}")
    return lines


def test_the_lines_of_each_signal_are_xinetds(results: Results) -> None:
    expected, lines = results.lines()
    # The sequence this pins, xinetd's lines word for word:
    assert expected == [
        "NOTICE: {main} Started working: 3 available services",
        "DEBUG: {check_pipe} Got signal 1 (Hangup)",
        "NOTICE: {hard_reconfig} Starting reconfiguration",
        "NOTICE: {hard_reconfig} Swapping defaults",
        "NOTICE: {readjust} readjusting service echo-stream",
        "NOTICE: {hard_reconfig} service discard-stream deactivated",
        "NOTICE: {readjust} readjusting service sleeper",
        "NOTICE: {hard_reconfig} Reconfigured: new=1 old=2 dropped=1 (services)",
        "DEBUG: {check_pipe} Got signal 12 (User defined signal 2)",
        "NOTICE: {hard_reconfig} Starting reconfiguration",
        "ERROR: {cnf_init} open( WORKDIR/xinetd.conf ) failed: No such file or directory "
        "(errno = 2)",
        "WARNING: {hard_reconfig} reconfiguration failed",
        "DEBUG: {check_pipe} Got signal 6 (Aborted)",
        "INFO: {consistency_check} Consistency check passed",
        "DEBUG: {check_pipe} Got signal 10 (User defined signal 1)",
        "INFO: {dump_internal_state} generated state dump in file /var/run/xinetd.dump",
    ]
    # SIGINT ends both with status 1; pyxinetd says so in its log, as it does for every
    # other way out, where xinetd exits from within its signal handler without a word.
    assert lines == [*expected, "WARNING: {quit_program} Exiting..."]
    assert results.theirs["status"] == results.ours["status"] == 1


def test_sigint_removes_the_pidfile_xinetd_leaves_behind(results: Results) -> None:
    assert results.theirs["pidfile_left"] is True
    assert results.ours["pidfile_left"] is False


def test_a_main_file_that_cannot_be_read_at_start(results: Results) -> None:
    expected, lines = results.lines("missing_lines")
    assert expected == [
        "ERROR: {cnf_init} open( WORKDIR/xinetd.conf ) failed: No such file or directory "
        "(errno = 2)",
        "CRITICAL: {init_services} couldn't get configuration. Exiting...",
    ]
    assert lines == expected
    assert results.theirs["missing_status"] == results.ours["missing_status"] == 1
