"""Services sharing one log file on a full file system (a 16 KiB tmpfs in a private
mount namespace), and a reload while their entries wait.

tests/helpers/shared_log_full_disk_scenario.py: aa and bb log to shared.log, cc to
other.log; six clients of aa and bb in turn and one of cc while the disk is full; a
reload keeps aa, removes bb and cc, adds dd on shared.log; a client of dd and of aa,
then room, then a last client of aa."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

SCENARIO = HELPERS / "shared_log_full_disk_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("shared_full_disk")
    return run_scenario(SCENARIO, folder, sys.executable, "-m", "pyxinetd", mount=True)


def test_every_client_is_answered(result: dict[str, Any]) -> None:
    assert result["answers"] == ["hi\n"] * 10


def test_entries_of_services_sharing_a_file_are_written_in_the_order_they_were_logged(
        result: dict[str, Any]) -> None:
    # aa and bb in turn while the disk was full, carried over the reload that kept the
    # file (for aa, and for dd, a service that was not there before), then the rest.
    assert result["shared"] == [f"START: {name} from=127.0.0.1" for name in
                                ("aa", "bb", "aa", "bb", "aa", "bb", "dd", "aa", "aa")]


def test_a_reload_that_keeps_the_file_drops_nothing(result: dict[str, Any]) -> None:
    dropped = [line for line in result["program_log"] if "dropped:" in line]
    assert not any("shared.log" in line for line in dropped), dropped


def test_the_full_disk_is_said_once_per_file(result: dict[str, Any]) -> None:
    errors = [line for line in result["program_log"] if "No space left" in line]
    assert [re.sub(r".*/full/", "", line) for line in errors] == [
        "shared.log: No space left on device (errno = 28)",
        "other.log: No space left on device (errno = 28)"]


def test_entries_of_a_file_the_reload_stops_writing_are_counted_once(
        result: dict[str, Any]) -> None:
    program_log = result["program_log"]
    dropped = [line for line in program_log if "dropped:" in line]
    assert [re.sub(r"/\S*/full/", "", line) for line in dropped] == [
        "xinetd[N]: WARNING: 1 entries dropped: other.log was full"]
    # Said as part of the reload, before its report.
    assert program_log.index(dropped[0]) < next(
        i for i, line in enumerate(program_log) if "Reconfigured:" in line)
    assert result["other"] == []
