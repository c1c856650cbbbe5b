"""Log stamps and `daytime` under several TZ values: pyxinetd against the real xinetd
2.3.15.3.

For a zone name, POSIX strings with a half-hour offset and invalid values
(tests/helpers/zone_stamps_scenario.py, each daemon in its own network and mount
namespaces), the zone `daytime` names and the offset from UTC of daytime's time, of the
FILE service log's, the syslog line's and the program log's stamps must be xinetd's:
both take glibc's reading of TZ (an invalid value is UTC under the name glibc makes of
it, `:/nonexistent` has no name at all).
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "zone_stamps_scenario.py"

pytestmark = [
    pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                       reason=str(namespace_problem("ip", "mount"))),
    pytest.mark.skipif(not Path("/usr/share/zoneinfo/America/St_Johns").exists(),
                       reason="no tzdata (/usr/share/zoneinfo/America/St_Johns)"),
]


def stamps(zone: str, minutes: int) -> dict[str, Any]:
    return {"daytime zone": zone, "daytime": minutes, "service file log": minutes,
            "syslog": minutes, "program log": minutes}


def test_pyxinetd_stamps_in_the_tz_zone(tmp_path: Path) -> None:
    got = run_scenario(SCENARIO, tmp_path, sys.executable, "-m", "pyxinetd", mount=True)
    assert got["XXX-5:30"] == stamps("XXX", 330)
    assert got["<+0530>-5:30"] == stamps("+0530", 330)
    assert got["garbage!!"] == stamps("garbage", 0)
    assert got[""] == stamps("UTC", 0)


def test_stamps_and_daytime_match_xinetd_for_each_tz(tmp_path: Path) -> None:
    xinetd = require_xinetd()
    (tmp_path / "x").mkdir()
    (tmp_path / "p").mkdir()
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(run_scenario, SCENARIO, tmp_path / "x", xinetd, mount=True)
        ours = pool.submit(run_scenario, SCENARIO, tmp_path / "p", sys.executable, "-m",
                           "pyxinetd", mount=True)
        assert ours.result() == theirs.result()
