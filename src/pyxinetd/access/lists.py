"""Matching a client against a service's only_from / no_access lists (reference §3.2-3.3).

Entries are parsed by pyxinetd.config.addresses. Matching:
- IPv4 networks match IPv4 clients and IPv4-mapped IPv6 clients (`::ffff:a.b.c.d`);
- IPv6 networks match IPv6 clients by prefix (an exact address is a /128; `::/0`
  matches every client of a dual-stack socket, mapped ones included); those within
  ::ffff:0:0/96 name IPv4 hosts and match IPv4 clients too, so such a host gets the
  same decision through either family (`::ffff:127.0.0.1` matches 127.0.0.1 on an
  IPv4 socket as on a dual-stack one);
- host names match the client's reverse name, ignoring the case of A-Z (strcasecmp in
  the C locale, as xinetd: `É` and `é` differ); `.domain` entries match
  names that end with the suffix (the bare domain itself does not). As in xinetd there is
  no forward confirmation, and a failed lookup makes name entries not match.

Combining the lists: xinetd's manual promises that the more specific match wins, but
xinetd 2.3.15 denies whenever both lists match. pyxinetd does what the manual promises
(docs/compatibility.md, "Access control"): each list's best match is ranked, an exact
host (address or host name) above any `.domain` (more labels rank higher) above any
network (longer prefix ranks higher, IPv4 prefixes counted as their mapped IPv6 length).
A tie keeps xinetd's ERROR line and denies.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pyxinetd.config.model import AddressEntry, ServiceConfig
from pyxinetd.textbytes import ascii_lower

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

# Rank classes: networks < domains < single hosts.
_NETWORK, _DOMAIN, _HOST = 0, 1, 2


@dataclass(frozen=True)
class ListResult:
    allowed: bool
    # Both lists matched equally well: the caller logs xinetd's ERROR line.
    tie: bool = False


ALLOWED = ListResult(True)
DENIED = ListResult(False)


def tie_text(svc: ServiceConfig, peer: str) -> str:
    """xinetd's ERROR line when both lists match `peer` equally."""
    return (f"Service={svc.id}: only_from list and no_access list match equally the "
            f"address {peer}")


def has_lists(service: ServiceConfig) -> bool:
    return service.only_from is not None or bool(service.no_access)


def needs_names(service: ServiceConfig) -> bool:
    """True when some entry can only match by the client's reverse name."""
    entries = (service.only_from or ()) + service.no_access
    return any(e.name is not None and e.network is None for e in entries)


def parse_peer(peer: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return None


def rank(entry: AddressEntry, addr: IPAddress, name: str | None) -> tuple[int, int] | None:
    """How specifically `entry` matches the client, or None when it does not match."""
    net = entry.network
    if net is not None:
        if addr.version == net.version:
            if addr not in net:
                return None
        elif isinstance(addr, ipaddress.IPv6Address):
            mapped = addr.ipv4_mapped
            if mapped is None or mapped not in net:
                return None
        elif not (net.subnet_of(_MAPPED)  # type: ignore[arg-type]
                  and ipaddress.IPv6Address(f"::ffff:{addr}") in net):
            # An entry within ::ffff:0:0/96 names IPv4 hosts: the same decision on an
            # IPv4 socket as on a dual-stack one (xinetd lets 127.0.0.1 through
            # `no_access = ::ffff:127.0.0.1` on an IPv4 service). A wider IPv6 network
            # (`::/0`) stays a matter of IPv6 clients there, as in xinetd.
            return None
        bits = net.prefixlen + (96 if net.version == 4 else 0)
        return (_HOST, 0) if bits == 128 else (_NETWORK, bits)
    if entry.name is None or name is None:
        return None
    # Names compare without their final dot, on both sides: `host.example.` and
    # `.example.` are the fully qualified forms of `host.example` and `.example`.
    wanted = ascii_lower(entry.name).rstrip(".")
    client = ascii_lower(name).rstrip(".")
    if entry.kind == "domain":
        suffix = wanted if wanted.startswith(".") else "." + wanted
        if len(client) > len(suffix) and client.endswith(suffix):
            return (_DOMAIN, suffix.count("."))
        return None
    return (_HOST, 0) if client == wanted else None


def best(entries: tuple[AddressEntry, ...], addr: IPAddress, name: str | None
         ) -> tuple[int, int] | None:
    result: tuple[int, int] | None = None
    for entry in entries:
        r = rank(entry, addr, name)
        if r is not None and (result is None or r > result):
            result = r
    return result


def check(service: ServiceConfig, peer: str, name: str | None = None) -> ListResult:
    """The lists' verdict for `peer` (numeric text) whose reverse name is `name`."""
    if not has_lists(service):
        return ALLOWED
    addr = parse_peer(peer)
    if addr is None:
        # No address (stream/wait): the address test is skipped, as in xinetd HEAD.
        return ALLOWED
    denied = best(service.no_access, addr, name) if service.no_access else None
    if service.only_from is None:
        return DENIED if denied is not None else ALLOWED
    allowed = best(service.only_from, addr, name)
    if allowed is None:
        return DENIED
    if denied is None:
        return ALLOWED
    if allowed == denied:
        return ListResult(False, tie=True)
    return ALLOWED if allowed > denied else DENIED


# Name entries beyond which depends_on_name does not work the answer out.
NAME_ANALYSIS_MAX = 32


def depends_on_name(service: ServiceConfig, peer: str) -> bool:
    """Whether some reverse name of `peer` would give another verdict than none (its
    lookup never ran). A name matches one host entry at most, and domains that are
    suffixes of one another: tried with each host entry's name, and for each domain
    with a name under it that is no host entry's (`x.example` would also match a host
    entry `x.example`, which can outrank the domain and hide its verdict)."""
    addr = parse_peer(peer)
    if addr is None:
        return False
    entries = [entry for entry in (service.only_from or ()) + service.no_access
               if entry.name is not None and entry.network is None]
    if len(entries) > NAME_ANALYSIS_MAX:
        # Each name is tried against every entry: with a thousand names that took
        # half a second of the loop per request. Say yes (the name is looked up, as
        # it always was), the cost bounded.
        return True
    without = check(service, peer)
    hosts = {ascii_lower(entry.name).rstrip(".") for entry in entries
             if entry.name is not None and entry.kind != "domain"}
    for entry in entries:
        assert entry.name is not None
        wanted = entry.name.rstrip(".")
        if entry.kind == "domain":
            suffix = wanted if wanted.startswith(".") else "." + wanted
            label = "x"
            while ascii_lower(label + suffix) in hosts:
                label += "x"
            name = label + suffix
        else:
            name = wanted
        if check(service, peer, name) != without:
            return True
    return False
