"""Shared by the IPv6 tests: one plan (links, configuration, probes) run against a daemon
in its own network namespace (tests/helpers/ipv6_scenario.py), pyxinetd or the real
xinetd, so the same plan gives comparable results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

SCENARIO = HELPERS / "ipv6_scenario.py"
PYXINETD = (sys.executable, "-m", "pyxinetd")

# A veth pair gives a real interface (d0) for global and link-local addresses; `nodad`
# makes them usable at once.
VETH = [["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
        ["link", "set", "d0", "up"], ["link", "set", "d1", "up"],
        ["addr", "add", "2001:db8::1/64", "dev", "d0", "nodad"],
        ["addr", "add", "fe80::1/64", "dev", "d0", "nodad"]]

needs_namespace = pytest.mark.skipif(namespace_problem("ip") is not None,
                                     reason=str(namespace_problem("ip")))


def service(name: str, port: int, body: str, *, log: str = "HOST PID EXIT") -> str:
    """A service block logging to the scenario's service log."""
    return (f"service {name}\n{{\n    type = UNLISTED\n    port = {port}\n"
            f"    log_type = FILE {{LOG}}\n    log_on_success = {log}\n"
            f"    log_on_failure = HOST\n{body}}}\n")


def env_server(mode: str = "stream") -> str:
    """Attribute lines for a server that sends back its environment (env_probe.py)."""
    return f"    user = root\n    server = {{PY}}\n    server_args = -I -S {{HELPERS}}/env_probe.py {mode}\n"


def run_plan(tmp_path: Path, plan: dict[str, Any], *daemon: str) -> dict[str, Any]:
    """Run `plan` against `daemon` (pyxinetd by default); the scenario's JSON result.
    A plan with "hosts" runs in a private mount namespace as well."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    if "hosts" not in plan:
        return run_scenario(SCENARIO, tmp_path, *(daemon or PYXINETD))
    done = subprocess.run(["unshare", "-n", "-m", sys.executable, str(SCENARIO),
                           str(tmp_path), *(daemon or PYXINETD)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def environment(reply: str) -> dict[str, str]:
    """The server environment an env_probe.py reply carries."""
    entries: list[str] = json.loads(reply)
    return dict(e.split("=", 1) for e in entries if "=" in e)
