"""Debian 12's log parsers read pyxinetd's lines as they read the real xinetd 2.3.15.3's.

tests/helpers/log_parsers_scenario.py runs against each daemon in its own network and
mount namespaces: served clients (log_on_success HOST PID EXIT DURATION USERID, no
identd), and clients refused by only_from, no_access, per_source, instances,
access_times and hosts.deny (log_on_failure HOST ATTEMPT), and by only_from on an IPv6
socket (an IPv4 client, `::ffff:` mapped, and an IPv6 one), each from an address of its
own, each case logged once to syslog (authpriv) and once to a FILE log. The syslog
datagrams are written out as rsyslog's traditional file format puts them in
/var/log/auth.log (`Mmm dd hh:mm:ss HOST TAG: text`), the FILE log's lines are taken as
they are, and both are fed to the real parsers (tests/log_parsers.py):

- fail2ban's `xinetd-fail` filter (fail2ban-regex): the same hosts, as many times, in
  the same order: the same bans;
- logwatch's `secure` service script: the same report, but for the documented
  deviation (docs/compatibility.md, "Access control"): xinetd forks before its address
  and libwrap checks and logs that child's START and EXIT around the FAIL, which
  logwatch counts as a connection; pyxinetd refuses in the master and logs FAIL alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.log_parsers import (
    fail2ban_hosts, logwatch_report, require_fail2ban, require_logwatch)
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "log_parsers_scenario.py"

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                 reason=str(namespace_problem("ip", "mount")))]

Result = dict[str, Any]
LOGS = ("syslog", "file")
# The services whose clients xinetd refuses in a forked child (address, libwrap).
REFUSED_IN_CHILD = ("only_from", "no_access", "libwrap", "dual_stack")
# What rsyslog (Debian 12: RSYSLOG_TraditionalFileFormat) writes for a datagram
# `<PRI>Mmm dd hh:mm:ss TAG: text`: the priority goes, the host name comes in.
DATAGRAM = re.compile(r"<\d+>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (xinetd\[\d+\]: .*)", re.S)
HOSTNAME = "gateway"


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    """For each daemon ("xinetd", "pyxinetd"), its lines as each log holds them."""
    require_fail2ban()      # no daemon runs when the parsers cannot be had
    root: Path = tmp_path_factory.mktemp("log_parsers")
    results = run_scenario_both(SCENARIO, root, require_xinetd(), mount=True)
    return {daemon: {"syslog": [auth_log_line(m) for m in result["syslog"]],
                     "file": list(result["file"])}
            for daemon, result in zip(("xinetd", "pyxinetd"), results)}


def auth_log_line(datagram: str) -> str:
    m = DATAGRAM.fullmatch(datagram)
    assert m is not None, f"not a syslog datagram of xinetd's: {datagram!r}"
    return f"{m.group(1)} {HOSTNAME} {m.group(2)}"


def without_refusing_children(found: list[str]) -> list[str]:
    """xinetd's lines less the START and EXIT lines of the children it forks to refuse
    a client by address or libwrap: pyxinetd refuses in the master and logs no such
    lines (docs/compatibility.md)."""
    child = re.compile(r"(START|EXIT): (%s)(_file)? " % "|".join(REFUSED_IN_CHILD))
    return [line for line in found if not child.search(line)]


def canonical(report: str) -> list[Any]:
    """The report as a tree of its lines by indentation, each level sorted (Perl's hash
    order decides the order of services and hosts), pids, stamps and durations
    made N."""
    text = re.sub(r"\d\d/\d\d?/\d\d?@\d\d:\d\d:\d\d", "STAMP", report)
    text = re.sub(r"(pid|duration)=\d+", r"\1=N", text)
    text = re.sub(r"xinetd\[\d+\]", "xinetd[N]", text)
    root: list[Any] = []
    stack: list[tuple[int, list[Any]]] = [(-1, root)]
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        while stack[-1][0] >= depth:
            stack.pop()
        children: list[Any] = []
        stack[-1][1].append((line.strip(), children))
        stack.append((depth, children))

    def ordered(nodes: list[Any]) -> list[Any]:
        return sorted((text, ordered(kids)) for text, kids in nodes)
    return ordered(root)


@pytest.mark.parametrize("log", LOGS)
def test_fail2ban_bans_the_same_hosts(lines: dict[str, dict[str, list[str]]], log: str,
                                      tmp_path: Path) -> None:
    root = require_fail2ban()
    xinetd = fail2ban_hosts(root, lines["xinetd"][log], tmp_path)
    pyxinetd = fail2ban_hosts(root, lines["pyxinetd"][log], tmp_path)
    assert pyxinetd == xinetd
    # The filter knows `address` and `libwrap` refusals: only_from's client twice,
    # no_access's and hosts.deny's once, the IPv6 socket's two (fail2ban reads
    # ::ffff:127.0.0.9 as the IPv4 address it maps).
    assert xinetd == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.8",
                      "127.0.0.9", "::1"]


@pytest.mark.parametrize("log", LOGS)
def test_logwatch_reports_the_same_connections_and_refusals(
        lines: dict[str, dict[str, list[str]]], log: str) -> None:
    root = require_logwatch()
    xinetd = logwatch_report(root, without_refusing_children(lines["xinetd"][log]))
    pyxinetd = logwatch_report(root, lines["pyxinetd"][log])
    assert canonical(pyxinetd) == canonical(xinetd)


def test_logwatch_reads_the_events_from_syslog(
        lines: dict[str, dict[str, list[str]]]) -> None:
    # A comparison of two empty reports proves nothing: what logwatch made of them.
    report = logwatch_report(require_logwatch(), lines["pyxinetd"]["syslog"])
    refused = report.split("Refused Connections:", 1)[1].split("**Unmatched Entries**")[0]
    assert canonical(refused) == canonical(
        "   Service instances:\n      127.0.0.6: 1 Time(s)\n"
        "   Service libwrap:\n      127.0.0.8: 1 Time(s)\n"
        "   Service no_access:\n      127.0.0.3: 1 Time(s)\n"
        "   Service only_from:\n      127.0.0.2: 2 Time(s)\n")
    assert "127.0.0.10: 1 Time(s)" in report and "127.0.0.11: 1 Time(s)" in report
    # Its patterns know neither refusal: logwatch lists them as it finds them.
    assert "xinetd: FAIL: access_times time from=127.0.0.7: 1 Time(s)" in report
    assert "xinetd: FAIL: per_source per_source_limit from=127.0.0.4: 1 Time(s)" in report


def test_only_xinetds_refusing_children_count_as_logwatch_connections(
        lines: dict[str, dict[str, list[str]]]) -> None:
    # The documented deviation, as logwatch shows it: xinetd's report also lists the
    # clients refused by address or libwrap under "Connections", pyxinetd's does not.
    root = require_logwatch()
    logged = {daemon: lines[daemon]["syslog"] for daemon in lines}
    assert without_refusing_children(logged["pyxinetd"]) == logged["pyxinetd"]
    connections = {daemon: logwatch_report(root, found).split("Refused Connections:")[0]
                   for daemon, found in logged.items()}
    for service, host in (("only_from", "127.0.0.2"), ("no_access", "127.0.0.3"),
                          ("libwrap", "127.0.0.8")):
        assert f"Service {service} [" in connections["xinetd"]
        assert f"Service {service} [" not in connections["pyxinetd"]
        assert host in connections["xinetd"] and host not in connections["pyxinetd"]
