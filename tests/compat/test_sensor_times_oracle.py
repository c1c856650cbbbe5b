"""flags = SENSOR with deny_time, and access_times, at run time: pyxinetd against the
real xinetd 2.3.15.3.

Same scenario for both daemons, run at once, each in its own network and mount
namespaces (tests/helpers/sensor_times_scenario.py): sensors on IPv4 and dual-stack
sockets and a datagram one (minutes, FOREVER, NEVER; one outside its access_times, one
whose only_from refuses, one refused by `instances = 0`, one logging no failures),
the services they protect (external, forked and in-loop builtins, datagram builtin,
dgram wait = yes, redirect; IPv4 and dual-stack), access_times windows that exclude
the present minute (stream and dgram, external and internal, wait = yes, redirect,
with banners) or include it, a window across midnight and one ending at `24:00`; then
a SIGUSR1 dump and a SIGHUP reload. What every client saw and the lines logged, in
order, must be xinetd's once the differences docs/compatibility.md lists are applied
here, each by name:

- the address checks run in the master (xinetd: in the forked child, after START);
- a client caught on a dual-stack socket is refused on IPv4 sockets too;
- a refused stream `wait = yes` request is accepted and closed;
- `24:00` ends an access_times interval.

The configuration diagnostics are compared line by line in test_diagnostics_oracle.py;
here only what they decide (the service runs or not). The scrub of expired entries
takes xinetd a minute at least: tests/integration/test_sensor.py shows pyxinetd's with
shorter minutes.
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "sensor_times_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

Result = dict[str, Any]

# The services on IPv4 sockets that 127.0.0.3 asks while it is listed only as
# ::ffff:127.0.0.3 (caught on the dual-stack sensor).
IPV4_SOCKETS = ("ext4", "daytime", "echo", "udpecho", "uwait", "redir")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Result]:
    """(xinetd's result, pyxinetd's), both daemons run at once."""
    root = tmp_path_factory.mktemp("sensor-times")
    xinetd = require_xinetd()
    (root / "x").mkdir()
    (root / "p").mkdir()
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(run_scenario, SCENARIO, root / "x", xinetd, mount=True)
        ours = pool.submit(run_scenario, SCENARIO, root / "p", sys.executable, "-m",
                           "pyxinetd", mount=True)
        return theirs.result(), ours.result()


def runtime(lines: list[str]) -> list[str]:
    """The lines about the run: without the configuration diagnostics (`[file=...]`,
    xinetd's DEBUG `removing ID`) and the version line."""
    return [line for line in lines
            if "[file=" not in line and not line.startswith("DEBUG: removing ")
            and " started with " not in line]


def checked_in_the_master(lines: list[str]) -> list[str]:
    """xinetd's lines without the START its forked child's address refusal follows
    (the two come in either order): pyxinetd refuses before creating any process."""
    def refused(i: int, m: re.Match[str]) -> bool:
        fail = f"FAIL: {m.group(1)} address from={m.group(2)}"
        return fail in lines[max(0, i - 2):i + 3]
    return [line for i, line in enumerate(lines)
            if not ((m := re.fullmatch(r"START: (\S+) pid=N from=(\S+)", line))
                    and refused(i, m))]


def listed_as_the_host(lines: list[str]) -> list[str]:
    """xinetd's lines as they are when 127.0.0.3, caught as ::ffff:127.0.0.3, is refused
    on IPv4 sockets too: until a sensor on an IPv4 socket catches it again (a CRITICAL
    line xinetd alone writes, the host being listed already), the servers xinetd started
    for it are refusals, and the connection xinetd's redirect made to ext4 never
    happens."""
    caught_again = ("CRITICAL: N {process_sensor} Adding 127.0.0.3 to the "
                    "global_no_access list for 5 minutes")
    end = lines.index(caught_again)
    out, redirected = [], False
    for line in lines[:end]:
        m = re.fullmatch(r"START: (\S+) pid=N from=127\.0\.0\.3", line)
        if m:
            out.append(f"FAIL: {m.group(1)} address from=127.0.0.3")
            redirected = redirected or m.group(1) == "redir"
        elif redirected and line == "START: ext4 pid=N from=127.0.0.1":
            redirected = False
        else:
            out.append(line)
    return out + lines[end + 1:]


def without_the_24_00_service(lines: list[str]) -> list[str]:
    """pyxinetd's lines without what its running t_24 (`00:00-24:00`, which xinetd
    rejects) adds: its START, its reload line, one service in the counts."""
    def counted(line: str) -> str:
        return re.sub(r"(Started working: |old=)(\d+)",
                      lambda m: f"{m.group(1)}{int(m.group(2)) - 1}", line)
    return [counted(line) for line in lines
            if not re.fullmatch(r"START: t_24 .*|NOTICE: readjusting service t_24", line)]


def test_clients_see_what_xinetds_see(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    expected = dict(xinetd["clients"])
    for name in IPV4_SOCKETS:       # refused as any listed IPv4 client is
        expected[f"3 {name}"] = xinetd["clients"][f"5 {name}"]
    expected["t_swait"] = "b'' EOF"         # accepted and closed; xinetd leaves it queued
    expected["t_24"] = "b'hi\\n' EOF"       # served; xinetd disabled the service
    assert pyxinetd["clients"] == expected
    seen = xinetd["clients"]
    assert seen["trap4 .2"] == "b'GO AWAY\\n' EOF"         # banner_fail, then the end
    assert seen["trap6 .3"] == "b'HELLO\\n' EOF"           # banner first, always
    assert seen["2 t_ext"] == "b'HELLO\\nGO AWAY\\n' EOF"   # outside its window
    assert seen["2 ext6"] == seen["5 ext6"] == seen["::1 ext6"] == "b'' EOF"
    assert seen["4 ext4"] == seen["8 ext4"] == seen["11 ext4"] == seen["12 ext4"] \
        == "b'hi\\n' EOF"
    assert seen["t_in"] == "b'hi\\n' EOF"
    assert seen["t_udp"] == seen["t_uwait"] == "TimeoutError"
    assert seen["t_mid"] == "connect ConnectionRefusedError"   # disabled
    assert seen["after reload 2 ext4"] == "b'GO AWAY\\n' EOF"   # the list survives


def test_lines_are_xinetds(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    expected = listed_as_the_host(checked_in_the_master(runtime(xinetd["lines"])))
    assert without_the_24_00_service(runtime(pyxinetd["lines"])) == expected
    lines = xinetd["lines"]
    for line in ("CRITICAL: N {process_sensor} Adding 127.0.0.2 to the global_no_access "
                 "list for 5 minutes",
                 "CRITICAL: N {process_sensor} Adding ::ffff:127.0.0.3 to the "
                 "global_no_access list for -1 minutes",
                 "CRITICAL: N {process_sensor} Adding ::1 to the global_no_access list "
                 "for -1 minutes",
                 "FAIL: never address from=127.0.0.4",      # NEVER: nothing added
                 "FAIL: ttrap time from=127.0.0.8",         # not listed
                 "FAIL: ltrap service_limit from=127.0.0.12",
                 "FAIL: t_ext time from=127.0.0.2",         # time before the list
                 "FAIL: t_swait time from=<no address>",
                 "FAIL: t_uwait time from=127.0.0.7"):
        assert line in lines
    # A listed client caught again is not added again; nor is 127.0.0.2 on the
    # dual-stack sensor, where it is ::ffff:127.0.0.2.
    assert sum("Adding 127.0.0.2 " in line or "Adding ::ffff:127.0.0.2 " in line
               for line in lines) == 1
    # log_on_failure empty: no FAIL line, the CRITICAL one all the same.
    assert not any("FAIL: qtrap" in line for line in lines)
    assert any("Adding 127.0.0.10 " in line for line in lines)


def test_windows_xinetd_rejects(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    xinetd_errors = [line for line in xinetd["lines"] if "invalid time interval" in line]
    assert [re.sub(r" \[file=.*", "", line) for line in xinetd_errors] == [
        "ERROR: invalid time interval: 23:00-01:00", "ERROR: invalid time interval"] * 2
    ours = [line for line in pyxinetd["lines"]
            if "[file=" in line and not line.startswith("DEBUG: removing ")]
    # Both name the rejected service once the files are read, without -d (xinetd also
    # t_24, whose 24:00 it rejects).
    assert ([line.split(":")[1] for line in pyxinetd["lines"]
             if line.startswith("DEBUG: removing ")]
            == [line.split(":")[1] for line in xinetd["lines"]
                if line.startswith("DEBUG: removing ") and "t_24" not in line])
    # Across midnight: rejected alike; 24:00: taken as the end of the day, with a warning.
    assert [line.split(" (")[0] for line in ours] == [
        "ERROR: invalid time interval: 23:00-01:00",
        "WARNING: service t_24: 00:00-24:00: 24:00 taken as the end of the day"] * 2


def test_the_dump_says_nothing_of_the_list(results: tuple[Result, Result]) -> None:
    for result in results:
        dump = "\n".join(result["dump"])
        assert "END OF DUMP" in dump
        assert "global_no_access" not in dump
        assert not re.search(r"127\.0\.0\.(2|3|5|9|10)\b|::1\b", dump)
        assert re.findall(r"Deny Time: (-?\d+)", dump) == ["5", "-1", "0", "3", "5", "5",
                                                            "5", "5"]
