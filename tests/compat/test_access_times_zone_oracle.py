"""access_times at the edges of its intervals, "now" moved by TZ: pyxinetd against the
real xinetd 2.3.15.3.

Both daemons run with a POSIX TZ whose offset has seconds, so their local time is
about 10:05:30 (tests/helpers/zone_window_scenario.py, each in its own network
namespace): both ends of an interval are inclusive at minute resolution (`10:00-10:05`
and `10:05-10:06` admit, `09:00-10:04` and `10:06-11:00` refuse), several intervals
are any of them, `00:00-23:59` is the whole day, an empty interval and one across
midnight disable the service; `daytime` gives the zone's name and time. The one
difference is the one docs/compatibility.md lists: `24:00` ends an interval (xinetd
disables the service).
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "zone_window_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))

SERVED, REFUSED, DISABLED = "b'hi\\n' EOF", "b'' EOF", "connect ConnectionRefusedError"

EXPECTED_CLIENTS = {
    "ends_now": SERVED, "starts_now": SERVED, "ended": REFUSED, "not_yet": REFUSED,
    "several": SERVED, "several_out": REFUSED, "whole_day": SERVED, "to_24": SERVED,
    "empty": DISABLED, "across_midnight": DISABLED,
}
EXPECTED_FAILS = ["FAIL: ended time from=127.0.0.1", "FAIL: not_yet time from=127.0.0.1",
                  "FAIL: several_out time from=127.0.0.1"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), both daemons run at once."""
    root = tmp_path_factory.mktemp("zone-window")
    xinetd = require_xinetd()
    (root / "x").mkdir()
    (root / "p").mkdir()
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(run_scenario, SCENARIO, root / "x", xinetd)
        ours = pool.submit(run_scenario, SCENARIO, root / "p", sys.executable, "-m",
                           "pyxinetd")
        return theirs.result(), ours.result()


def test_pyxinetd_admits_both_ends_of_each_interval_in_the_tz_zone(tmp_path: Path) -> None:
    got = run_scenario(SCENARIO, tmp_path, sys.executable, "-m", "pyxinetd")
    assert got == {"clients": EXPECTED_CLIENTS, "fails": EXPECTED_FAILS,
                   "daytime": ["10:05", "XXX"]}


def test_interval_edges_match_xinetd_but_for_24_00(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    theirs, ours = results
    assert theirs["clients"].pop("to_24") == DISABLED     # 24:00 rejected by xinetd
    assert ours["clients"].pop("to_24") == SERVED
    assert ours == theirs
