"""Reading rtnetlink address and route notifications (pyxinetd.addresswait)."""

from __future__ import annotations

import struct

from pyxinetd.addresswait import RTM_NEWADDR, RTM_NEWROUTE, RTN_LOCAL, has_new_address

RTM_DELADDR = 21
RTM_NEWLINK = 16
RTM_DELROUTE = 25
RTN_UNICAST = 1


def message(kind: int, payload: bytes = b"") -> bytes:
    """One netlink message, padded to 4 bytes as the kernel sends them."""
    length = 16 + len(payload)
    body = struct.pack("=IHHII", length, kind, 0, 0, 0) + payload
    return body + b"\0" * (-len(body) % 4)


def test_new_address_is_seen() -> None:
    assert has_new_address(message(RTM_NEWADDR, b"\x02" * 8))


def test_removed_addresses_and_links_are_not() -> None:
    assert not has_new_address(message(RTM_DELADDR, b"\x02" * 8))
    assert not has_new_address(message(RTM_NEWLINK))


def test_a_later_message_in_the_datagram_counts() -> None:
    # An unaligned payload length: the next header starts at the aligned offset.
    data = message(RTM_DELADDR, b"\x01\x02\x03") + message(RTM_NEWADDR)
    assert has_new_address(data)


def test_malformed_lengths_end_the_scan() -> None:
    zero_length = struct.pack("=IHHII", 0, RTM_DELADDR, 0, 0, 0) + message(RTM_NEWADDR)
    assert not has_new_address(zero_length)
    assert not has_new_address(b"\x01\x02")
    assert not has_new_address(b"")


def route(kind: int, route_type: int) -> bytes:
    """An RTM_*ROUTE message: struct rtmsg (family AF_INET, /32, table local) and flags."""
    return message(kind, bytes([2, 32, 0, 0, 255, 2, 254, route_type]) + b"\0" * 4)


def test_a_new_local_route_counts() -> None:
    # The kernel announces an IPv4 address before adding its local route, which is
    # what a bind needs; the route's own message is the moment the bind succeeds.
    assert has_new_address(route(RTM_NEWROUTE, RTN_LOCAL))
    assert has_new_address(message(RTM_DELADDR) + route(RTM_NEWROUTE, RTN_LOCAL))


def test_other_routes_do_not() -> None:
    assert not has_new_address(route(RTM_NEWROUTE, RTN_UNICAST))
    assert not has_new_address(route(RTM_DELROUTE, RTN_LOCAL))


def test_a_route_message_cut_before_its_type_does_not() -> None:
    whole = route(RTM_NEWROUTE, RTN_LOCAL)
    cut = struct.pack("=IHHII", 16 + 4, RTM_NEWROUTE, 0, 0, 0) + whole[16:20]
    assert not has_new_address(cut)
    assert not has_new_address(whole[:16 + 7])
