"""Value parsers for the network attributes: where a service listens (`bind`), where a
redirect goes and from where (`redirect`, `redirect_source`), and who may connect
(`only_from`, `no_access`). Same contract as pyxinetd.config.values: tokens in, typed
value out, or ValueProblem.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from pyxinetd.config.addresses import AddressError, parse_address, zone_problem
from pyxinetd.config.lookups import is_digits
from pyxinetd.config.model import AddressEntry
from pyxinetd.config.values import ValueContext, ValueProblem, Values, unsigned
from pyxinetd.textbytes import as_written, quoted


@dataclass(frozen=True)
class BindSpec:
    """A bind address as written, with the (family, numeric address) it can mean."""

    text: str
    candidates: tuple[tuple[int, str], ...]



def needs_dual_stack(address: str) -> bool:
    """Whether the IPv6 bind `address` is IPv4-mapped (`::ffff:a.b.c.d`): only a
    dual-stack socket can bind it (a v6-only one gets EINVAL)."""
    try:
        return ipaddress.IPv6Address(address).ipv4_mapped is not None
    except ValueError:
        return False


def parse_redirect(values: Values, ctx: ValueContext) -> tuple[str, int]:
    host, port_text = values
    number = unsigned(port_text)
    if number is not None:
        port = number
        if not 0 < port <= 65535:
            raise ValueProblem("port number too large" if port > 65535 else
                               "port number invalid",
                               f"redirect port {quoted(port_text)}: expected 1-65535")
    else:
        found = ctx.lookups.service_port(port_text, "tcp")
        if found is None:
            raise ValueProblem("port number invalid",
                               f"redirect port {quoted(port_text)}: expected a number or a tcp "
                               "service name from /etc/services")
        port = found
    return _resolve_one(host, "redirect host", "bad address"), port


def parse_redirect_source(values: Values, ctx: ValueContext) -> str:
    """pyxinetd's `redirect_source = ADDRESS`: the local address a redirect connects
    from (a numeric address of this host)."""
    address = numeric_text(values[0])
    if address is None:
        raise ValueProblem(f"bad redirect_source {quoted(values[0])}: expected a numeric IPv4 or "
                           "IPv6 address")
    problem = zone_problem(values[0])
    if problem is not None:
        raise ValueProblem(f"bad redirect_source {quoted(values[0])}: {problem}")
    return address


def numeric_text(text: str) -> str | None:
    """A numeric address in the form xinetd writes addresses (inet_ntop's: an
    IPv4-mapped one is `::ffff:127.0.0.1`, which Python 3.11's ipaddress prints
    `::ffff:7f00:1`), with its zone as written; None for anything else."""
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    address = socket.inet_ntop(socket.AF_INET6, parsed.packed)
    return f"{address}%{parsed.scope_id}" if parsed.scope_id else address


def _resolve_one(host: str, what: str, words: str | None = None) -> str:
    """A numeric address, or the first address of a host name: its first IPv4 one, as
    xinetd asks getaddrinfo for IPv4 unless the text holds a colon (a name with both
    reaches its target over IPv4); an IPv6-only name gets its first IPv6 address,
    where xinetd rejects it (docs/compatibility.md)."""
    address = numeric_text(host)
    if address is not None:
        problem = zone_problem(host)
        if problem is not None:
            detail = f"{what} {quoted(host)}: {problem}"
            raise ValueProblem(detail) if words is None else ValueProblem(words, detail)
        return address
    try:
        # As bytes, as xinetd passes the name: a str goes through Python's IDNA codec,
        # which refuses a byte that is not UTF-8 (a Latin-1 name in /etc/hosts) and
        # would turn a UTF-8 name into another one (`xn--...`).
        infos = socket.getaddrinfo(as_written(host), None, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        problem = f"{what} {quoted(host)} does not resolve: {exc}"
        raise (ValueProblem(problem) if words is None else ValueProblem(words, problem)) from None
    usable = [info for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not usable:
        problem = f"{what} {quoted(host)} does not resolve"
        raise ValueProblem(problem) if words is None else ValueProblem(words, problem)
    chosen = next((info for info in usable if info[0] == socket.AF_INET), usable[0])
    return str(chosen[4][0])


def parse_bind(values: Values, ctx: ValueContext) -> BindSpec:
    text = values[0]
    if text and all(is_digits(c) or c == "." for c in text):
        # Numeric, as xinetd reads it (getaddrinfo, AI_NUMERICHOST): inet_aton's short
        # forms work (127.1 is 127.0.0.1); nothing is looked up.
        try:
            infos = socket.getaddrinfo(text, None, socket.AF_INET, flags=socket.AI_NUMERICHOST)
        except (OSError, ValueError):
            raise ValueProblem("bad address", f"bind address {quoted(text)}: expected an "
                               "IPv4 address") from None
        return BindSpec(text, ((socket.AF_INET, str(infos[0][4][0])),))
    if ":" in text:
        try:
            parsed = ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueProblem("bad address", f"bind address {quoted(text)}: expected an "
                               "IPv6 address") from None
        address = numeric_text(text) or text
        if parsed.ipv4_mapped is not None:
            # An IPv4 address too: with the IPv4 flag the socket binds the address it maps.
            return BindSpec(text, ((socket.AF_INET6, address),
                                   (socket.AF_INET, str(parsed.ipv4_mapped))))
        # A zone (`fe80::1%eth0`) must resolve now, as xinetd's numeric getaddrinfo()
        # requires; the socket is bound on it (listener.bind_socket).
        problem = zone_problem(text)
        if problem is not None:
            raise ValueProblem("bad address", f"bind address {quoted(text)}: {problem}")
        return BindSpec(text, ((socket.AF_INET6, address),))
    try:
        # As bytes, as for a redirect host (_resolve_one).
        infos = socket.getaddrinfo(as_written(text), None, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise ValueProblem("bad address", f"bind host {quoted(text)} does not resolve: {exc}") \
            from None
    candidates: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            pair = (int(family), str(sockaddr[0]))
            if pair not in candidates:
                candidates.append(pair)
    if not candidates:
        raise ValueProblem(f"bind host {quoted(text)} has no IPv4 or IPv6 address")
    return BindSpec(text, tuple(candidates))


def parse_addresses(values: Values, ctx: ValueContext) -> tuple[AddressEntry, ...]:
    entries: list[AddressEntry] = []
    for token in values:
        parsed = ctx.addresses.get(token)
        if parsed is None:
            try:
                parsed = parse_address(token, ctx.lookups.network)
            except AddressError as exc:
                parsed = exc
            ctx.addresses[token] = parsed
        if isinstance(parsed, AddressError):
            text = str(parsed)
            words, paren, reason = text.partition(" (")
            if text.startswith("Address: ") and paren:   # xinetd's words, then why
                raise ValueProblem(words, reason.removesuffix(")"))
            raise ValueProblem(text)
        if parsed.warning:
            ctx.remark(parsed.warning, parsed.words)
        ctx.host_names += [e.text for e in parsed.entries if e.kind == "host"]
        entries.extend(parsed.entries)
    return tuple(entries)
