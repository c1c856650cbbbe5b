"""RPC services (`type = RPC`) registered with a real portmapper, against the real xinetd.

Each run happens in fresh network and mount namespaces made by
tests/helpers/rpc_scenario.py, with Debian's rpcbind (scripts/fetch-rpcbind: unpacked,
never installed) running in the foreground there. The scenario reads the portmapper's
table (PMAPPROC_DUMP) at start, after a reload that removes the dgram service and after
SIGTERM; the same scenario with the real xinetd 2.3.15.3 must give the same
registrations (program, version, protocol; the ports are the kernel's choice).

The `--more` run covers two services sharing a program number (one removed by a
reload), a cps deactivation and reactivation, and a service with a `bind` address.
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
from tests.daemon import namespace_problem, run_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "helpers" / "rpc_scenario.py"
LOST_REPLY = REPO / "tests" / "helpers" / "rpc_lost_reply_scenario.py"
SLOW_RELOAD = REPO / "tests" / "helpers" / "rpc_slow_reload_scenario.py"
ORDER = REPO / "tests" / "helpers" / "rpc_order_scenario.py"
WINDOW = REPO / "tests" / "helpers" / "rpc_window_scenario.py"
FETCH = REPO / "scripts" / "fetch-rpcbind"
UDP_PROGRAM = 0x20000111
TCP_PROGRAM = 0x20000112
SHARED_PROGRAM = 0x20000113
CPS_PROGRAM = 0x20000114
BOUND_PROGRAM = 0x20000115
FIXED_PROGRAM = 0x20000116
FIXED_PORT = 4711
LOST_PROGRAM = 0x20000118
PARTIAL_PROGRAM = 0x20000119
SLOW_PROGRAM = 0x2000011A
ORDER_PROGRAM = 0x2000011B
WIDE_PROGRAM = 0x2000011E
OVERLAP_PROGRAM = 0x2000011F
HELD_PROGRAM = 0x20000120
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


def _rows(table: list[list[int]] | str, program: int) -> list[list[int]]:
    """The rows of `program` in a table the scenario read (an error there fails)."""
    assert isinstance(table, list), table
    return [row for row in table if row[0] == program]


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


def test_the_survivor_of_a_shared_program_is_registered_again_after_a_reload() -> None:
    result = scenario("--more")
    shared = _rows(result["started"], SHARED_PROGRAM)
    assert _triples(shared) == [(SHARED_PROGRAM, 1, TCP), (SHARED_PROGRAM, 1, UDP),
                                (SHARED_PROGRAM, 2, TCP), (SHARED_PROGRAM, 2, UDP)]
    # Removing the udp service UNSETs both protocols of versions 1 and 2; the tcp
    # service's versions come back, at the port of its socket, which it kept.
    survivor = _rows(result["reloaded"], SHARED_PROGRAM)
    assert survivor == [r for r in shared if r[2] == TCP]
    assert result["shared_answer"] == "tcp-rpc\n"
    # The other services were not touched by the reload.
    others = [r for r in result["reloaded"] if r[0] != SHARED_PROGRAM]
    assert _triples(others) == [(CPS_PROGRAM, 1, TCP), (BOUND_PROGRAM, 1, TCP),
                                (FIXED_PROGRAM, 1, TCP)]


def test_a_cps_deactivation_unregisters_and_the_reactivation_registers_the_new_port() -> None:
    result = scenario("--more")
    assert _triples(result["cps_before"]) == [(CPS_PROGRAM, 1, TCP)]
    assert "Deactivating service cpstcp due to excessive incoming connections" in \
        result["log"]
    assert _rows(result["cps_closed"], CPS_PROGRAM) == []
    reopened = _rows(result["cps_reopened"], CPS_PROGRAM)
    assert _triples(reopened) == [(CPS_PROGRAM, 1, TCP)]
    # The new socket's port (the kernel's choice, maybe the same number) is the one
    # registered: a client that asks the portmapper reaches the server there.
    assert result["cps_answer"] == "tcp-rpc\n"


def test_a_bound_service_is_registered_at_its_socket_port() -> None:
    result = scenario("--more")
    bound = _rows(result["started"], BOUND_PROGRAM)
    assert _triples(bound) == [(BOUND_PROGRAM, 1, TCP)]
    assert result["bound_answer"] == "tcp-rpc\n"
    # Bound to 127.0.0.1 only: the same port on another loopback address is closed.
    assert result["bound_elsewhere"].startswith("error:")


def test_a_service_with_a_port_is_bound_and_registered_there() -> None:
    # Red Hat's xinetd honours `port` on an RPC service (a firewall can allow it).
    result = scenario("--more")
    assert _rows(result["started"], FIXED_PROGRAM) == [[FIXED_PROGRAM, 1, TCP, FIXED_PORT]]
    assert result["fixed_answer"] == "tcp-rpc\n"


def test_the_services_builtin_lists_the_ports_rpc_services_listen_on() -> None:
    # An RPC service owns a port even when the kernel chose it: `services` shows the
    # one the portmapper hands out, not `-`.
    result = scenario("--more")
    listed = {line.split(" ")[0]: line.split(" ")[1:]
              for line in result["services"].splitlines()}
    for name, program in (("sharetcp", SHARED_PROGRAM), ("cpstcp", CPS_PROGRAM),
                          ("boundtcp", BOUND_PROGRAM), ("fixedtcp", FIXED_PROGRAM)):
        port = _rows(result["started"], program)[0][3]
        assert listed[name] == ["tcp", str(port)], name
    assert listed["shareudp"][0] == "udp"
    assert listed["shareudp"][1] == str(
        next(row[3] for row in _rows(result["started"], SHARED_PROGRAM) if row[2] == UDP))


def test_xinetd_ignores_the_port_of_an_rpc_service() -> None:
    # The deviation, on the real binary: the kernel's port is registered instead.
    xinetd = oracle.xinetd_path()
    if xinetd is None:
        pytest.skip(oracle.unavailable_reason())
    result = scenario("--more", "--first-steps", "--xinetd", xinetd)
    fixed = _rows(result["started"], FIXED_PROGRAM)
    assert [row[:3] for row in fixed] == [[FIXED_PROGRAM, 1, TCP]]
    assert fixed[0][3] != FIXED_PORT
    assert result["fixed_answer"].startswith("error:")


def test_the_more_scenario_unregisters_everything_at_sigterm() -> None:
    result = scenario("--more")
    assert result["terminated"] == []
    assert result["returncode"] == 0


def test_every_version_of_a_wide_range_is_registered_with_rpcbind_and_unset_at_sigterm(
) -> None:
    # rpc_version = 1-1000 against rpcbind's own receive buffer: sent at once, the
    # calls overflowed it, and the versions whose calls were lost waited for
    # retransmissions that burst again.
    result = scenario("--wide")
    wide = _rows(result["started"], WIDE_PROGRAM)
    assert sorted(row[1] for row in wide) == list(range(1, 1001))
    assert {row[2] for row in wide} == {UDP}
    assert "pmap_set failed" not in result["log"], result["log"]
    assert result["dropped"] == 0
    assert result["terminated"] == []
    assert result["returncode"] == 0


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


def test_a_later_overlapping_range_is_served_at_the_versions_the_earlier_does_not_hold(
        ) -> None:
    # Versions 1-2 on 127.0.0.1, then 2-3 on 127.0.0.2: the portmapper refuses the
    # second one's version 2, and it serves version 3; one whose whole range is held
    # fails to start. As xinetd 2.3.15.3 does, with its lines.
    result = scenario("--overlap")
    started = result["started"]
    assert _triples(started) == [(OVERLAP_PROGRAM, 1, TCP), (OVERLAP_PROGRAM, 2, TCP),
                                 (OVERLAP_PROGRAM, 3, TCP), (HELD_PROGRAM, 1, TCP)]
    ports = {version: port for _, version, _, port in _rows(started, OVERLAP_PROGRAM)}
    assert ports[1] == ports[2] != ports[3]
    assert result["later_answer"] == "tcp-rpc\n"
    log = result["log"].split("Starting reconfiguration")[0]
    assert log.count("pmap_set failed.") == 2
    assert f"pmap_set failed. service=later program={OVERLAP_PROGRAM} version=2\n" in log
    assert f"pmap_set failed. service=heldlater program={HELD_PROGRAM} version=1\n" in log
    assert "Service heldlater failed to start and is deactivated." in log
    assert "Service later failed" not in log
    assert "Started working: 4 available services" in log
    assert "it is served at version 3 only" in log


def test_a_reload_removing_the_earlier_range_registers_the_later_whole_range() -> None:
    # xinetd leaves version 2 unregistered (the test below shows it); the later
    # service takes it once the earlier one's UNSET is answered, at its own port.
    result = scenario("--overlap")
    later_port = next(row[3] for row in _rows(result["started"], OVERLAP_PROGRAM)
                      if row[1] == 3)
    assert _rows(result["reloaded"], OVERLAP_PROGRAM) == [
        [OVERLAP_PROGRAM, 2, TCP, later_port], [OVERLAP_PROGRAM, 3, TCP, later_port]]
    assert _triples(_rows(result["reloaded"], HELD_PROGRAM)) == [(HELD_PROGRAM, 1, TCP)]
    assert result["terminated"] == []
    assert result["returncode"] == 0


def test_a_reload_adding_the_earlier_range_back_leaves_the_shared_version_to_its_holder(
        ) -> None:
    # The later services, running, hold version 2 and HELD_PROGRAM's version 1 when the
    # earlier ones come back: the portmapper refuses those to the earlier ones, and the
    # load-time warning does not claim the later ones lose them.
    result = scenario("--overlap")
    later_port = next(row[3] for row in _rows(result["reloaded"], OVERLAP_PROGRAM)
                      if row[1] == 3)
    held_port = _rows(result["reloaded"], HELD_PROGRAM)[0][3]
    restored = _rows(result["restored"], OVERLAP_PROGRAM)
    assert [row[:3] for row in restored] == [[OVERLAP_PROGRAM, v, TCP] for v in (1, 2, 3)]
    assert restored[0][3] != later_port
    assert [row[3] for row in restored[1:]] == [later_port, later_port]
    assert _rows(result["restored"], HELD_PROGRAM) == [[HELD_PROGRAM, 1, TCP, held_port]]
    log = result["restored_log"]
    assert f"pmap_set failed. service=early program={OVERLAP_PROGRAM} version=2\n" in log
    assert "Service heldfirst failed to start and is deactivated." in log
    warnings = [line for line in log.splitlines() if "is also in the range of" in line]
    assert len(warnings) == 2
    assert all("(at a reload, a running one that holds it already)" in line
               for line in warnings)
    assert result["terminated"] == []


def test_the_overlap_registrations_and_lines_are_those_of_xinetd() -> None:
    _require_rpcbind()
    xinetd = oracle.xinetd_path()
    if xinetd is None:
        pytest.skip(oracle.unavailable_reason())
    ours, theirs = scenario("--overlap"), scenario("--overlap", "--xinetd", xinetd)
    assert _triples(ours["started"]) == _triples(theirs["started"])
    assert ours["later_answer"] == theirs["later_answer"]

    def lines(log: str) -> list[str]:
        # Every error, and the start; pyxinetd's load-time WARNINGs are its own.
        return [line.split(": ", 1)[1] for line in log.splitlines()
                if "ERROR: " in line or "Started working" in line]
    assert lines(ours["log"])[:4] == lines(theirs["log"])[:4]
    # The differences: the reloads. xinetd leaves the shared version unregistered, so
    # the earlier service registers it when a reload adds it back (pyxinetd's later
    # one holds it then); HELD_PROGRAM's goes as in pyxinetd.
    assert _triples(theirs["reloaded"]) == [(OVERLAP_PROGRAM, 3, TCP), (HELD_PROGRAM, 1, TCP)]
    early = [row for row in _rows(theirs["restored"], OVERLAP_PROGRAM) if row[1] in (1, 2)]
    assert len(early) == 2 and early[0][3] == early[1][3]
    assert _triples(ours["restored"]) == _triples(theirs["restored"])
    assert lines(ours["restored_log"])[-2:] == lines(theirs["restored_log"])


def _against_fake_portmapper(script: Path, tmp_path: Path, *args: str) -> dict[str, Any]:
    """The result of a scenario run against tests/helpers/fake_portmapper.py (in a
    network namespace of its own), which must have ended without an error."""
    problem = namespace_problem("ip")
    if problem:
        pytest.skip(problem)
    result = run_scenario(script, tmp_path, *args)
    assert "error" not in result, result
    return result


def test_sigterm_unsets_a_version_whose_set_is_unanswered(tmp_path: Path) -> None:
    # The portmapper took the SET but its answer is lost: the daemon must not exit
    # leaving the portmapper to hand out the port of a socket that is gone.
    result = _against_fake_portmapper(LOST_REPLY, tmp_path, "sigterm")
    assert result["returncode"] == 0, result["log"]
    procedures = [call[0] for call in result["calls"]]
    assert procedures[0] == 1 and 2 in procedures    # SET, then its UNSET
    assert result["table"] == [], result


def test_a_version_whose_set_is_never_answered_is_unset(tmp_path: Path) -> None:
    # The portmapper applies the SETs of lostset (its only version) and of partial's
    # version 2 but never answers them. lostset fails and partial serves version 1,
    # neither leaving the portmapper a version nobody serves; the UNSET of lostset's
    # version takes shareudp's (the same program on udp), which is SET again.
    result = _against_fake_portmapper(LOST_REPLY, tmp_path, "no-answer")
    log = result["log"]
    assert "Service lostset failed to start and is deactivated." in log
    assert "pmap_set failed. service=partial program=" in log
    assert "Service partial failed" not in log
    assert _triples(result["deactivated"]) == [
        (LOST_PROGRAM, 1, UDP), (LOST_PROGRAM, 2, UDP), (PARTIAL_PROGRAM, 1, TCP)]
    assert result["table"] == [] and result["returncode"] == 0, result


def test_the_last_of_two_reloads_decides_the_versions_while_calls_are_unanswered(
        tmp_path: Path) -> None:
    # The second reload (rpc_version 2 -> 3) comes while the SET of version 2, from
    # the first one (1 -> 2), is unanswered: version 3 ends registered, alone.
    result = _against_fake_portmapper(SLOW_RELOAD, tmp_path)
    assert _triples(result["started"]) == [(SLOW_PROGRAM, 1, TCP)]
    assert _triples(result["settled"]) == [(SLOW_PROGRAM, 3, TCP)], result["calls"]
    assert result["answer"] == "tcp-rpc\n"
    assert result["table"] == [] and result["returncode"] == 0, result


def _held_unset_first(result: dict[str, Any]) -> None:
    """No SET of the program reached the portmapper after its UNSET, still unanswered."""
    calls = result["before_release"]
    unset = next(i for i, call in enumerate(calls) if call[:3] == [2, ORDER_PROGRAM, 1])
    assert [call for call in calls[unset:] if call[0] == 1] == [], calls


def _ends_as_configured(result: dict[str, Any]) -> None:
    assert _triples(result["settled"]) == [tuple(t) for t in result["expected"]], \
        result["calls"]
    assert result["answer"] == "tcp-rpc\n"
    assert result["reconfigured"] == result["reloads"], result["log"]
    assert result["table"] == [] and result["returncode"] == 0, result


def test_an_unset_does_not_take_a_set_of_the_program_still_unanswered(
        tmp_path: Path) -> None:
    # sharetcp's SET of version 2 is unanswered when the reload that removes shareudp
    # comes: no UNSET of version 2 is sent while it is (one call at a time per
    # version); the UNSET of version 1 goes (versions do not wait for each other) and
    # takes sharetcp's version 1 (tcp) too, which is SET again.
    result = _against_fake_portmapper(ORDER, tmp_path, "inflight-set")
    calls = result["before_release"]
    held = calls.index([1, ORDER_PROGRAM, 2, TCP, result["settled"][0][3]])
    assert [call for call in calls[held:] if call[0] == 2 and call[2] == 2] == [], calls
    _ends_as_configured(result)


def test_a_late_unset_of_a_cps_deactivation_does_not_take_the_reopened_port(
        tmp_path: Path) -> None:
    result = _against_fake_portmapper(ORDER, tmp_path, "cps-reopen")
    # The new port's SET waits for the answer to the UNSET before it.
    _held_unset_first(result)
    _ends_as_configured(result)


def test_a_late_unset_of_a_removed_service_does_not_take_it_when_added_again(
        tmp_path: Path) -> None:
    result = _against_fake_portmapper(ORDER, tmp_path, "readd")
    _held_unset_first(result)
    _ends_as_configured(result)


def test_a_service_added_again_at_its_port_while_its_set_is_unanswered_becomes_available(
        tmp_path: Path) -> None:
    # The SET of the removed service, answered once the one added again (same `port`)
    # waits for its turn, puts there exactly what the new one wants: it counts as the
    # new one's, whose registration settles, so the reload completes and it serves.
    result = _against_fake_portmapper(ORDER, tmp_path, "readd-fixed")
    assert "Reconfigured" in result["log"]
    _ends_as_configured(result)


WINDOW_PROGRAM = 0x2000011C
NARROW_PROGRAM = 0x2000011D


@functools.lru_cache(maxsize=1)
def _window_rounds() -> str:
    work = Path(tempfile.mkdtemp(prefix="pyxinetd-rpc-window-"))
    try:
        return json.dumps(_against_fake_portmapper(WINDOW, work, "rounds"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def window_rounds() -> dict[str, Any]:
    """The `rounds` case of the window scenario, run once per test session."""
    result: dict[str, Any] = json.loads(_window_rounds())
    return result


def test_a_wide_range_keeps_at_most_the_window_of_calls_in_flight() -> None:
    # rpc_version = 1-1000: the portmapper (holding the calls) never has more than 32
    # of them unanswered, and every version ends registered.
    result = window_rounds()
    assert max(result["held"]) == 32, result["held"]
    wide = [row for row in result["registered"] if row[0] == WINDOW_PROGRAM]
    assert sorted(row[1] for row in wide) == list(range(1, 1001))
    assert "pmap_set failed" not in result["log"]


def test_a_narrow_service_registers_while_a_wide_range_is_still_going() -> None:
    # Added after the wide one by the same reload, its SET gets the first free slot.
    result = window_rounds()
    first = result["first_round"]
    assert [row[:3] for row in first if row[0] == NARROW_PROGRAM] == [
        [NARROW_PROGRAM, 1, TCP]]
    assert len([row for row in first if row[0] == WINDOW_PROGRAM]) < 100


def test_sigterm_unsets_a_wide_range_through_the_window() -> None:
    result = window_rounds()
    assert max(result["held_at_exit"]) <= 32, result["held_at_exit"]
    unset = {(call[1], call[2]) for call in result["calls"] if call[0] == 2}
    assert {(WINDOW_PROGRAM, v) for v in range(1, 1001)} <= unset
    assert result["table"] == [] and result["returncode"] == 0, result["log"]


def test_sigterm_against_a_silent_portmapper_gives_up_after_one_call_s_retransmissions(
        tmp_path: Path) -> None:
    # Unanswered UNSETs hold their slots: the daemon does not send the other 68 after
    # them, 32 at a time, each batch waiting out its retransmissions; it gives up once
    # the first batch has had its time, says so, and exits.
    result = _against_fake_portmapper(WINDOW, tmp_path, "silent-exit")
    unset_versions = {call[2] for call in result["calls"]
                      if call[0] == 2 and call[1] == WINDOW_PROGRAM}
    assert len(unset_versions) == 32, sorted(unset_versions)
    assert f"pmap_unset failed. program={WINDOW_PROGRAM} versions=100 " \
           "(no time left at exit)" in result["log"]
    assert result["returncode"] == 0, result["log"]


def test_an_exit_that_does_not_wait_for_the_portmapper_still_sends_every_unset(
        tmp_path: Path) -> None:
    # -d's SIGINT ends the daemon at once: the UNSETs beyond the window are not left
    # unsent for want of a free slot, each goes once.
    result = _against_fake_portmapper(WINDOW, tmp_path, "interrupt")
    unset_versions = {call[2] for call in result["calls"]
                      if call[0] == 2 and call[1] == WINDOW_PROGRAM}
    assert unset_versions == set(range(1, 101)), sorted(unset_versions)
    assert result["returncode"] == 1, result["log"]
