"""How the log flags are put together and how servers end, line by line: pyxinetd
against the real xinetd 2.3.15.3.

tests/helpers/log_flags_scenario.py runs against each daemon in its own network
namespace: `log_on_success`/`log_on_failure` with `=`, `+=`, `-=` in services placed
before and after `defaults` and in `defaults` itself (where `=` adds); servers stopped
and continued, exiting with 255, aborted with a core file; a reload that changes the
flags and the log file of services whose servers are running. Every service's lines
must be xinetd's, in order, durations aside (whole seconds, a matter of timing).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "log_flags_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))

Result = dict[str, Any]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Result]:
    root: Path = tmp_path_factory.mktemp("log_flags")
    return run_scenario_both(SCENARIO, root, require_xinetd())


def timeless(lines: list[str]) -> list[str]:
    return [re.sub(r"duration=\d+", "duration=N", line) for line in lines]


def test_every_service_logs_xinetds_lines(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    assert list(pyxinetd["lines"]) == list(xinetd["lines"])
    differ = {sid: (timeless(theirs), timeless(pyxinetd["lines"][sid]))
              for sid, theirs in xinetd["lines"].items()
              if timeless(theirs) != timeless(pyxinetd["lines"][sid])}
    assert differ == {}
    assert timeless(pyxinetd["moved"]) == timeless(xinetd["moved"])


def test_the_scenario_shows_what_it_means_to(results: tuple[Result, Result]) -> None:
    # What xinetd wrote, for a few cases: a comparison of two empty logs proves nothing.
    lines = {sid: timeless(found) for sid, found in results[0]["lines"].items()}
    # Placed before `defaults`: its flags come after the file is read, unless the
    # service set its own (`-=` on nothing is nothing).
    assert lines["early_none"] == ["START: early_none pid=N from=127.0.0.1",
                                   "EXIT: early_none pid=N duration=N(sec)"]
    assert lines["early_plus"] == ["START: early_plus", "EXIT: early_plus duration=N(sec)"]
    assert lines["early_minus"] == lines["early_empty"] == []
    assert lines["second"] == ["START: second pid=N"]
    assert lines["steps"] == ["START: steps pid=N", "EXIT: steps status=0 pid=N"]
    assert lines["fail_attempt"] == ["FAIL: fail_attempt service_limit"]
    assert lines["fail_minus"] == lines["fail_empty"] == []
    # One EXIT for the stopped server, when it exits: a stop is not an end.
    assert lines["stopped"] == ["START: stopped pid=N from=127.0.0.1",
                                "EXIT: stopped status=7 pid=N duration=N(sec)"]
    assert lines["status255"][1] == "EXIT: status255 status=255 pid=N duration=N(sec)"
    assert lines["aborted"][1] == "EXIT: aborted signal=6 pid=N duration=N(sec)"
    # The reload's flags and file apply to servers already running.
    assert lines["changed"] == ["START: changed pid=N from=127.0.0.1",
                                "EXIT: changed pid=N duration=N(sec)",
                                "START: changed pid=N", "EXIT: changed pid=N duration=N(sec)"]
    assert timeless(results[0]["moved"]) == ["EXIT: moved status=0 pid=N duration=N(sec)",
                                             "START: moved pid=N from=127.0.0.1",
                                             "EXIT: moved status=0 pid=N duration=N(sec)"]
    assert lines["no_exit"] == ["START: no_exit pid=N from=127.0.0.1"] * 2
