"""only_from / no_access entries naming /etc/networks networks: each is the whole
network, whichever way the file writes its number (docs/access-control.md)."""

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
