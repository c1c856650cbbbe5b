"""Log files on a full file system (a 16 KiB tmpfs in a private mount namespace): the
daemon keeps serving, and the lines the disk refused are written once it has room.

tests/helpers/full_disk_scenario.py holds the program log (`-filelog`) and a service's
`log_type = FILE` log on that file system: 20 clients while it is full, one after the
filler is removed; then, full again, one client, the service log renamed and a reload
(SIGHUP), room again and a last client."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

SCENARIO = HELPERS / "full_disk_scenario.py"
CLIENTS = 20
NO_ROOM = "Error writing {}: No space left on device (errno = 28)"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

Result = dict[str, Any]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    folder = tmp_path_factory.mktemp("full_disk")
    return (run_scenario(SCENARIO, folder, sys.executable, "-m", "pyxinetd", mount=True),
            folder / "full" / "services.log")


def before_reload(program_log: list[str]) -> list[str]:
    return program_log[:next(i for i, line in enumerate(program_log)
                             if "Starting reconfiguration" in line)]


def test_every_client_is_answered_while_the_disk_is_full(
        result: tuple[Result, Path]) -> None:
    answers = result[0]["answers"]
    assert answers["full"] == ["hi\n"] * CLIENTS
    assert [answers[k] for k in ("freed", "before_reload", "after_reload")] == ["hi\n"] * 3


def test_entries_the_full_disk_refused_are_written_whole_once_it_has_room(
        result: tuple[Result, Path]) -> None:
    rotated = result[0]["rotated"]
    # Every client of the first phase, the one after the filler went too: none lost,
    # none cut (xinetd keeps what its 4 KiB buffer holds, then cuts a line in two).
    starts = [line for line in rotated if line.startswith("START: ")]
    exits = [line for line in rotated if line.startswith("EXIT: ")]
    assert len(starts) == len(exits) == CLIENTS + 1, rotated
    assert all(re.fullmatch(r"START: full pid=N from=127\.0\.0\.1", line) for line in starts)
    assert all(line == "EXIT: full status=0 pid=N" for line in exits)
    assert len(rotated) == 2 * (CLIENTS + 1)


def test_a_full_disk_is_said_once_while_entries_wait(result: tuple[Result, Path]) -> None:
    res, service_log = result
    first_phase = before_reload(res["program_log"])
    errors = [line for line in first_phase if "ERROR" in line]
    # Once for the 40 entries of the first phase, once for the second (an entry was
    # written in between).
    assert errors == [f"xinetd[N]: ERROR: {NO_ROOM.format(service_log)}"] * 2, first_phase


def test_the_program_log_keeps_its_lines_while_its_disk_is_full(
        result: tuple[Result, Path]) -> None:
    program_log = result[0]["program_log"]
    # Every line after the start was logged while the program log's disk was full.
    assert any("Error writing" in line for line in program_log)
    assert any("Reconfigured:" in line for line in program_log)
    assert program_log[-1] == "xinetd[N]: WARNING: Exiting..."
    assert not any("messages dropped" in line for line in program_log)


def test_entries_waiting_at_a_reload_go_first_to_the_file_now_at_their_path(
        result: tuple[Result, Path]) -> None:
    res, _ = result
    # The service log was renamed (rotated) with the entries of the client before the
    # reload still waiting: the reload opened a new file at the path, and they are
    # its first lines, before those of the client after the reload.
    assert not any("entries dropped" in line for line in res["program_log"])
    log = res["service_log"]
    assert log[0] == "START: full pid=N from=127.0.0.1", log
    assert [line.split(" ", 1)[0] for line in log].count("START:") == 2, log
    assert [line for line in log if line.startswith("EXIT: ")] == [
        "EXIT: full status=0 pid=N"] * 2, log
