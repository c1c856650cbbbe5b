"""A reload while an admitted PEERENV client waits for its name: the client is served
by the configuration in force once the name is in (tests/helpers/
peerenv_reload_scenario.py, in private network and mount namespaces, with a DNS
server that never answers).

A service a reload made a redirect relayed nobody: the wait ended in `ERROR: penv: no
server to start`. The USERID line of an identified client was written by the
configuration of the ident reply, not by the one its server started as.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

pytestmark = pytest.mark.skipif(namespace_problem("mount") is not None,
                                reason=str(namespace_problem("mount")))


def scenario(tmp_path: Path, case: str) -> dict[str, Any]:
    return run_scenario(HELPERS / "peerenv_reload_scenario.py", tmp_path, case,
                        sys.executable, "-m", "pyxinetd", mount=True)


def test_a_service_made_a_redirect_meanwhile_relays_the_waiting_client(
        tmp_path: Path) -> None:
    result = scenario(tmp_path, "redirect")
    assert result["answer"] == "from the target\n", result
    assert "no server to start" not in result["program"]


def test_the_userid_line_follows_the_configuration_the_server_started_as(
        tmp_path: Path) -> None:
    # The reload dropped USERID from log_on_success while the name was looked up.
    result = scenario(tmp_path, "userid")
    assert result["answer"] == "from the server\n", result
    assert "START: penv from=127.0.0.2" in result["services"]
    assert "USERID" not in result["services"], result["services"]
