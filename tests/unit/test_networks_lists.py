"""only_from / no_access entries naming /etc/networks networks: each is the whole
network, whichever way the file writes its number; the network 0.0.0.0 (`default`) is
every IPv4 address, with a warning (docs/access-control.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxinetd.access import lists
from pyxinetd.config.addresses import parse_address
from pyxinetd.config.lookups import Lookups
from tests.factories import make_service

NETWORKS = """\
# name        number        aliases
loopback      127.0.0.0     lo-net
short         10
link-local    169.254.0.0
two           192.168.7
host-number   10.1.2.3
default       0.0.0.0
zero          0
"""


@pytest.fixture
def lookups(tmp_path: Path) -> Lookups:
    path = tmp_path / "networks"
    path.write_text(NETWORKS)
    return Lookups(networks=str(path))


def verdict(lookups: Lookups, peer: str, *, only_from: str | None = None,
            no_access: str | None = None) -> bool:
    def entries(token: str | None):  # type: ignore[no-untyped-def]
        return () if token is None else parse_address(token, lookups.network).entries
    svc = make_service(only_from=None if only_from is None else entries(only_from),
                       no_access=entries(no_access))
    return lists.check(svc, peer).allowed


@pytest.mark.parametrize(("name", "network"), [
    ("loopback", "127.0.0.0/8"), ("lo-net", "127.0.0.0/8"), ("short", "10.0.0.0/8"),
    ("link-local", "169.254.0.0/16"), ("two", "192.168.7.0/24"),
    ("host-number", "10.1.2.3/32"),
])
def test_a_network_name_is_its_whole_network(lookups: Lookups, name: str, network: str) -> None:
    parsed = parse_address(name, lookups.network)
    assert [(e.kind, str(e.network)) for e in parsed.entries] == [("netname", network)]
    assert parsed.warning is None


@pytest.mark.parametrize("peer", ["127.0.0.0", "127.0.0.1", "127.0.0.2", "127.255.255.255",
                                  "::ffff:127.0.0.1"])
def test_only_from_a_network_name_admits_every_address_of_it(lookups: Lookups,
                                                             peer: str) -> None:
    assert verdict(lookups, peer, only_from="loopback")
    assert not verdict(lookups, peer, no_access="loopback")


@pytest.mark.parametrize("peer", ["128.0.0.1", "10.0.0.1", "::1", "::ffff:10.0.0.1"])
def test_a_network_name_does_not_reach_beyond_its_network(lookups: Lookups,
                                                          peer: str) -> None:
    assert not verdict(lookups, peer, only_from="loopback")
    assert verdict(lookups, peer, no_access="loopback")


@pytest.mark.parametrize("name", ["default", "zero"])
def test_the_network_zero_is_every_ipv4_address_with_a_warning(lookups: Lookups,
                                                               name: str) -> None:
    parsed = parse_address(name, lookups.network)
    assert [(e.kind, str(e.network)) for e in parsed.entries] == [("netname", "0.0.0.0/0")]
    assert parsed.warning == (
        f"{name} is the /etc/networks name of network 0.0.0.0: it matches every IPv4 "
        f"client, as 0.0.0.0 does (xinetd 2.3.15.3 ignores it: failed to parse {name})")


@pytest.mark.parametrize(("peer", "ipv4"), [
    ("127.0.0.1", True), ("203.0.113.9", True), ("::ffff:198.51.100.1", True),
    ("::1", False), ("2001:db8::1", False),
])
def test_default_matches_ipv4_clients_only(lookups: Lookups, peer: str, ipv4: bool) -> None:
    # "This form does not work for IPv6 hosts" (xinetd.conf(5)), as for 0.0.0.0.
    assert verdict(lookups, peer, no_access="default") is not ipv4
    assert verdict(lookups, peer, only_from="default") is ipv4
    assert verdict(lookups, peer, only_from="0.0.0.0") is ipv4


def test_default_is_not_taken_as_a_host_name(lookups: Lookups) -> None:
    # Before: a host entry `default(HOST)`, matching a client whose reverse name is that.
    svc = make_service(no_access=parse_address("default", lookups.network).entries)
    assert not lists.needs_names(svc)
