"""A connection held for its client's name (`flags = PEERENV`) or its ident reply
(`log_on_success USERID`) while a reload comes (docs/reload.md): a reload that changes
nothing lets it start its server once the answer comes, without asking again; one
whose rules refuse the client logs FAIL and starts nothing; one that replaces the
socket starts the new configuration's server. Real daemon in a private network
namespace, whose DNS server or identd holds its answer until the reload is in
(tests/helpers/reload_held_scenario.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

SCENARIO = HELPERS / "reload_held_scenario.py"
CLIENT = {"name": "127.0.3.7", "ident": "127.0.0.1"}
NAME = {"name": "h-7.held.test", "ident": "unnamed"}


def held_across_a_reload(tmp_path: Path, what: str, change: str) -> dict[str, Any]:
    problem = namespace_problem("ip")
    if problem is not None:
        pytest.skip(problem)
    result = run_scenario(SCENARIO, tmp_path, what, change, sys.executable, "-m", "pyxinetd")
    assert result["held"] and result["reloaded"], result
    # The client was asked about once: the reload did not start a second query.
    assert result["queries"] == 1, result
    return result


def entries(result: dict[str, Any]) -> list[str]:
    """The service log's entries without their dates and pids."""
    return [re.sub(r"pid=\d+", "pid=P", line.split(": ", 1)[1])
            for line in result["service_log"]]


@pytest.mark.parametrize("what", ["name", "ident"])
def test_a_reload_that_changes_nothing_starts_the_held_connections_server(
        tmp_path: Path, what: str) -> None:
    result = held_across_a_reload(tmp_path, what, "none")
    assert result["client"] == f"b'old {NAME[what]}\\n' EOF"
    userid = ["USERID: held UNIX : alice"] if what == "ident" else []
    assert entries(result) == [f"START: held pid=P from={CLIENT[what]}", *userid,
                               "EXIT: held status=0 pid=P"]


@pytest.mark.parametrize("what", ["name", "ident"])
def test_a_reload_whose_rules_refuse_the_held_client_starts_nothing(
        tmp_path: Path, what: str) -> None:
    # Its FAIL line alone: no USERID line for a client whose server never starts (the
    # new log_on_failure does not ask for one).
    result = held_across_a_reload(tmp_path, what, "refused")
    assert result["client"] == "b'' EOF"
    assert entries(result) == [f"FAIL: held address from={CLIENT[what]}"]


@pytest.mark.parametrize("what", ["name", "ident"])
def test_a_reload_that_replaces_the_socket_starts_the_new_server_for_the_held_client(
        tmp_path: Path, what: str) -> None:
    result = held_across_a_reload(tmp_path, what, "socket")
    assert result["client"] == f"b'new {NAME[what]}\\n' EOF"
    userid = ["USERID: held UNIX : alice"] if what == "ident" else []
    assert entries(result) == [f"START: held pid=P from={CLIENT[what]}", *userid,
                               "EXIT: held status=0 pid=P"]


def test_a_reload_that_stops_logging_userid_writes_no_userid_line_for_the_held_client(
        tmp_path: Path) -> None:
    # The server starts, as the new rules admit the client; its reply came, but the
    # configuration in force no longer asks for the USERID line.
    result = held_across_a_reload(tmp_path, "ident", "quiet")
    assert result["client"] == "b'old unnamed\\n' EOF"
    assert entries(result) == ["START: held pid=P from=127.0.0.1", "EXIT: held status=0 pid=P"]
