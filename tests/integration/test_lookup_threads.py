"""A reverse lookup waiting on a slow DNS server does not hold up the resolver helper's
other lookups (tests/helpers/lookup_side_by_side_scenario.py): on Debian 12's Python
3.11.2, socket.getnameinfo keeps the interpreter for the whole lookup, so the helper
looks names up with socket.gethostbyaddr, which lets the other threads run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

SCENARIO = HELPERS / "lookup_side_by_side_scenario.py"
pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))


def test_a_quick_lookup_finishes_while_a_slow_one_waits(tmp_path: Path) -> None:
    result = run_scenario(SCENARIO, tmp_path)
    assert result["finished"] == ["127.0.3.250", "127.0.3.1"]
    assert result["names"] == {"127.0.3.250": "warm.burst.test",
                               "127.0.3.1": "h-1.burst.test"}
