"""Reading rtnetlink address notifications (pyxinetd.addresswait)."""

from __future__ import annotations

import struct

from pyxinetd.addresswait import RTM_NEWADDR, has_new_address

RTM_DELADDR = 21
RTM_NEWLINK = 16


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
