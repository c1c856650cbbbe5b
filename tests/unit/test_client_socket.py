"""pyxinetd.clientsocket: the address a dgram/nowait client's own socket is bound to,
learnt from real datagrams on real loopback sockets."""

from __future__ import annotations

import resource
import socket

import pytest

from pyxinetd import clientsocket, replysource

needs_ipv6 = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")


def served(family: int, bind: str, client_host: str, *, v6only: bool = False
           ) -> tuple[socket.socket, tuple[object, ...], replysource.Source]:
    """A service socket as the listener makes it, and one client datagram read from it."""
    service = socket.socket(family, socket.SOCK_DGRAM)
    service.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        service.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    service.bind((bind, 0))
    if bind in ("0.0.0.0", "::"):
        replysource.enable(service, v6only=v6only)
    client_family = socket.AF_INET6 if ":" in client_host else socket.AF_INET
    with socket.socket(client_family, socket.SOCK_DGRAM) as client:
        client.sendto(b"x", (client_host, service.getsockname()[1]))
    service.settimeout(10)
    _, addr, source = replysource.receive(service, 100, replysource.space(service))
    return service, addr, source


@pytest.mark.parametrize(("family", "bind", "client_host", "local_host"), [
    (socket.AF_INET, "127.0.0.1", "127.0.0.1", "127.0.0.1"),
    (socket.AF_INET, "0.0.0.0", "127.0.0.1", "127.0.0.1"),
    pytest.param(socket.AF_INET6, "::", "127.0.0.1", "::ffff:127.0.0.1", marks=needs_ipv6),
    pytest.param(socket.AF_INET6, "::", "::1", "::1", marks=needs_ipv6),
])
def test_the_clients_socket_has_the_address_its_datagram_was_sent_to(
        family: int, bind: str, client_host: str, local_host: str) -> None:
    service, addr, source = served(family, bind, client_host)
    with service:
        local = clientsocket.local_address(service, source)
        assert local is not None
        assert local[:2] == (local_host, service.getsockname()[1])
        with clientsocket.open_for(service, addr, local) as own:
            assert own.getpeername()[:2] == addr[:2]


def test_a_wildcard_socket_without_the_destination_gives_no_address() -> None:
    # What an IPv6 multicast request leaves: no source to answer from, nothing to bind.
    service, _, _ = served(socket.AF_INET, "0.0.0.0", "127.0.0.1")
    with service:
        assert clientsocket.local_address(service, replysource.KERNEL_CHOICE) is None


def test_the_clients_sockets_may_hold_an_eighth_of_the_descriptor_limit() -> None:
    # A quarter of the half that in-loop sessions and relays may hold in all
    # (pyxinetd.loopshare): a relay with a socket of its own costs two descriptors.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert clientsocket.budget() == soft // 8
