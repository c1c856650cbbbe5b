"""The system's time zone changed under a running daemon (TZ unset, /etc/localtime
replaced, as `timedatectl set-timezone` does): its log stamps (program log, FILE and
syslog service logs), `daytime` and `access_times` follow the new zone, as xinetd's do
(glibc's localtime() reloads /etc/localtime when it changed).

tests/helpers/zone_change_scenario.py runs the daemon in private network and mount
namespaces, with its own /etc/localtime (UTC, then Asia/Kolkata, UTC+5:30).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "zone_change_scenario.py"

pytestmark = [
    pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                       reason=str(namespace_problem("ip", "mount"))),
    pytest.mark.skipif(not Path("/usr/share/zoneinfo/Asia/Kolkata").exists(),
                       reason="no tzdata (/usr/share/zoneinfo/Asia/Kolkata)"),
]

# Offsets from UTC in minutes, rounded to a half hour.
BEFORE = {"daytime zone": "UTC", "daytime": 0, "service file log": 0, "syslog": 0,
          "program log": 0, "access_times": "b'' EOF"}
AFTER = {"daytime zone": "IST", "daytime": 330, "service file log": 330, "syslog": 330,
         "program log": 330, "access_times": "b'hi\\n' EOF"}


def test_stamps_daytime_and_access_times_follow_a_new_system_zone(tmp_path: Path) -> None:
    got: dict[str, Any] = run_scenario(SCENARIO, tmp_path, sys.executable, "-m", "pyxinetd",
                                       mount=True)
    assert got == {"before": BEFORE, "after": AFTER}


def test_xinetd_follows_a_new_system_zone_alike(tmp_path: Path) -> None:
    xinetd = require_xinetd()
    got: dict[str, Any] = run_scenario(SCENARIO, tmp_path, xinetd, mount=True)
    assert got == {"before": BEFORE, "after": AFTER}
