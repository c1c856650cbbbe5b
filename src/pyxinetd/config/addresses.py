"""Parsing only_from / no_access tokens into AddressEntry objects.

xinetd tries, in order: a numeric address (an IPv4 mask comes from its trailing zero
octets, glibc short forms such as 127.1 are accepted), a host name or `.domain`
suffix, an explicit `addr/bits` mask, a factorised `a.b.c.{x,y}` form, and finally a
name from /etc/networks. A token nothing recognises is dropped with a message and the
service stays up.

Differences, all documented in docs/compatibility.md: host names are recognised by
their shape, not by resolving them now (xinetd calls getaddrinfo at load time only to
throw the answer away: entries match by reverse lookup at connection time, and a name
that does not resolve could never match anyway); an IPv6 `/128` entry matches its host
instead of never matching; and an /etc/networks name is its whole network, as the
manual promises (xinetd matches only the network's own address, and drops the name of
network 0.0.0.0, `default`, which here matches every IPv4 client, with a warning).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pyxinetd.config.lookups import decimal, is_digits
from pyxinetd.config.model import AddressEntry
from pyxinetd.textbytes import ascii_lower, quoted

NetworkLookup = Callable[[str], "ipaddress.IPv4Network | None"]

# RFC 1123 labels, plus '_' which resolvers accept in /etc/hosts, and any byte that is
# not ASCII (a UTF-8 name such as `bücher.example`, or a Latin-1 one, surrogate
# escapes here): xinetd hands the name's bytes to getaddrinfo, which finds it in
# /etc/hosts, as `bind` and `redirect` do here (config.netvalues).
# Written as "anything but the ASCII characters a label may not hold": the same set as
# [A-Za-z0-9_\x80-\U0010ffff], but that spelling took the re compiler ~30 ms (a
# bitmap over every code point), a tenth of the daemon's start-up.
_LABEL_CHAR = r"[^\x00-/:-@\[-^`{-\x7f]"
_LABEL_INNER = r"[^\x00-,./:-@\[-^`{-\x7f]"       # the same, and '-'
_LABEL = rf"{_LABEL_CHAR}(?:{_LABEL_INNER}*{_LABEL_CHAR})?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$")
_TCPD_WORDS = {"ALL", "LOCAL", "KNOWN", "UNKNOWN", "PARANOID"}


class AddressError(ValueError):
    """A token that must disable its service (xinetd reports these as errors)."""


@dataclass(frozen=True)
class AddressParse:
    entries: tuple[AddressEntry, ...]
    # A warning to report (token dropped, or parsed in a surprising way).
    warning: str | None = None
    # xinetd's words for it, where xinetd has a line for it.
    words: str | None = None


def zone_problem(text: str) -> str | None:
    """Why the zone of the IPv6 address `text` (`fe80::1%eth0`) cannot be used, or None
    when it has none, `text` is no IPv6 address, or the zone resolves. xinetd reads
    such addresses with getaddrinfo(AI_NUMERICHOST), which takes a zone by number on
    any address, and by interface name only on a link-local one (glibc), and refuses
    the address otherwise; so does every address attribute here."""
    address, percent, zone = text.partition("%")
    if not percent:
        return None
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    try:
        socket.getaddrinfo(text, None, socket.AF_INET6, flags=socket.AI_NUMERICHOST)
        return None
    except (OSError, ValueError, UnicodeError):
        pass
    local = parsed.is_link_local or (parsed.is_multicast and (parsed.packed[1] & 0x0F) == 2)
    if not local and zone:
        try:
            socket.if_nametoindex(zone)
        except (OSError, ValueError, UnicodeError):
            pass
        else:
            return (f"its zone {quoted(zone)} names an interface, which only a link-local "
                    "address (fe80::/10) may carry: give the interface's number, or no zone")
    return f"no interface {quoted(zone)} for its zone"


def _ipv4_numeric(token: str) -> ipaddress.IPv4Address | None:
    if not token or not all(is_digits(c) or c in ".xXabcdefABCDEF" for c in token):
        return None
    try:
        # inet_aton is what getaddrinfo(AI_NUMERICHOST) uses: 127.1, 10, 0x7f.1 all work.
        return ipaddress.IPv4Address(socket.inet_aton(token))
    except (OSError, ValueError):
        return None


def _trailing_zero_network(address: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
    octets = address.packed
    significant = 4
    while significant > 0 and octets[significant - 1] == 0:
        significant -= 1
    return ipaddress.IPv4Network((address, significant * 8))


def _numeric(token: str) -> AddressEntry | None:
    if "/" in token or "{" in token:
        return None
    if ":" in token:
        try:
            address6 = ipaddress.IPv6Address(token)
        except ValueError:
            return None
        return AddressEntry(token, "numeric", ipaddress.IPv6Network((address6, 128)))
    address = _ipv4_numeric(token)
    if address is None:
        return None
    network = _trailing_zero_network(address)
    if network.prefixlen == 32:
        return AddressEntry(token, "numeric", network)
    return AddressEntry(token, "net", network)


def _cidr(token: str) -> tuple[AddressEntry | None, str | None]:
    """`addr/bits`, read as xinetd's sscanf("%[^/]/%u") reads it: the length is the
    leading number (a `+` allowed), anything after it is ignored (with a warning).
    `%u` takes a `-` too and wraps the number: `/-1` is 4294967295, longer than any
    address, so the entry is the address alone (xinetd matches 127.0.0.2/-1 as
    127.0.0.2); dropping it instead would turn `no_access = a/-1` into a hole."""
    address_text, _, bits_text = token.partition("/")
    length = re.match(r"([+-]?)([0-9]+)", bits_text)
    bits = decimal(length.group(2)) if length else None
    if length is None or bits is None:
        return None, None
    # Both remarks may apply (`127.0.0.0/255.0.0.0`): neither may hide the other.
    remarks = []
    if length.group(1) == "-" and bits != 0:
        # Beyond 32 bits strtoul saturates before the wrap.
        bits = 2 ** 32 - bits if bits < 2 ** 32 else 2 ** 32 - 1
        remarks.append(f"a negative prefix length is read as xinetd reads it, as {bits}")
    if length.end() < len(bits_text):
        remarks.append(f"{quoted(bits_text[length.end():])} after the prefix length is ignored, "
                       "as xinetd ignores it")
    if ":" in address_text:
        try:
            address6 = ipaddress.IPv6Address(address_text)
        except ValueError:
            return None, None
        if bits > 128:
            remarks.append("a prefix longer than 128 bits is taken as /128")
            bits = 128
        net6 = ipaddress.IPv6Network((address6, bits), strict=False)
        return AddressEntry(token, "cidr", net6), _remark(token, remarks)
    address = _ipv4_numeric(address_text)
    if address is None:
        return None, None
    if bits > 32:
        remarks.append("a prefix longer than 32 bits is taken as /32")
        bits = 32
    network = ipaddress.IPv4Network((address, bits), strict=False)
    mask = _dotted_netmask(bits_text)
    if mask is not None:
        # xinetd has no netmask form and reads its first number as the length: say
        # what the entry matches and how to write what was meant.
        remarks = [f"a dotted netmask is not understood (as in xinetd, the length is "
                   f"read as {bits_text[:length.end()]} and the rest ignored): the entry "
                   f"matches {network}; write {address_text}/{mask} for the network"]
    return AddressEntry(token, "cidr", network), _remark(token, remarks)


def _remark(token: str, remarks: list[str]) -> str | None:
    return f"{token}: {'; '.join(remarks)}" if remarks else None


def _dotted_netmask(text: str) -> int | None:
    """The prefix length of `text` if it is a dotted IPv4 netmask (255.0.0.0), else None."""
    if text.count(".") != 3:
        return None
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        return None


def _factorized(token: str) -> tuple[AddressEntry, ...] | None:
    head, brace, tail = token.partition("{")
    if not brace:
        return None
    if ":" in head or (head and not all(is_digits(c) or c == "." for c in head)):
        return None
    if head.startswith(".") or ".." in head:
        raise AddressError(f"bad address {token}: consecutive dots")
    if head and not head.endswith("."):
        raise AddressError(f"bad address {token}: the part before '{{' must end with a dot")
    prefix = [decimal(p) or 0 for p in head.split(".") if p] if head else []
    if len(prefix) > 3 or any(p > 255 for p in prefix):
        raise AddressError(f"bad address {token}: expected at most three octets before '{{'")
    if not tail.endswith("}") or "}" in tail[:-1]:
        raise AddressError(f"bad address {token}: the closing '}}' must end the address")
    items = tail[:-1].split(",")
    if any(item == "" for item in items):
        raise AddressError(f"bad address {token}: consecutive commas")
    numbers = [decimal(item) for item in items]
    if not all(n is not None and n <= 255 for n in numbers):
        raise AddressError(f"bad address {token}: expected numbers 0-255 between the braces")
    bits = 8 * (len(prefix) + 1)
    entries = []
    for number in numbers:
        octets = prefix + [number or 0] + [0] * (3 - len(prefix))
        network = ipaddress.IPv4Network((".".join(map(str, octets)), bits))
        entries.append(AddressEntry(token, "factorized", network))
    return tuple(entries)


def parse_address(token: str, networks: NetworkLookup) -> AddressParse:
    """Parse one token; raises AddressError for the mistakes xinetd treats as fatal."""
    if token == "":
        return AddressParse(())
    if "," in token and "{" not in token:
        raise AddressError(f"Address: {token} has a comma in it - remove the comma "
                           "(separate addresses with blanks)")
    if ":" in token and "%" in token:
        problem = zone_problem(token.partition("/")[0])
        if problem is not None:
            return AddressParse((), f"{problem}; it is ignored", f"failed to parse {token}")
    entry = _numeric(token)
    if entry is not None:
        return AddressParse((entry,))
    if "/" not in token and "{" not in token:
        if token.startswith("."):
            if _HOSTNAME_RE.match(token[1:]) and not all(is_digits(c) or c == "." for c in token):
                return AddressParse((AddressEntry(token, "domain", name=ascii_lower(token)),))
        else:
            named = networks(token)
            if named is not None:
                warning = None
                if named.prefixlen == 0:
                    warning = (f"{token} is the /etc/networks name of network 0.0.0.0: it "
                               "matches every IPv4 client, as 0.0.0.0 does (xinetd 2.3.15.3 "
                               f"ignores it: failed to parse {token})")
                return AddressParse((AddressEntry(token, "netname", named),), warning)
            if token.upper() in _TCPD_WORDS:
                # xinetd looks the word up as a host name, finds none and drops it.
                return AddressParse((), f"{token} is not a keyword in xinetd address lists, "
                                        "nor a host name; it is ignored: use 0.0.0.0/0 ::/0 "
                                        "for everyone", f"failed to parse {token}")
            if _HOSTNAME_RE.match(token) and not all(is_digits(c) or c == "." for c in token):
                return AddressParse((AddressEntry(token, "host", name=ascii_lower(token)),))
    if "/" in token:
        cidr, warning = _cidr(token)
        if cidr is not None:
            return AddressParse((cidr,), warning)
    factorized = _factorized(token)
    if factorized is not None:
        return AddressParse(factorized)
    if _dotted_typo(token):
        raise AddressError(f"bad address {token}: consecutive dots")
    return AddressParse((), "not an address, a network or a host name; it is ignored",
                        f"failed to parse {token}")


def _dotted_typo(token: str) -> bool:
    """A token nothing else read whose leading digits and dots hold two dots in a row,
    or start with a dot (`127.0.0..1`, `10..1`, `.5`, `.`, `.example.com/8`): an error
    that disables the service in xinetd (its factorised-address reader scans them
    first), not an entry to drop. Dropped with a warning, a mistyped `no_access` entry
    would let in the host it was written to refuse."""
    if token.startswith(".") and "/" not in token and "{" not in token \
            and not all(is_digits(c) or c == "." for c in token):
        # xinetd takes a dot and anything but digits and dots as a domain entry
        # (`..example`, `.-x.example`): no typo it refuses (dropped here, with a
        # warning, as such a name never matches).
        return False
    last = "."
    for char in token:
        if char == ".":
            if last == ".":
                return True
        elif not is_digits(char):
            return False
        last = char
    return False


def _written(entry: AddressEntry) -> tuple[object, int] | None:
    """The address as written and the prefix length: xinetd keeps a CIDR entry's host
    bits (it masks the client, not the entry), so `-= 127.0.0.0/8` leaves
    `127.255.0.0/8` in place although both match the same clients."""
    if entry.network is None:
        return None
    address: object = entry.network.network_address
    if entry.kind == "cidr":
        text = entry.text.partition("/")[0]
        if ":" in text:
            address = ipaddress.IPv6Address(text)
        else:
            address = _ipv4_numeric(text) or address
    return address, entry.network.prefixlen


def same_address(a: AddressEntry, b: AddressEntry) -> bool:
    """The equality `-=` uses: same address as written and same mask, or same name
    ignoring the case of A-Z (xinetd's strcasecmp in the C locale: `-= BÜCHER.example`
    keeps `bücher.example`)."""
    if a.network is not None or b.network is not None:
        return _written(a) == _written(b)
    return ascii_lower(a.name or "") == ascii_lower(b.name or "") and a.kind == b.kind
