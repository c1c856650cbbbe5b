"""The reload's loader child driven by a Loop (pyxinetd.configload), and what a loader
that sends garbage or nothing gives (pyxinetd.config.isolated.receive)."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from pyxinetd.children import reap
from pyxinetd.config.isolated import LoaderFailed, receive
from pyxinetd.config.model import Configuration
from pyxinetd.configload import Outcome, PendingLoad
from pyxinetd.errors import ConfigError
from pyxinetd.loop import Loop

CONF = "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n" \
       "\tprotocol = tcp\n\twait = no\n\tport = 7007\n}\n"


def run_load(path: Path) -> Outcome:
    loop = Loop()
    outcomes: list[Outcome] = []
    load = PendingLoad(loop, str(path), outcomes.append)
    deadline = time.monotonic() + 20
    while not outcomes:
        assert time.monotonic() < deadline, "the load never finished"
        # The test plays the master's reaper: SIGCHLD is not routed to this loop.
        loop.call_later(0.02, lambda: None)
        loop.run_once()
        for pid, status in reap():
            assert load.claim(pid, status)
    loop.close()
    return outcomes[0]


def test_configuration_arrives_through_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "xinetd.conf"
    path.write_text(CONF)
    outcome = run_load(path)
    assert isinstance(outcome, Configuration)
    assert [s.id for s in outcome.services] == ["echo"]


def test_unreadable_main_file_gives_the_error_load_raises(tmp_path: Path) -> None:
    outcome = run_load(tmp_path / "missing.conf")
    assert isinstance(outcome, ConfigError)
    # xinetd's words, with the path inside them.
    assert str(outcome) == (f"open( {tmp_path / 'missing.conf'} ) failed: "
                            "No such file or directory (errno = 2)")


def test_garbage_or_nothing_is_a_loader_failure() -> None:
    with pytest.raises(LoaderFailed):
        receive(b"\x00not a pickle", True)
    with pytest.raises(LoaderFailed):
        receive(pickle.dumps(("config", "not a configuration")), True)
    with pytest.raises(LoaderFailed):
        receive(pickle.dumps(("something", 1, 2, 3, 4)), True)
    with pytest.raises(LoaderFailed):
        receive(b"", False)


def test_kill_reaps_a_running_loader(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    loop = Loop()
    load = PendingLoad(loop, str(fifo), lambda outcome: None)
    assert load.child is not None
    pid = load.child.pid
    load.kill()
    assert not os.path.exists(f"/proc/{pid}")
    loop.close()


def test_a_load_past_its_deadline_fails_and_its_child_is_still_claimed(
        tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    loop = Loop()
    outcomes: list[Outcome] = []
    load = PendingLoad(loop, str(fifo), outcomes.append, timeout=0.1)
    assert load.child is not None
    deadline = time.monotonic() + 20
    while not (outcomes and load.reaped):
        assert time.monotonic() < deadline, "the load was never given up"
        loop.call_later(0.02, lambda: None)
        loop.run_once()
        for pid, status in reap():
            assert load.claim(pid, status)
    loop.close()
    assert isinstance(outcomes[0], LoaderFailed)
    assert "gave no result within 0.1 s (killed)" in str(outcomes[0])
    assert len(outcomes) == 1


def test_load_timeout_from_the_environment() -> None:
    from pyxinetd.configload import DEFAULT_LOAD_TIMEOUT, load_timeout
    assert load_timeout({}) == DEFAULT_LOAD_TIMEOUT
    assert load_timeout({"PYXINETD_LOAD_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        assert load_timeout({"PYXINETD_LOAD_TIMEOUT": bad}) == DEFAULT_LOAD_TIMEOUT
