"""A burst of clients whose reverse lookups the DNS answers late (but within the lookup
deadline) is decided on those answers, not refused for waiting in a queue: the resolver
helper runs their lookups side by side, and one address's lookup once
(tests/helpers/slow_dns_burst_scenario.py: 30 clients, answers 1 s late, deadline 3 s;
4 lookups at a time would leave more than half of them unanswered), and one network's
lookups that never answer in time cannot starve another network's clients."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

SCENARIO = HELPERS / "slow_dns_burst_scenario.py"
pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))


def test_clients_from_distinct_slow_addresses_are_all_decided_on_their_names(
        tmp_path: Path) -> None:
    result = run_scenario(SCENARIO, tmp_path, "distinct", sys.executable, "-m", "pyxinetd")
    assert result["warm"]
    assert result["echoed"] == 30
    assert result["fail_lines"] == 0
    assert result["ptr_queries"] == 30
    assert result["late_lines"] == 0


def test_clients_from_one_slow_address_share_one_lookup(tmp_path: Path) -> None:
    result = run_scenario(SCENARIO, tmp_path, "same", sys.executable, "-m", "pyxinetd")
    assert result["warm"]
    assert result["echoed"] == 30
    assert result["fail_lines"] == 0
    assert result["ptr_queries"] == 1


def test_one_networks_unanswered_lookups_leave_threads_for_other_clients(
        tmp_path: Path) -> None:
    # 30 addresses of one /24 whose reverse zone answers only after the deadline (an
    # attacker's): with the pool's 8 threads all theirs, a client of another network
    # waited behind them past its own deadline and was refused. One network now takes
    # at most half the threads.
    result = run_scenario(SCENARIO, tmp_path, "network", sys.executable, "-m", "pyxinetd")
    assert result["warm"]
    assert result["other"] is True, result
    assert result["echoed"] == 0
    # The refusals point at the DNS: one line for the burst (at most one a minute).
    assert result["late_lines"] == 1, result
