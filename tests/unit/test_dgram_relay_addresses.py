"""A dgram wait = no client keeps its identity across the families of its service's
socket (a reload may give the service an IPv4 socket where it had a dual-stack one)."""

from __future__ import annotations

import socket

import pytest

from pyxinetd.dgramrelay import client_key, reply_address


def test_a_mapped_client_is_the_same_client_as_its_ipv4_address() -> None:
    assert client_key(("::ffff:127.0.0.1", 4000, 0, 0)) == ("127.0.0.1", 4000)
    assert client_key(("127.0.0.1", 4000)) == ("127.0.0.1", 4000)
    assert client_key(("::1", 4000, 0, 0)) == ("::1", 4000, 0, 0)


def test_replies_are_addressed_in_the_form_of_the_socket_that_sends_them() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v4:
        assert reply_address(v4, ("::ffff:127.0.0.1", 4000, 0, 0)) == ("127.0.0.1", 4000)
        assert reply_address(v4, ("127.0.0.1", 4000)) == ("127.0.0.1", 4000)
        # An IPv6 client cannot be reached from an IPv4 socket: no reply, no error.
        assert reply_address(v4, ("::1", 4000, 0, 0)) is None


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv4_client_is_answered_from_a_dual_stack_socket() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as v6:
        assert reply_address(v6, ("127.0.0.1", 4000)) == ("::ffff:127.0.0.1", 4000, 0, 0)
        assert reply_address(v6, ("::1", 4000, 0, 0)) == ("::1", 4000, 0, 0)
