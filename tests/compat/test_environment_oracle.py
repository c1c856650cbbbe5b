"""The environment of external servers: pyxinetd against the real xinetd 2.3.15.3.

Same scenario for both daemons (tests/helpers/environment_scenario.py, in a private
network namespace): one service per passenv/env combination (none, `env` only, `env`
setting a variable twice or setting REMOTE_HOST, `passenv` alone, with `env`, naming
REMOTE_HOST, empty, `+=`; the defaults' `passenv` with and without the service's
`env`), under a daemon started with and without REMOTE_HOST in its environment, and with
variables named twice in it. Each
server's environment, as execve gave it, must be xinetd's entry for entry, in order.

xinetd runs straight through the dynamic loader, not through the oracle's /bin/sh
wrapper: a shell in between would reorder the environment and add PWD to it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "environment_scenario.py"
SWITCH = "PYXINETD_NATIVE_SPAWN"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))


def direct_command(wrapper: str) -> list[str]:
    """The command line the oracle's wrapper script execs (its last `exec` line)."""
    lines = [line for line in Path(wrapper).read_text().splitlines()
             if line.startswith("exec ")]
    if not lines:
        pytest.skip(f"{wrapper}: no exec line to run xinetd by")
    words = shlex.split(lines[-1])[1:]
    assert words[-1] == "$@", words
    return words[:-1]


def run(workdir: Path, daemon: list[str], native: str,
        monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    workdir.mkdir()
    # The switch is in both daemons' environment, at the same place; only pyxinetd reads it.
    monkeypatch.setenv("SCENARIO_EXTRA_ENV", f"{SWITCH}={native}")
    return run_scenario(SCENARIO, workdir, *daemon)


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-spawn", "fallback-spawn"])
def test_servers_get_xinetds_environment_in_xinetds_order(
        tmp_path: Path, native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    xinetd = run(tmp_path / "x", direct_command(require_xinetd()), native, monkeypatch)
    pyxinetd = run(tmp_path / "p", [sys.executable, "-m", "pyxinetd"], native, monkeypatch)
    assert sorted(pyxinetd) == sorted(xinetd)
    for case, entries in xinetd.items():
        assert not any(e.startswith("unreadable") for e in entries), (case, entries)
        if case.endswith("/named-twice"):
            # A variable the daemon's own environment names twice: xinetd passes both
            # entries, pyxinetd the first (docs/compatibility.md); a server's getenv()
            # finds the first under either, and passenv takes it in both.
            entries = _first_of_each(entries)
        assert pyxinetd[case] == entries, case
    # What the comparison covers: REMOTE_HOST takes the place of one already there.
    names = [e.split("=", 1)[0] for e in xinetd["env-remote/no-startup-remote"]]
    assert names[-2:] == ["REMOTE_HOST", "NEW"]
    assert [e.split("=", 1)[0] for e in xinetd["passenv-remote"]] == ["REMOTE_HOST", "BETA"]
    assert xinetd["env-only"][2] == "ALPHA=y"   # `env` keeps the variable's place
    assert xinetd["plain/named-twice"][-2:] == ["ALPHA=again", "ZED=last"]
    assert "ALPHA=a" in xinetd["passenv/named-twice"]


def _first_of_each(entries: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for entry in entries:
        name = entry.partition("=")[0]
        if name not in seen:
            seen.add(name)
            kept.append(entry)
    return kept
