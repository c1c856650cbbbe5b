"""`instances` after a cps deactivation: xinetd 2.3.15.3 forgets the servers still
running (xinetd-org issue 21), pyxinetd keeps counting them.

One scenario for both daemons (tests/helpers/cps_instances_scenario.py, in a private
network namespace): `instances = 1`, one client's server held running, a burst that
trips `cps`, then one more client once the service is activated again. xinetd's
svc_activate() (src/service.c) sets the running-server count to 0, so it serves that
client (two servers of an `instances = 1` service) and, when the second server ends,
logs `server exit with 0 running servers`. pyxinetd refuses it (`service_limit`), as
the manual's `instances` promises; docs/compatibility.md lists the difference.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "cps_instances_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))

BEFORE_REACTIVATION = [
    "START: capped pid=N from=127.0.0.1",
    "FAIL: capped service_limit from=127.0.0.1",
    "ERROR: Deactivating service capped due to excessive incoming connections.  "
    "Restarting in 3 seconds.",
    "FAIL: capped connections per second from=127.0.0.1",
    "ERROR: Activating service capped",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("cps-instances"),
                             require_xinetd())


def test_both_refuse_and_deactivate_alike_before_the_reactivation(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    for result in (xinetd, pyxinetd):
        assert result["held"] == "b'hi\\n' open"
        assert result["over instances"] == "b'' EOF"
        assert result["over cps"] == "b'' EOF"
        assert result["lines"][:5] == BEFORE_REACTIVATION
        assert result["held still"] == "b'still\\n' open"


def test_xinetd_forgets_the_running_server_when_it_activates_the_service_again(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, _ = results
    assert xinetd["after reactivation"] == "b'again\\n' open"     # a second server
    assert xinetd["lines"][5:] == [
        "START: capped pid=N from=127.0.0.1",
        "EXIT: capped status=0 pid=N",
        "ERROR: Service capped: server exit with 0 running servers",
        "EXIT: capped status=0 pid=N",
    ]


def test_pyxinetd_still_counts_the_running_server(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, pyxinetd = results
    assert pyxinetd["after reactivation"] == "b'' EOF"
    assert pyxinetd["lines"][5:] == [
        "FAIL: capped service_limit from=127.0.0.1",
        "EXIT: capped status=0 pid=N",
    ]
