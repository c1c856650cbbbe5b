"""RPC services (`type = RPC`) registered with a real portmapper, against the real xinetd.

Each run happens in fresh network and mount namespaces made by
tests/helpers/rpc_scenario.py, with Debian's rpcbind (scripts/fetch-rpcbind: unpacked,
never installed) running in the foreground there. The scenario reads the portmapper's
table (PMAPPROC_DUMP) at start, after a reload that removes the dgram service and after
SIGTERM; the same scenario with the real xinetd 2.3.15.3 must give the same
registrations (program, version, protocol; the ports are the kernel's choice).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import oracle

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "helpers" / "rpc_scenario.py"
FETCH = REPO / "scripts" / "fetch-rpcbind"
UDP_PROGRAM = 0x20000111
TCP_PROGRAM = 0x20000112
UDP, TCP = 17, 6


@functools.lru_cache(maxsize=1)
def _rpcbind() -> tuple[str | None, str]:
    """(path of the rpcbind wrapper, or None, and why not)."""
    if os.geteuid() != 0:
        return None, "needs root (network and mount namespaces)"
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return None, f"{tool} not found"
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        return None, f"unshare -n -m is not permitted here: {probe.stderr.strip()}"
    try:
        fetched = subprocess.run([str(FETCH)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"scripts/fetch-rpcbind failed: {err}"
    if fetched.returncode != 0 or not fetched.stdout.strip():
        return None, f"rpcbind cannot be had: {fetched.stderr.strip()[-500:]}"
    return fetched.stdout.strip(), ""


def _require_rpcbind() -> str:
    path, reason = _rpcbind()
    if path is None:
        pytest.skip(reason)
    return path


def _run(*extra: str) -> dict[str, Any]:
    rpcbind = _require_rpcbind()
    work = Path(tempfile.mkdtemp(prefix="pyxinetd-rpc-"))
    try:
        done = subprocess.run(
            ["unshare", "-n", "-m", "--propagation", "private", sys.executable,
             str(SCENARIO), "--workdir", str(work), "--rpcbind", rpcbind, *extra],
            capture_output=True, text=True, timeout=120, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH")]))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert "error" not in result, (result["error"], result["log"], result["stderr"])
    return result


@functools.lru_cache(maxsize=None)
def _scenario(*extra: str) -> str:
    return json.dumps(_run(*extra))


def scenario(*extra: str) -> dict[str, Any]:
    """One run per argument list per test session (the tests read different parts)."""
    result: dict[str, Any] = json.loads(_scenario(*extra))
    return result


def _triples(table: list[list[int]]) -> list[tuple[int, int, int]]:
    return sorted((program, version, protocol) for program, version, protocol, _ in table)


def test_every_version_is_registered_at_the_service_port() -> None:
    started = scenario()["started"]
    assert _triples(started) == [(UDP_PROGRAM, 1, UDP), (UDP_PROGRAM, 2, UDP),
                                 (UDP_PROGRAM, 3, UDP), (TCP_PROGRAM, 2, TCP)]
    udp_ports = {port for program, _, _, port in started if program == UDP_PROGRAM}
    assert len(udp_ports) == 1 and udp_ports.pop() > 0


def test_clients_reach_the_servers_through_the_registered_ports() -> None:
    result = scenario()
    assert result["udp_answer"] == "udp-rpc ping"
    assert result["tcp_answer"] == "tcp-rpc\n"
    assert result["plain"] == "tcp-rpc\n"


def test_a_reload_that_removes_the_service_unregisters_it() -> None:
    result = scenario()
    assert _triples(result["reloaded"]) == [(TCP_PROGRAM, 2, TCP)]
    # The kept service keeps its socket, hence its registration.
    assert result["reloaded"] == [r for r in result["started"] if r[0] == TCP_PROGRAM]


def test_sigterm_unregisters_everything() -> None:
    result = scenario()
    assert result["terminated"] == []
    assert result["returncode"] == 0


def test_the_dump_shows_the_rpc_data() -> None:
    assert scenario()["rpc_data"] == [
        "\t\tRPC data", f"\t\t\tprogram number = {UDP_PROGRAM}", "\t\t\trpc_version = 1-3",
        "\t\tRPC data", f"\t\t\tprogram number = {TCP_PROGRAM}", "\t\t\trpc_version = 2"]


def test_without_a_portmapper_the_service_fails_and_the_others_serve() -> None:
    result = scenario("--no-rpcbind")
    assert result["plain"] == "tcp-rpc\n"
    log = result["log"]
    assert "pmap_set failed. service=rpcudp" in log
    assert "Service rpcudp failed to start and is deactivated." in log
    assert "Service rpctcp failed to start and is deactivated." in log
    assert "Started working: 1 available service\n" in log


def test_same_registrations_and_dump_as_xinetd() -> None:
    _require_rpcbind()
    xinetd = oracle.xinetd_path()
    if xinetd is None:
        pytest.skip(oracle.unavailable_reason())
    ours, theirs = scenario(), scenario("--xinetd", xinetd)
    for step in ("started", "reloaded", "terminated"):
        assert _triples(ours[step]) == _triples(theirs[step]), step
    assert ours["rpc_data"] == theirs["rpc_data"]
    for answer in ("udp_answer", "tcp_answer", "plain"):
        assert ours[answer] == theirs[answer]

    def flags(dump: str) -> list[str]:
        return [line for line in dump.splitlines() if line.startswith("\t\tflags =")]
    assert flags(ours["dump"]) == flags(theirs["dump"])
