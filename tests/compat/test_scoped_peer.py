"""A link-local IPv6 client: REMOTE_HOST and the log carry its zone, as in xinetd.

xinetd writes a client's address with getnameinfo(NI_NUMERICHOST), which appends the
zone of a scoped address (`fe80::1%lo`); Python's address tuples carry the zone apart
(the scope id), so pyxinetd puts it back (pyxinetd.listener.peer_text). Each daemon runs
in its own network namespace (tests/helpers/scoped_peer_scenario.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "scoped_peer_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))


def check(result: dict[str, Any]) -> None:
    assert result["remote_host"] == ["fe80::1%lo"]
    assert len(result["start"]) == 1 and result["start"][0].endswith(
        "START: probe from=fe80::1%lo"), result["start"]


def test_pyxinetd_gives_the_zone(tmp_path: Path) -> None:
    check(run_scenario(SCENARIO, tmp_path, sys.executable, "-m", "pyxinetd"))


def test_xinetd_gives_the_zone(tmp_path: Path) -> None:
    check(run_scenario(SCENARIO, tmp_path, require_xinetd()))
