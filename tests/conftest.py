"""Shared fixtures: a running-daemon factory and free ports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
# The checkout under test, not whichever pyxinetd is installed (an editable install of
# another tree, an older wheel): first for this process, and through PYTHONPATH for the
# daemons, helpers and scripts the tests start.
sys.path[:0] = [str(SRC), str(REPO)]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

import pyxinetd  # noqa: E402

if not Path(pyxinetd.__file__).resolve().is_relative_to(SRC):
    raise RuntimeError(f"the tests would run {pyxinetd.__file__}, not the checkout's {SRC}")

from tests.daemon import DaemonFactory, free_port  # noqa: E402


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def port() -> int:
    return free_port()
