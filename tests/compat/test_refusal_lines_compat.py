"""Refusal lines and log size limits: pyxinetd against the real xinetd 2.3.15.3.

Same scenario for both daemons (tests/helpers/refusal_lines_scenario.py, in private
network and mount namespaces): a max_load refusal, a cps trip, an internal datagram
service refusing one sender several times, and a log file past its soft and hard limits.
The refusal lines must be the same, in the same order. For the limits pyxinetd follows
xinetd's manual, which promises a message the first time the soft limit is exceeded;
xinetd 2.3.15.3 never writes it, and writes a number from uninitialised memory where
pyxinetd says `size limit reached` (docs/compatibility.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "refusal_lines_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("refusal_lines"), require_xinetd(),
                             mount=True)


def test_refusal_lines_are_xinetds(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert pyxinetd["refusals"] == xinetd["refusals"]
    assert xinetd["refusals"] == [
        "ERROR: refused connect from 127.0.0.1 due to excessive load",
        "FAIL: busy load from=127.0.0.1",
        "START: rate pid=N from=127.0.0.1",
        "ERROR: Deactivating service rate due to excessive incoming connections.  "
        "Restarting in 3 seconds.",
        "FAIL: rate connections per second from=127.0.0.1",
        # Four datagrams, three senders in a row: the repeat is not logged.
        *["FAIL: echo-dgram address from=127.0.0.1"] * 3,
    ]


def test_log_limits_follow_the_manual(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    # The same lines reach the file before it is closed.
    assert pyxinetd["chatty_lines"] == xinetd["chatty_lines"]
    assert xinetd["chatty"][0] == "ERROR: Size of chatty log exceeded hard limit"
    assert set(xinetd["chatty"][1:]) == {"ERROR: Error in chatty log: NUMBER"}
    # pyxinetd: the soft-limit message the manual promises, then xinetd's lines.
    assert pyxinetd["chatty"][:2] == ["ALERT: Size of chatty log exceeded soft limit",
                                      "ERROR: Size of chatty log exceeded hard limit"]
    assert set(pyxinetd["chatty"][2:]) == {"ERROR: Error in chatty log: size limit reached"}
    assert len(pyxinetd["chatty"]) == len(xinetd["chatty"]) + 1
    # A log already past its hard limit when opened gets nothing more.
    assert xinetd["full_untouched"] and pyxinetd["full_untouched"]
