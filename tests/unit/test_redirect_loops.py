"""pyxinetd.redirectloops: which redirect services lead back to themselves."""

from __future__ import annotations

import socket

from pyxinetd.redirectloops import find_loops, is_local_address
from tests.factories import make_service

LOCAL = {"127.0.0.1", "192.0.2.7"}     # the addresses this test pretends the host has


def local(family: int, host: str) -> bool:
    return host in LOCAL


def relay(id: str, port: int, to: tuple[str, int], bind: str | None = None):  # type: ignore[no-untyped-def]
    return make_service(name=id, id=id, port=port, bind=bind, redirect=to, server=None,
                        server_argv=(), types={"UNLISTED"})


def resolved(*services) -> dict[tuple[str, int], tuple[int, tuple[object, ...]]]:  # type: ignore[no-untyped-def]
    return {svc.redirect: (socket.AF_INET, svc.redirect) for svc in services
            if svc.redirect is not None}


def test_a_service_redirected_to_its_own_port() -> None:
    me = relay("me", 2000, ("127.0.0.1", 2000))
    assert find_loops([me], resolved(me), local) == {"me": "me -> me"}


def test_two_services_redirected_to_each_other() -> None:
    a = relay("a", 2001, ("192.0.2.7", 2002))
    b = relay("b", 2002, ("127.0.0.1", 2001), bind="192.0.2.7")
    assert find_loops([a, b], resolved(a, b), local) == {"a": "a -> b -> a",
                                                         "b": "b -> a -> b"}


def test_a_chain_that_ends_at_another_service_is_no_loop() -> None:
    a = relay("a", 2001, ("127.0.0.1", 2002))
    echo = make_service(name="echo", id="echo", port=2002, types={"INTERNAL", "UNLISTED"},
                        server=None, server_argv=())
    assert find_loops([a, echo], resolved(a), local) == {}


def test_a_target_on_another_host_is_no_loop() -> None:
    out = relay("out", 2000, ("198.51.100.1", 2000))
    assert find_loops([out], resolved(out), local) == {}


def test_a_service_bound_elsewhere_is_not_reached() -> None:
    # The target address is local, but the service on that port listens on another.
    me = relay("me", 2000, ("127.0.0.1", 2000), bind="192.0.2.7")
    assert find_loops([me], resolved(me), local) == {}


def test_a_chain_into_another_loop_names_only_the_loop() -> None:
    # `a` leads into `b`, which loops on itself: b's connections are closed, a's end
    # there; a is not a loop of its own.
    a = relay("a", 2001, ("127.0.0.1", 2002))
    b = relay("b", 2002, ("127.0.0.1", 2002))
    assert find_loops([a, b], resolved(a, b), local) == {"b": "b -> b"}


def test_local_addresses_are_told_by_a_bind() -> None:
    assert is_local_address(socket.AF_INET, "127.0.0.5")
    assert not is_local_address(socket.AF_INET, "192.0.2.200")   # TEST-NET, not here
    assert not is_local_address(socket.AF_INET, "not-an-address")
