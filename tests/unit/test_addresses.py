"""only_from / no_access tokens (reference §3.1)."""

from __future__ import annotations

import ipaddress

import pytest

from pyxinetd.config.addresses import AddressError, parse_address, same_address
from pyxinetd.config.lookups import Lookups

NETS = Lookups().network


def nets(token: str) -> list[str]:
    return [str(e.network) for e in parse_address(token, NETS).entries]


@pytest.mark.parametrize("token, expected", [
    ("128.138.12.0", ["128.138.12.0/24"]),
    ("10.0.0.0", ["10.0.0.0/8"]),
    ("128.0.12.0", ["128.0.12.0/24"]),
    ("0.0.0.0", ["0.0.0.0/0"]),
    ("127.0.0.1", ["127.0.0.1/32"]),
    ("127.1", ["127.0.0.1/32"]),
    ("::1", ["::1/128"]),
    ("::", ["::/128"]),
    ("10.1.2.3/8", ["10.0.0.0/8"]),
    ("0.0.0.0/0", ["0.0.0.0/0"]),
    ("192.168.1.7/32", ["192.168.1.7/32"]),
    ("10.0.0.1/40", ["10.0.0.1/32"]),
    ("::/0", ["::/0"]),
    ("fe80::/10", ["fe80::/10"]),
    ("::1/128", ["::1/128"]),
    ("128.138.{200,201}", ["128.138.200.0/24", "128.138.201.0/24"]),
    ("192.168.1.{1,2}", ["192.168.1.1/32", "192.168.1.2/32"]),
    ("{10,11}", ["10.0.0.0/8", "11.0.0.0/8"]),
    ("loopback", ["127.0.0.0/8"]),
])
def test_numeric_forms(token: str, expected: list[str]) -> None:
    assert nets(token) == expected


def test_kinds() -> None:
    kinds = {t: parse_address(t, NETS).entries[0].kind for t in
             ("127.0.0.1", "10.0.0.0", "10.0.0.0/8", "host.example", ".example.org",
              "10.{1,2}", "loopback")}
    assert kinds == {"127.0.0.1": "numeric", "10.0.0.0": "net", "10.0.0.0/8": "cidr",
                     "host.example": "host", ".example.org": "domain", "10.{1,2}": "factorized",
                     "loopback": "netname"}


def test_names_are_stored_as_text_lowercased() -> None:
    (entry,) = parse_address("LocalHost", NETS).entries
    assert (entry.kind, entry.name, entry.network) == ("host", "localhost", None)
    (entry,) = parse_address(".Example.COM", NETS).entries
    assert (entry.kind, entry.name) == ("domain", ".example.com")


@pytest.mark.parametrize("token", ["10.0.0.1,10.0.0.2", "a,b"])
def test_comma_outside_braces_is_an_error(token: str) -> None:
    with pytest.raises(AddressError, match="comma"):
        parse_address(token, NETS)


@pytest.mark.parametrize("token, words", [
    ("10..{1,2}", "consecutive dots"),
    ("10.0.{1,,2}", "consecutive commas"),
    ("10.0.{1,2}x", "closing"),
    ("10.0.{1,x}", "numbers"),
    ("10.0.{}", "consecutive commas"),
    ("1.2.3.4.{5}", "at most three octets"),
    (".{1}", "consecutive dots"),   # was read as 1.0.0.0/8
])
def test_bad_factorized_is_an_error(token: str, words: str) -> None:
    with pytest.raises(AddressError, match=words):
        parse_address(token, NETS)


@pytest.mark.parametrize("token", ["127.0.0..1", "10..1", "127..0/8", "127..", ".5", ".",
                                   ".5/8", ".example.com/8"])
def test_a_token_with_two_dots_in_a_row_or_a_leading_dot_is_an_error(token: str) -> None:
    # xinetd's factorised-address reader scans every token the others refused: two
    # dots in a row (or a dot first) before any other character disable the service.
    # Dropped with a warning, `no_access = 127.0.0..1` let in the host it named.
    with pytest.raises(AddressError, match="consecutive dots"):
        parse_address(token, NETS)


@pytest.mark.parametrize("token", ["a..b", "1.2.3.4.5", "127.0.0.1.",
                                   # A dot and a letter: a domain to xinetd, never a typo.
                                   "..example", ".foo..bar", ".-x.example"])
def test_dots_after_another_character_leave_the_token_dropped_with_a_warning(
        token: str) -> None:
    parsed = parse_address(token, NETS)
    assert parsed.entries == () and parsed.words == f"failed to parse {token}"


@pytest.mark.parametrize("token", ["127.0.0.", "$(bogusnet)", "10.0.0.0/x", "fe80::/abc"])
def test_unparseable_token_is_dropped_with_warning(token: str) -> None:
    parsed = parse_address(token, NETS)
    # xinetd's words start the line; pyxinetd's reason follows.
    assert parsed.entries == () and parsed.words == f"failed to parse {token}"
    assert parsed.warning and "it is ignored" in parsed.warning


@pytest.mark.parametrize("token, why", [
    ("fe80::2%no-such-if", "no interface 'no-such-if' for its zone"),
    ("fe80::2%no-such-if/64", "no interface 'no-such-if' for its zone"),
    # glibc takes a zone by name only on a link-local address, as xinetd reads it.
    ("fd00::2%lo", "its zone 'lo' names an interface, which only a link-local"),
    ("::ffff:10.0.0.1%lo", "its zone 'lo' names an interface"),
])
def test_a_zone_that_does_not_resolve_drops_the_token(token: str, why: str) -> None:
    # xinetd: `failed to parse TOKEN`, the word dropped. Kept as the bare address, the
    # entry matched that host on every interface, admitting whom xinetd refuses.
    parsed = parse_address(token, NETS)
    assert parsed.entries == () and parsed.words == f"failed to parse {token}"
    assert parsed.warning and why in parsed.warning and "it is ignored" in parsed.warning


@pytest.mark.parametrize("token", ["fe80::2%lo", "fe80::2%1", "fd00::2%1", "fe80::2%lo/64",
                                   "ff02::1%lo"])
def test_a_zone_that_resolves_is_kept(token: str) -> None:
    assert parse_address(token, NETS).entries and parse_address(token, NETS).warning is None


@pytest.mark.parametrize("word", ["ALL", "all", "LOCAL", "KNOWN", "UNKNOWN", "PARANOID"])
def test_tcpd_words_are_dropped_in_xinetds_words(word: str) -> None:
    # xinetd looks the word up as a host name, finds none: `failed to parse ALL`.
    parsed = parse_address(word, NETS)
    assert parsed.entries == ()
    assert parsed.words == f"failed to parse {word}"
    assert parsed.warning is not None and "not a keyword" in parsed.warning


def test_empty_token_is_ignored() -> None:
    assert parse_address("", NETS).entries == ()


def test_ipv6_128_matches_its_host() -> None:
    (entry,) = parse_address("::1/128", NETS).entries
    assert entry.network is not None and ipaddress.ip_address("::1") in entry.network


def test_same_address() -> None:
    a = parse_address("10.0.0.0", NETS).entries[0]
    b = parse_address("10.0.0.0/8", NETS).entries[0]
    c = parse_address("10.0.0.0/16", NETS).entries[0]
    h1 = parse_address("Host.example", NETS).entries[0]
    h2 = parse_address("host.EXAMPLE", NETS).entries[0]
    assert same_address(a, b) and not same_address(a, c) and same_address(h1, h2)
    assert not same_address(a, h1)


def test_dotted_netmask_is_read_as_xinetd_reads_it_with_a_warning_naming_the_prefix() -> None:
    parsed = parse_address("127.0.0.0/255.0.0.0", NETS)
    assert [str(e.network) for e in parsed.entries] == ["127.0.0.0/32"]
    assert parsed.warning is not None
    assert "dotted netmask" in parsed.warning and "write 127.0.0.0/8" in parsed.warning


def test_junk_and_too_long_prefix_are_both_reported() -> None:
    parsed = parse_address("::1/200x", NETS)
    assert parsed.warning is not None
    assert "'x' after the prefix length" in parsed.warning and "/128" in parsed.warning


def test_negative_prefix_is_read_as_xinetd_reads_it_the_address_alone() -> None:
    # xinetd's %u wraps -1 to 4294967295: longer than 32 bits, so the host itself
    # (observed: only_from = 127.0.0.2/-1 serves 127.0.0.2 alone).
    parsed = parse_address("127.0.0.2/-1", NETS)
    assert [str(e.network) for e in parsed.entries] == ["127.0.0.2/32"]
    assert parsed.warning is not None
    assert "as 4294967295" in parsed.warning and "taken as /32" in parsed.warning
    (entry,) = parse_address("::1/-8", NETS).entries
    assert str(entry.network) == "::1/128"
    (zero,) = parse_address("127.0.0.2/-0", NETS).entries
    assert str(zero.network) == "0.0.0.0/0"
    assert parse_address("127.0.0.2/-", NETS).entries == ()


def _label_char(c: str) -> bool:
    """The characters a host name's label may hold (see config.addresses)."""
    return c.isascii() and (c.isalnum() or c == "_") or not c.isascii()


# Not the characters that make a token another form of address (or separate tokens).
@pytest.mark.parametrize("code", [*(n for n in range(0x80) if chr(n) not in " \t\n{,/."),
                                  0x80, 0xE9, 0x3A9, 0x4E2D, 0xDCE9, 0xFFFD, 0x1F600, 0x10FFFF])
def test_a_host_name_may_hold_every_non_ascii_character_and_only_these_ascii_ones(
        code: int) -> None:
    c = chr(code)
    inner = parse_address(f"a{c}b.example", NETS)
    edge = parse_address(f"{c}a.example", NETS)
    if _label_char(c) or c == "-":
        assert [e.kind for e in inner.entries] == ["host"]
    else:
        assert inner.entries == ()
    # '-' may not start a label.
    assert bool(edge.entries) == _label_char(c)


def test_the_host_name_check_gives_up_quietly_without_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a pids cgroup or RLIMIT_NPROC a thread cannot be started: the load went
    # down with it (a reload lost, `check` a traceback); the check is a diagnostic.
    import threading

    from pyxinetd.config.hostnames import HostNameCheck

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", refuse)
    check = HostNameCheck()
    check.ask("nosuch.invalid")
    check.ask("other.invalid")
    assert check.failures(wait=0.5) == {}
