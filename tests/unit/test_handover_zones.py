"""A handed-over socket on a link-local address matches a service only on the same link."""

from __future__ import annotations

import socket

from pyxinetd.handover import _same_address


def test_the_same_link_local_address_on_two_links_is_two_addresses() -> None:
    lo = socket.if_nametoindex("lo")
    assert _same_address(f"fe80::1%{lo}", "fe80::1%lo")
    assert not _same_address(f"fe80::1%{lo}", f"fe80::1%{lo + 1000}")
    assert not _same_address("fe80::1%lo", "fe80::1%no-such-link0")


def test_addresses_without_zones_compare_as_before() -> None:
    assert _same_address("127.0.0.1", "::ffff:127.0.0.1")
    assert _same_address("fe80::1%lo", "fe80::1")
    assert not _same_address("127.0.0.1", "127.0.0.2")
