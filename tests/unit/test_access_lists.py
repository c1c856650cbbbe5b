"""only_from / no_access matching and combination (reference §3.1-3.3; the better-match
rule is pyxinetd's, see docs/compatibility.md)."""

from __future__ import annotations

import pytest

from pyxinetd.access import lists
from pyxinetd.config.addresses import parse_address
from pyxinetd.config.lookups import Lookups
from tests.factories import make_service

NETS = Lookups().network


def entries(*tokens: str):  # type: ignore[no-untyped-def]
    out = []
    for token in tokens:
        out.extend(parse_address(token, NETS).entries)
    return tuple(out)


def allowed(only_from: tuple[str, ...] | None, no_access: tuple[str, ...], peer: str,
            name: str | None = None) -> bool:
    svc = make_service(only_from=None if only_from is None else entries(*only_from),
                       no_access=entries(*no_access))
    return lists.check(svc, peer, name).allowed


@pytest.mark.parametrize("token, peer, expected", [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("127.1", "127.0.0.1", True),
    ("128.138.12.0", "128.138.12.99", True),        # trailing zero octets -> /24
    ("128.138.12.0", "128.138.13.1", False),
    ("10.0.0.0", "10.200.1.1", True),               # /8
    ("0.0.0.0", "203.0.113.9", True),               # everyone
    ("10.1.0.0/16", "10.1.255.1", True),
    ("10.1.0.0/16", "10.2.0.1", False),
    ("10.1.2.3/40", "10.1.2.3", True),              # bits beyond 32 act like 32
    ("128.138.{200,201}", "128.138.201.4", True),
    ("128.138.{200,201}", "128.138.202.4", False),
    ("127.0.0.1", "::ffff:127.0.0.1", True),        # mapped clients match IPv4 entries
    ("127.0.0.0/8", "::ffff:127.9.9.9", True),
    ("::1", "::1", True),
    ("::1", "127.0.0.1", False),
    ("::", "::1", False),                           # only the literal ::
    ("2001:db8::/32", "2001:db8:1::5", True),
    ("2001:db8::/32", "2001:db9::5", False),
    ("::/0", "::ffff:10.0.0.1", True),
    ("::1/128", "::1", True),                       # xinetd: never matches (a bug)
    ("::ffff:0:0/96", "::ffff:10.1.1.1", True),
    # An IPv4 client (IPv4 socket) matches the entries within ::ffff:0:0/96 by its
    # mapped form, as the same host does on a dual-stack socket.
    ("::ffff:127.0.0.1", "127.0.0.1", True),
    ("::ffff:127.0.0.1", "127.0.0.2", False),
    ("::ffff:0:0/96", "10.1.1.1", True),
    ("::ffff:127.0.0.0/104", "127.9.9.9", True),
    ("::/0", "10.0.0.1", False),                    # wider than ::ffff:0:0/96
    ("2001:db8::/32", "10.0.0.1", False),
])
def test_only_from_forms(token: str, peer: str, expected: bool) -> None:
    assert allowed((token,), (), peer) is expected


def test_absent_and_empty_only_from() -> None:
    assert allowed(None, (), "10.0.0.1")
    assert not allowed((), (), "10.0.0.1")           # present but empty: nobody


def test_names_need_a_resolver_and_match_case_insensitively() -> None:
    svc = make_service(only_from=entries("LocalHost"))
    assert lists.needs_names(svc)
    assert lists.check(svc, "127.0.0.1", "localhost").allowed
    assert lists.check(svc, "127.0.0.1", "LOCALHOST.").allowed
    assert not lists.check(svc, "127.0.0.1", None).allowed     # lookup failed
    assert not lists.needs_names(make_service(only_from=entries("10.0.0.0/8")))


def test_domain_suffix() -> None:
    assert allowed((".example.com",), (), "10.0.0.5", "host5.Example.COM")
    assert not allowed((".example.com",), (), "10.0.0.7", "example.com")
    assert not allowed((".example.com",), (), "10.0.0.7", "badexample.com")


def test_a_domain_written_with_its_final_dot_matches_as_without() -> None:
    # `.example.com.` never matched: the client's name lost its final dot, the entry
    # kept its own. A host entry already ignored it (`two.` is `two`).
    assert allowed((".example.com.",), (), "10.0.0.5", "host5.example.com")
    assert allowed((".example.com.",), (), "10.0.0.5", "host5.example.com.")
    assert not allowed(None, (".evil.example.",), "10.0.0.6", "www.evil.example")
    assert not allowed((".example.com.",), (), "10.0.0.7", "example.com")
    assert allowed(("two.",), (), "10.0.0.8", "two")


def test_no_access_alone() -> None:
    assert not allowed(None, ("10.0.0.0/8",), "10.1.1.1")
    assert allowed(None, ("10.0.0.0/8",), "11.1.1.1")
    assert not allowed(None, ("badguy.example.com",), "10.0.0.6", "badguy.example.com")


def test_a_mapped_deny_entry_refuses_the_ipv4_client_it_names() -> None:
    # The same host, whichever socket family sees it: no way round the entry.
    for peer in ("127.0.0.1", "::ffff:127.0.0.1"):
        assert not allowed(None, ("::ffff:127.0.0.1",), peer)
        assert not allowed(("127.0.0.0/8",), ("::ffff:127.0.0.1",), peer)
        assert not allowed(("::ffff:127.0.0.0/104",), ("127.0.0.1",), peer)
    assert allowed(("127.0.0.0/8",), ("::ffff:127.0.0.1",), "127.0.0.2")


def test_more_specific_match_wins() -> None:
    # The manual's example: the network is allowed, one host of it is not.
    assert not allowed(("128.138.209.0",), ("128.138.209.10",), "128.138.209.10")
    assert allowed(("128.138.209.0",), ("128.138.209.10",), "128.138.209.11")
    # xinetd 2.3.15 denies this one; the manual (and pyxinetd) let the host in.
    assert allowed(("127.0.0.1",), ("127.0.0.0/8",), "127.0.0.1")
    assert not allowed(("127.0.0.0/8",), ("127.0.0.1",), "127.0.0.1")
    # A host name beats a network, a longer domain beats a shorter one.
    assert allowed(("host5.example.com",), ("10.0.0.0/8",), "10.0.0.5", "host5.example.com")
    assert allowed((".lab.example.org",), (".example.org",), "192.168.1.11",
                   "ws11.lab.example.org")
    # IPv4 prefixes compare with IPv6 ones through their mapped length.
    assert allowed(("10.1.0.0/16",), ("::ffff:0:0/96",), "::ffff:10.1.2.3")


def test_equal_matches_deny_and_report_a_tie() -> None:
    svc = make_service(only_from=entries("10.0.0.0/8"), no_access=entries("10.0.0.0/8"))
    result = lists.check(svc, "10.1.1.1")
    assert not result.allowed and result.tie
    svc = make_service(only_from=entries("localhost"), no_access=entries("127.0.0.1"))
    result = lists.check(svc, "127.0.0.1", "localhost")
    assert not result.allowed and result.tie


def test_no_address_skips_the_lists() -> None:
    assert allowed((), (), "<no address>")


def test_with_many_names_a_lookup_is_asked_for_without_weighing_each_name() -> None:
    # Each name was tried against every entry, per request: a thousand names cost the
    # loop half a second a connection. Beyond a bound the name is simply looked up.
    many = entries("127.0.0.1", *(f"host{n}.example" for n in range(lists.NAME_ANALYSIS_MAX + 1)))
    assert lists.depends_on_name(make_service(only_from=many), "127.0.0.1")
    few = entries("127.0.0.1", "host1.example")
    assert not lists.depends_on_name(make_service(only_from=few), "127.0.0.1")
