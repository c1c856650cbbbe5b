"""instances, per_source, -limit and max_load: pyxinetd against the real xinetd 2.3.15.3.

Same scenario for both daemons (tests/helpers/limits_scenario.py, in private network
and mount namespaces, /proc/loadavg faked): limits on external servers, forked and
in-loop builtins, datagram builtins and a stream wait = yes service, limits of 0,
several limits tripping at once, `-limit` over a mix of services. What every client
sees (banner_fail then EOF, or EOF alone) and the lines logged, in order, must be
the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "limits_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("limits"), require_xinetd(),
                             mount=True)


def test_clients_see_what_xinetds_see(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert pyxinetd["clients"] == xinetd["clients"]
    refused_with_banner = "b'GO AWAY\\n' EOF"
    assert xinetd["clients"]["ext"] == refused_with_banner
    assert xinetd["clients"]["echo"] == refused_with_banner     # a forked builtin


def test_refusal_lines_are_xinetds(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert pyxinetd["lines"] == xinetd["lines"]
    assert xinetd["lines"] == [
        "START: ext pid=N from=127.0.0.1",
        "START: ext pid=N from=127.0.0.1",
        "FAIL: ext service_limit from=127.0.0.1",
        "START: echo pid=N from=127.0.0.1",
        "FAIL: echo service_limit from=127.0.0.1",
        "FAIL: zero service_limit from=127.0.0.1",              # instances = 0
        "FAIL: pszero per_source_limit from=127.0.0.1",         # per_source = 0
        # max_load, access_times and instances all refuse: load is checked first,
        "ERROR: refused connect from 127.0.0.1 due to excessive load",
        "FAIL: load load from=127.0.0.1",
        # then access_times, then instances before per_source.
        "FAIL: time time from=127.0.0.1",
        "FAIL: both service_limit from=127.0.0.1",
        "FAIL: echo-dgram service_limit from=127.0.0.1",
        "START: ps pid=N from=127.0.0.1",
        "FAIL: ps per_source_limit from=127.0.0.1",
        # -limit 4 is reached: a builtin that does not fork is refused all the same.
        "FAIL: daytime process_limit from=127.0.0.1",
        "FAIL: other process_limit from=127.0.0.1",
        "START: other pid=N from=127.0.0.1",
        "START: daytime pid=N from=127.0.0.1",
        # A request without an address is held to per_source = 0 too.
        "FAIL: waiter per_source_limit from=<no address>",
    ]
