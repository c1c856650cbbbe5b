"""A refused stream wait = yes request: pyxinetd against the real xinetd 2.3.15.3.

xinetd suspends a wait = yes service as soon as a request arrives (src/connection.c,
conn_new()) and, when the parent's checks refuse it, frees the request without resuming
the service (src/service.c, svc_request()): no server runs, so nothing ever resumes it,
and the service is dead until a reload. pyxinetd keeps the request queued and serves it
once the slot is free (docs/compatibility.md). Each daemon runs in its own network
namespace (tests/helpers/wait_refusal_scenario.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wait_refusal_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))


def run(workdir: Path, *daemon: str) -> dict[str, Any]:
    return run_scenario(SCENARIO, workdir, *daemon)


def test_pyxinetd_serves_the_queued_request_once_the_slot_is_free(tmp_path: Path) -> None:
    result = run(tmp_path, sys.executable, "-m", "pyxinetd")
    assert result["refused"]
    assert result["queued_served"] and result["later_served"]
    assert result["fail_lines"] <= 3  # one refusal, at most one look a second after


def test_xinetd_never_serves_the_service_again(tmp_path: Path) -> None:
    # The deviation, shown on the real binary: one FAIL line, then nothing.
    result = run(tmp_path, require_xinetd())
    assert result["refused"]
    assert not result["queued_served"] and not result["later_served"]
    assert result["fail_lines"] == 1
