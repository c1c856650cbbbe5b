"""Every query of shared/vectors/hosts_access.json through the hosts_access evaluator.

The fixtures of the vectors file stand in for the machine's resolver (hosts), NIS
(netgroup) and the `/file` lists, so the results do not depend on this machine.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.access.hostsaccess import evaluate, expand, parse_table
from pyxinetd.access.hostspatterns import Endpoint, Lookups, Request, parse_netgroups
from tests.compat.corpus import SHARED_ABSENT, shared_present

# shared/ lies beside the checkout (CI lays a copy there too).
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "hosts_access.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text()) if VECTORS.exists() else \
    {"fixtures": {}, "cases": []}
FIXTURES: dict[str, str] = DATA["fixtures"]

# Where pyxinetd deliberately differs from the tcpdmatch output (docs/access-control.md).
DEVIATIONS = {
    # Debian's libwrap calls setuid before setgid for `user NAME` without a group, so
    # the option fails there; pyxinetd resolves the user and its primary group at load
    # time and applies them in the right order in the server.
    ("V32", "in.telnetd", "10.0.0.5"): "granted",
}


class FixtureLookups(Lookups):
    def __init__(self) -> None:
        lists = {"/etc/twlists/admins": FIXTURES.get("admins_list", "")}
        super().__init__(read_file=lists.get)
        self._groups = parse_netgroups(FIXTURES.get("netgroup", ""))


def _hosts() -> list[tuple[str, str]]:
    pairs = []
    for line in FIXTURES.get("hosts", "").splitlines():
        fields = line.split()
        if len(fields) >= 2:
            pairs.extend((fields[0], name) for name in fields[1:])
    return pairs


def client_endpoint(text: str) -> Endpoint:
    """What the resolver would report for tcpdmatch's client argument."""
    if text.lower() == "unknown":
        return Endpoint()
    if text.lower() == "paranoid":
        return Endpoint(paranoid=True)
    try:
        return Endpoint(address=str(ipaddress.ip_address(text)))
    except ValueError:
        pass
    hosts = _hosts()
    address = next(a for a, n in hosts if n.lower() == text.lower())
    canonical = next(n for a, n in hosts if a == address)
    return Endpoint(address=address, name=canonical.lower())


def request_for(query: dict[str, str]) -> Request:
    daemon, _, server = query["daemon"].partition("@")
    user, _, client = query["client"].rpartition("@")
    return Request(daemon=daemon, client=client_endpoint(client),
                   server=Endpoint(address=server or None), user=user or None)


CASES = [(case, q) for case in DATA["cases"] for q in case["queries"]]


@pytest.mark.skipif(not CASES, reason="vectors file not available")
@pytest.mark.parametrize(("case", "query"), CASES,
                         ids=[f"{c['id']}-{q['daemon']}-{q['client']}" for c, q in CASES])
def test_vector(case: dict[str, Any], query: dict[str, str]) -> None:
    allow = parse_table(case["hosts_allow"], "hosts.allow")
    deny = parse_table(case["hosts_deny"], "hosts.deny")
    decision = evaluate(allow, deny, request_for(query), FixtureLookups(), serving=False)
    expected = DEVIATIONS.get((case["id"], query["daemon"], query["client"]), query["access"])
    assert decision.access == expected
    if expected == query["access"]:
        matched = query.get("matched")
        assert decision.matched == (None if matched in (None, "\u2014") else matched)
        # Every option line tcpdmatch traced, in order and %-expanded.
        shown = [line.split("option:", 1)[1].strip() for line in query["output"].splitlines()
                 if "option:" in line]
        ours = [line.split("option:", 1)[1].strip() for line in decision.trace
                if line.startswith("option:")]
        assert [" ".join(s.split()) for s in ours] == [" ".join(s.split()) for s in shown]
        errors = [line.split("error:", 1)[1].strip() for line in query["output"].splitlines()
                  if "error:" in line]
        if errors and expected == "denied":
            assert any(e in t for t in decision.trace for e in errors)


def test_malformed_line_is_reported() -> None:
    table = parse_table("in.telnetd 10.0.0.5\nin.telnetd: 10.0.0.6\n", "hosts.allow")
    assert table.warnings == ('hosts.allow, line 1: missing ":" separator',)
    assert len(table.rules) == 1


def test_expansion_replaces_shell_characters() -> None:
    request = Request("in.ftpd", Endpoint("10.0.0.5"), user="b;ob")
    assert expand("%u %d %% %a %x", request) == "b_ob in.ftpd % 10.0.0.5 "


def test_except_nests_to_the_right() -> None:
    allow = parse_table("ALL: 10. EXCEPT 10.0.0. EXCEPT 10.0.0.5\n", "hosts.allow")
    deny = parse_table("ALL: ALL\n", "hosts.deny")
    verdicts = [evaluate(allow, deny, Request("x", Endpoint(a)), Lookups()).access
                for a in ("10.0.0.5", "10.0.0.7", "10.1.1.1")]
    assert verdicts == ["granted", "denied", "granted"]


def test_mapped_client_matches_ipv4_and_mapped_patterns() -> None:
    # libwrap holds a mapped client as IPv4 and matches `[::ffff:...]` patterns with
    # nobody; pyxinetd matches them with the IPv4 hosts they name (a deny rule so
    # written must hold), and other IPv6 patterns still with IPv6 clients only.
    from pyxinetd.access.hostspatterns import normalize_address
    deny = parse_table("ALL: ALL\n", "hosts.deny")

    def access(allow: str, address: str) -> str:
        return evaluate(parse_table(f"in.telnetd: {allow}\n", "hosts.allow"), deny,
                        Request("in.telnetd", Endpoint(normalize_address(address))),
                        Lookups()).access
    for address in ("::ffff:10.0.0.5", "10.0.0.5"):
        assert access("10.0.0.5", address) == "granted"
        assert access("[::ffff:10.0.0.0]/104", address) == "granted"
        assert access("[::ffff:10.0.0.5]", address) == "granted"
        assert access("[::ffff:10.0.0.6]", address) == "denied"
        assert access("[::]/0", address) == "denied"
        assert access("[::ffff:0.0.0.0]/95", address) == "denied"


def test_options_must_be_last_and_errors_deny() -> None:
    allow = parse_table("ALL: ALL: ALLOW: spawn /bin/true\n", "hosts.allow")
    decision = evaluate(allow, parse_table("", "hosts.deny"), Request("d", Endpoint("1.2.3.4")),
                        Lookups())
    assert decision.access == "denied"
    assert "must be at end" in decision.trace[-1]


def test_wildcards_and_trailing_dot_are_whole_octets() -> None:
    deny = parse_table("ALL: ALL\n", "hosts.deny")
    allow = parse_table("ALL: 192.168.1. 10.0.0.?\n", "hosts.allow")
    assert evaluate(allow, deny, Request("d", Endpoint("192.168.10.1")), Lookups()).access \
        == "denied"
    assert evaluate(allow, deny, Request("d", Endpoint("10.0.0.7")), Lookups()).access \
        == "granted"
    assert evaluate(allow, deny, Request("d", Endpoint("10.0.0.17")), Lookups()).access \
        == "denied"


def test_the_vectors_were_found() -> None:
    # Without this, a missing vectors file would silently collect no case at all.
    if not shared_present():
        pytest.skip(SHARED_ABSENT)
    assert len(DATA["cases"]) > 0, f"no vectors at {VECTORS}"
