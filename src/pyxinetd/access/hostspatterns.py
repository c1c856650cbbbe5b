"""Matching one request against the daemon and client lists of a hosts_access(5) rule.

The semantics follow TCP Wrappers 7.6 as Debian builds it (reference
peers-and-tcp-wrappers.md §5.3-5.4; the vectors in shared/vectors/hosts_access.json are
the oracle): lists are scanned left to right, `EXCEPT` nests to the right, comparisons
ignore case (netgroup names apart), and a pattern that cannot be parsed (a bad net/mask)
simply never matches.

Nothing here resolves names or reads NIS: the request carries the client's name as the
caller found it (or None), and netgroup membership and `/file` lists come through the
injectable `Lookups` object, so the evaluator can run against fixture files.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pyxinetd.config.model import ServiceConfig
from pyxinetd.filerights import Rights, read_for, rights_of
from pyxinetd.files import open_problem, read_regular
from pyxinetd.textbytes import ascii_lower

UNKNOWN = "unknown"
PARANOID = "paranoid"
# List separators of hosts_access(5): blanks and commas; exactly libwrap's `sep` (", \t\r\n"
# in hosts_access.c): a vertical tab, a form feed or a no-break space is part of a word.
_SEPARATORS = re.compile(r"[ \t\r\n,]+")
# fscanf("%s") reads a /file pattern's words between C-locale spaces.
_C_SPACES = re.compile(r"[ \t\n\v\f\r]+")
_LEADING_INT = re.compile(r"[+-]?\d+")
_ADDRESS_CHARS = set("0123456789./")
# How many `/file` lists deep a pattern is still read (libwrap: no limit).
FILE_NESTING = 40


class NameNotLookedUp(Exception):
    """A pattern needs the name of an endpoint whose lookup never ran: no verdict
    can be given on it (a name pattern that did not match could have)."""


class NameNeverAsked(NameNotLookedUp):
    """A pattern or an expansion read the name of an endpoint the gate never asked to
    have looked up (`Endpoint.unasked`): the gate's choice of names missed one, a bug.
    Read as `unknown`, a deny by name would be skipped; it is refused instead.
    args: (address, why, pattern)."""

    @property
    def pattern(self) -> str:
        return str(self.args[2])


@dataclass(frozen=True)
class Endpoint:
    """One end of the connection. `name` is the verified host name (None = unknown);
    `paranoid` means the reverse and forward lookups disagreed."""

    address: str | None = None
    name: str | None = None
    paranoid: bool = False
    port: int = 0
    # The gate looks names up before the rules are evaluated, but libwrap looks a name
    # up only when a pattern or `%n`/`%N` needs it, and `%h %H %c %s` show it only from
    # then on (the address before). A `lazy` endpoint counts as not looked up until its
    # name is first read (`name_text`, `name_known`), for the rest of its request.
    lazy: bool = False
    # Why the lookup never ran (pyxinetd.access.lookups.NameInfo): a pattern that
    # needs the name raises NameNotLookedUp; `%h`/`%n` show it as an unknown name.
    not_looked_up: str = ""
    # The gate did not ask for this name (it judged no rule would read it): a pattern
    # or expansion that reads it raises NameNeverAsked, and is noted in `trips` (shared
    # by the request's copies), so the gate refuses and says so even when a later
    # list item made the verdict without it. A banner's `%n`/`%N` asks for it
    # (`look_up`): the gate then waits for it, or, for a datagram, looks nothing up.
    unasked: bool = False
    # A PARANOID name's reason, in libwrap's words (lookups.NameInfo.mismatch).
    mismatch: str = ""
    trips: list[str] = field(default_factory=list, compare=False, repr=False)
    _looked: list[bool] = field(default_factory=lambda: [False], compare=False, repr=False)
    _asked: list[bool] = field(default_factory=lambda: [False], compare=False, repr=False)

    @property
    def addr_text(self) -> str:
        return self.address if self.address is not None else UNKNOWN

    @property
    def name_text(self) -> str:
        self._looked[0] = True
        if self.paranoid:
            return PARANOID
        return self.name if self.name is not None else UNKNOWN

    def read_by(self, pattern: str) -> Endpoint:
        """This endpoint, whose name `pattern` is about to read; raises NameNeverAsked
        when the gate never asked for it."""
        if self.name_unasked:
            self.trips.append(pattern)
            raise NameNeverAsked(self.addr_text, "never asked for", pattern)
        return self

    @property
    def name_unasked(self) -> bool:
        """Whether reading the name now is a bug: the gate never asked for it, and no
        banner has since."""
        return self.unasked and not self._asked[0]

    def look_up(self) -> None:
        """From now on the name counts as looked up (libwrap looked it up), and as
        asked for (a banner's `%n`/`%N`, which the gate waits for)."""
        self._looked[0] = True
        self._asked[0] = True

    @property
    def name_asked(self) -> bool:
        """Whether a pattern or an expansion has read the name so far: libwrap would have
        looked it up then, and `%h %H %c %s` show it from then on."""
        return self._looked[0]

    @property
    def name_known(self) -> bool:
        """libwrap's HOSTNAME_KNOWN: a host whose name is `unknown` or `paranoid` (any
        case) is not known, even when the DNS gives that name."""
        self._looked[0] = True
        return self.name is not None and not self.paranoid \
            and ascii_lower(self.name) not in (UNKNOWN, PARANOID)

    @property
    def info(self) -> str:
        """Name when known, else the address, else `unknown` (tcpd's eval_hostinfo);
        the address while a lazy endpoint's name has not been looked up."""
        if self.lazy and not self._looked[0]:
            return self.addr_text
        if self.name_known:
            assert self.name is not None
            return self.name
        if self.address is not None:
            return self.address
        return self.name_text


def normalize_address(text: str) -> str:
    """IPv4-mapped IPv6 addresses become plain IPv4 (§5.4: normalise before matching);
    a scope suffix is dropped."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def wrap_address(text: str) -> str:
    """An address as libwrap holds it (its `%a`, and the text address patterns are
    compared with): numeric, IPv4-mapped as plain IPv4, a scoped IPv6 address with its
    zone (`fe80::1%eth0`), as getnameinfo writes it."""
    host, percent, zone = text.partition("%")
    plain = normalize_address(host)
    return f"{plain}%{zone}" if percent and zone and ":" in plain else plain


@dataclass(frozen=True)
class Request:
    daemon: str
    client: Endpoint
    server: Endpoint = field(default_factory=Endpoint)
    user: str | None = None       # RFC 931 user name, when an ident lookup gave one
    pid: int = 0
    # Checked in a long-lived process (libwrap's "resident" one): under xinetd, a
    # builtin that the daemon serves itself. `twist` is an error there.
    resident: bool = False

    @property
    def user_text(self) -> str:
        return self.user if self.user is not None else UNKNOWN


# How many unopenable `/file` lists are remembered as reported (see Lookups.read_list).
MAX_UNOPENABLE_REMEMBERED = 1024
# How many banner files' texts are kept to be shared (see Lookups.banner_text).
MAX_BANNERS_REMEMBERED = 256


class Lookups:
    """Netgroups and `/file` lists; the defaults read /etc/netgroup and the real file.

    Subclass or pass callables to substitute fixtures. `read_file` answers None for a
    file that lists nothing, and raises OSError for one that cannot be opened (which
    lists nothing either, and is reported to `on_warning`).
    """

    def __init__(self, *, netgroup_file: str = "/etc/netgroup",
                 nsswitch_file: str = "/etc/nsswitch.conf",
                 read_file: Callable[[str], str | None] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self._netgroup_file = netgroup_file
        self._nsswitch_file = nsswitch_file
        self._read = read_file or _read_text
        self._on_warning = on_warning
        self._groups: dict[str, list[list[str]]] | None = None
        # The `/file` lists that could not be opened, and why, as last reported: each
        # is reported again only once the reason changes (it is read per request).
        self._unopenable: dict[str, str] = {}
        # The last text read of each banner file with each service's rights, by the stat
        # it was read under.
        self._banner_texts: dict[tuple[str, Rights | None],
                                 tuple[tuple[int, int, int, int], bytes]] = {}

    def read_list(self, path: str, where: str = "") -> str | None:
        """The words of a `/file` list (None: it lists nothing). `where` names the rule
        that names it ("/etc/hosts.deny, line 3"), for the warning of a file that cannot
        be opened: libwrap's `open PATH: REASON`, given once per reason here."""
        try:
            text = self._read(path)
        except OSError as problem:
            reason = problem.strerror or str(problem)
            if self._unopenable.get(path) != reason:
                if len(self._unopenable) >= MAX_UNOPENABLE_REMEMBERED:
                    # Tables rewritten again and again to name new paths: forgetting
                    # costs a repeated warning, remembering without bound the memory.
                    self._unopenable.clear()
                self._unopenable[path] = reason
                if self._on_warning is not None:
                    self._on_warning(f"{where}: open {path}: {reason}" if where
                                     else f"open {path}: {reason}")
            return None
        self._unopenable.pop(path, None)
        return text

    def for_request(self, service: ServiceConfig | None = None) -> Lookups:
        """These lookups as one request sees them: each `/file` list read once, so the
        decision to look a name up and the verdict are made on the same words; banner
        files read with `service`'s rights (pyxinetd.filerights)."""
        return RequestLookups(self, service)

    def banner_text(self, path: str, rights: Rights | None = None) -> bytes | None:
        """A banner file's bytes (None when it is missing or not a regular file: a FIFO
        would block), read with `rights` where the path is not root's alone
        (pyxinetd.filerights; None: the daemon's own). Each parked request keeps the
        text it read until it is sent, so requests that read an unchanged file share
        one copy of it."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._banner_texts.get((path, rights))
        if cached is not None and cached[0] == key:
            return cached[1]
        text = read_for(path, rights)
        if text is not None:
            if len(self._banner_texts) >= MAX_BANNERS_REMEMBERED:
                self._banner_texts.clear()
            self._banner_texts[(path, rights)] = (key, text)
        return text

    def banner_letters(self, path: str) -> frozenset[str]:
        """The `%` letters of a banner file (`banner_text`; none when there is none)."""
        raw = self.banner_text(path)
        if raw is None:
            return frozenset()
        return frozenset(letter for _, letter in
                         iter_expansions(raw.decode("utf-8", errors="replace"))
                         if letter is not None)

    def innetgr(self, group: str, host: str) -> bool:
        """Host membership, following nested groups; group names are case-sensitive."""
        if self._groups is None:
            text = self._read(self._netgroup_file) if self._netgroup_files() else None
            self._groups = parse_netgroups(text or "")
        return self._member(group, ascii_lower(host), set())

    def _netgroup_files(self) -> bool:
        """Whether innetgr(3) would read the netgroup file: nsswitch.conf lists `files`
        for netgroup, or has no netgroup line. Other sources (Debian's default is
        `nis`) are not consulted: their groups have no members here."""
        for raw in (self._read(self._nsswitch_file) or "").splitlines():
            key, colon, sources = raw.split("#", 1)[0].partition(":")
            if colon and key.strip() == "netgroup":
                return "files" in sources.split()
        return True

    def _member(self, group: str, host: str, seen: set[str]) -> bool:
        if group in seen or self._groups is None:
            return False
        seen.add(group)
        for member in self._groups.get(group, []):
            if len(member) == 1:
                if self._member(member[0], host, seen):
                    return True
            elif member[0] == "" or ascii_lower(member[0]) == host:
                return True
        return False


class RequestLookups(Lookups):
    """The lookups of one request (`Lookups.for_request`): netgroups and warnings are
    the daemon's, each `/file` list and each banner file is read at most once (the
    names a banner's `%n`/`%N` is waited for are those of the text then sent)."""

    def __init__(self, shared: Lookups, service: ServiceConfig | None = None) -> None:
        super().__init__()
        self._shared = shared
        self._service = service
        self._lists: dict[str, str | None] = {}
        self._banners: dict[str, bytes | None] = {}
        self._letters: dict[str, frozenset[str]] = {}

    def read_list(self, path: str, where: str = "") -> str | None:
        if path not in self._lists:
            self._lists[path] = self._shared.read_list(path, where)
        return self._lists[path]

    def banner_text(self, path: str, rights: Rights | None = None) -> bytes | None:
        if path not in self._banners:
            if rights is None and self._service is not None:
                rights = rights_of(self._service)
            self._banners[path] = self._shared.banner_text(path, rights)
        return self._banners[path]

    def banner_letters(self, path: str) -> frozenset[str]:
        if path not in self._letters:
            self._letters[path] = super().banner_letters(path)
        return self._letters[path]

    def innetgr(self, group: str, host: str) -> bool:
        return self._shared.innetgr(group, host)

    def for_request(self, service: ServiceConfig | None = None) -> Lookups:
        return self


def _read_text(path: str) -> str | None:
    """A regular file's text, None otherwise. The rules are judged in the daemon's loop:
    a FIFO named as a `/file` would block it in open(2) for every service (tcpd blocked
    only its own child), and /dev/zero would never end. Raises OSError when the file
    cannot be opened for a reason other than its absence (libwrap warns then)."""
    raw = read_regular(path)
    if raw is None:
        problem = open_problem(path)
        if problem is not None and problem.errno != errno.ENOENT:
            raise problem
        return None
    return raw.decode("utf-8", errors="replace")


def parse_netgroups(text: str) -> dict[str, list[list[str]]]:
    """netgroup(5): `name (host,user,domain) ... othergroup`; `-` is an empty field."""
    groups: dict[str, list[list[str]]] = {}
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, rest = line.partition(" ")
        members: list[list[str]] = []
        for triple, nested in re.findall(r"\(([^)]*)\)|(\S+)", rest):
            if nested:
                members.append([nested])
            else:
                host = triple.split(",")[0].strip()
                # '-' means "no valid value": it never matches a host.
                members.append(["\0" if host == "-" else host, "", ""])
        groups[name] = members
    return groups


def tokens(text: str) -> list[str]:
    return [t for t in _SEPARATORS.split(text) if t]


def list_match(items: list[str], match: Callable[[str], bool]) -> bool:
    """First matching item wins; `a EXCEPT b` = a and not b, nesting to the right.

    An item that needs a name never looked up (`match` raises NameNotLookedUp) decides
    nothing alone: the list's verdict is given when it is the same whether the item
    matched or not (`foo.example 127.0.0.1` for 127.0.0.1), and raises otherwise."""
    verdict = _list_verdict(items, match)
    if isinstance(verdict, NameNotLookedUp):
        raise verdict
    return verdict


def _list_verdict(items: list[str], match: Callable[[str], bool]
                  ) -> bool | NameNotLookedUp:
    for i, item in enumerate(items):
        if item.upper() == "EXCEPT":
            return False
        try:
            matched = match(item)
        except NameNotLookedUp as missing:
            if_matched = _matched_verdict(items[i + 1:], match)
            if_not = _list_verdict(items[i + 1:], match)
            return if_matched if if_matched == if_not else missing
        if matched:
            return _matched_verdict(items[i + 1:], match)
    return False


def _matched_verdict(rest: list[str], match: Callable[[str], bool]
                     ) -> bool | NameNotLookedUp:
    """The list's verdict once an item matched: true unless its EXCEPT list matches."""
    for j, later in enumerate(rest):
        if later.upper() == "EXCEPT":
            excepted = _list_verdict(rest[j + 1:], match)
            return excepted if isinstance(excepted, NameNotLookedUp) else not excepted
    return True


def string_match(pattern: str, text: str) -> bool:
    """tcpd's string_match: wildcards, .suffix, ALL, KNOWN, prefix., exact; any case
    of A-Z only (strcasecmp in the C locale, as libwrap)."""
    text = normalize_address(text) if ascii_lower(text).startswith("::ffff:") else text
    if "*" in pattern or "?" in pattern:
        # Debian's libwrap tries a pattern with `*` or `?` as wildcards before anything
        # else (`*.` matches `in.ftpd.`, `.*` is no suffix), and knows no `[...]`.
        return _wildcards(_c_bytes(pattern)).fullmatch(_c_bytes(text)) is not None
    if pattern.startswith("."):
        return len(text) > len(pattern) and ascii_lower(text).endswith(ascii_lower(pattern))
    upper = pattern.upper()
    if upper == "ALL":
        return True
    if upper == "KNOWN":
        return ascii_lower(text) != UNKNOWN
    if pattern.endswith("."):
        return ascii_lower(text).startswith(ascii_lower(pattern))
    return ascii_lower(pattern) == ascii_lower(text)


def _c_bytes(text: str) -> bytes:
    """`text` as libwrap holds it, its letters A-Z in lower case."""
    return text.encode("utf-8", "surrogateescape").lower()


@functools.lru_cache(maxsize=256)
def _wildcards(pattern: bytes) -> re.Pattern[bytes]:
    """libwrap's match_pattern_ylo: `*` any run of bytes, `?` any one byte (half of
    a two-byte letter), every other byte itself (`[` and `\\` included)."""
    return re.compile(b"".join(b".*" if byte == b"*" else b"." if byte == b"?"
                               else re.escape(byte)
                               for byte in (pattern[i:i + 1] for i in range(len(pattern)))),
                      re.DOTALL)


def _dot_quad(text: str) -> int | None:
    """libwrap's dot_quad_addr: four dot-separated parts read by inet_addr (so octal
    `010` and hex `0x0a` parts count as C reads them); 255.255.255.255 is INADDR_NONE,
    an error."""
    if len([part for part in text.split(".") if part]) != 4:
        return None
    try:
        value = int.from_bytes(socket.inet_aton(text), "big")
    except OSError:
        return None
    return None if value == 0xFFFFFFFF else value


def _leading_int(text: str) -> int | None:
    """What strtol/atoi read from the start of `text` (trailing junk ignored)."""
    match = _LEADING_INT.match(text)
    return int(match.group()) if match else None


def _mask_value(text: str) -> int | None:
    """A dotted mask, else a prefix length (`/8.` reads as /8, as in libwrap)."""
    quad = _dot_quad(text)
    if quad is not None:
        return quad
    bits = _leading_int(text)
    if bits is None or not 1 <= bits <= 32:
        return None
    return (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF


def masked_match(net_text: str, mask_text: str, address: str | None) -> bool:
    """IPv4 net/mask or net/len (1-32; /0 and a mask of all ones are bad patterns). As in
    libwrap the net is not masked: 10.0.0.5/24 matches nobody."""
    net = _dot_quad(net_text)
    mask = _mask_value(mask_text)
    if net is None or mask is None or address is None:
        return False
    addr = _dot_quad(address)
    return addr is not None and (addr & mask) == net


def _ipv6_match(pattern: str, address: str | None) -> bool:
    """`[v6addr]` or `[v6net]/len`; an IPv4 (or mapped) client matches only a pattern
    within ::ffff:0:0/96 (libwrap: never). As in libwrap, the net is masked (`[2001:db8::1]/64` is 2001:db8::/64) and the length is
    read as atoi reads it (`/64x` is /64, an empty or wordy one is /0)."""
    close = pattern.find("]")
    if close < 0 or address is None:
        return False
    net_addr = _pattern_address(pattern[1:close])
    try:
        client = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if net_addr is None:
        return False
    rest = pattern[close + 1:]
    bits = 128
    if rest != "":
        if not rest.startswith("/"):
            return False
        bits = _leading_int(rest[1:]) or 0
        if not 0 <= bits <= 128:
            return False
    if isinstance(client, ipaddress.IPv4Address):
        # A pattern within ::ffff:0:0/96 names IPv4 hosts. libwrap holds a mapped client
        # as IPv4 and so matches such a pattern with nobody: a deny rule written so
        # would never hold. Compare the client's mapped form with it instead.
        if bits < 96 or net_addr not in _MAPPED:
            return False
        client = ipaddress.IPv6Address(f"::ffff:{client}")
    return client in ipaddress.IPv6Network((net_addr, bits), strict=False)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _pattern_address(text: str) -> ipaddress.IPv6Address | None:
    """The address of a `[v6addr%zone]` pattern, or None when libwrap cannot read it.
    libwrap reads it with getaddrinfo, whose zone is an interface of this host for a
    link-local (unicast or multicast) address, or a decimal index for any address
    (`fe80::1%eth0`, `2001:db8::1%2`; not `::1%lo`). Only the address is compared then:
    a client on another interface matches too."""
    host, percent, zone = text.partition("%")
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    if not percent:
        return address
    if zone.isascii() and zone.isdigit() and int(zone) < 1 << 32:
        return address
    # Link-local unicast, or multicast of interface-local or link-local scope.
    scoped = address.is_link_local or (address.is_multicast
                                       and address.packed[1] & 0x0F in (1, 2))
    if not scoped or not zone:
        return None
    try:
        socket.if_nametoindex(zone)
    except (OSError, ValueError):
        return None
    return address


def needs_name(host: Endpoint, pattern: str = "") -> Endpoint:
    """`host`, whose name `pattern` is about to read; raises when it was never looked
    up, or never asked for (NameNeverAsked)."""
    host.read_by(pattern)
    if host.not_looked_up:
        # libwrap would have looked it up here: `%h` would show the name from now on.
        host.look_up()
        raise NameNotLookedUp(host.addr_text, host.not_looked_up)
    return host


def host_match(pattern: str, host: Endpoint, lookups: Lookups,
               chain: tuple[str, ...] = (), where: str = "",
               seen: set[str] | None = None) -> bool:
    """`chain`: the `/file` lists being read, outermost first, that led to `pattern`;
    `where`: the rule's place, for the warning of a `/file` that cannot be opened;
    `seen`: the `/file` lists this pattern has led to so far."""
    upper = pattern.upper()
    # What reads the name, for the line of a name never asked for.
    reader = f"{pattern} (in {chain[-1]})" if chain else pattern
    if pattern.startswith("@"):
        return needs_name(host, reader).name_known and lookups.innetgr(pattern[1:], host.name_text)
    if pattern.startswith("/"):
        # libwrap reads files within files as deep as they go, and recurses until it
        # crashes on one that lists itself: such a word matches nothing here.
        # A list met again matches nothing either: its words were all tried already
        # (or are being tried). Files listing each other would otherwise be read once
        # per path through them, exponentially many, in the daemon's loop.
        seen = set() if seen is None else seen
        if pattern in seen or len(chain) >= FILE_NESTING:
            return False
        seen.add(pattern)
        return _file_match(pattern, host, lookups, chain, where, seen)
    if upper == "KNOWN":
        return needs_name(host, reader).name_known and host.address is not None
    if upper == "LOCAL":
        return needs_name(host, reader).name_known and "." not in host.name_text
    if pattern.startswith("["):
        return _ipv6_match(pattern, host.address)
    if "/" in pattern:
        net, _, mask = pattern.partition("/")
        return masked_match(net, mask, host.address)
    if string_match(pattern, host.addr_text):
        return True
    # Address-like patterns are never compared with names. As in libwrap, the name is
    # compared as text, `unknown` or `paranoid` included: that is how UNKNOWN and
    # PARANOID match, and why UNKNOWN does not match a paranoid host (its name is
    # `paranoid`).
    return not set(pattern) <= _ADDRESS_CHARS and string_match(
        pattern, needs_name(host, reader).name_text)


def _file_match(path: str, host: Endpoint, lookups: Lookups, chain: tuple[str, ...],
                where: str, seen: set[str]) -> bool:
    """A `/file` pattern: every blank-separated word of the file is a host pattern, as
    libwrap reads it (fscanf "%s"): commas do not separate, and `#` starts no comment
    (`# 10.0.0.5` lists the words `#` and `10.0.0.5`)."""
    text = lookups.read_list(path, where)
    if text is None:
        return False
    missing: NameNotLookedUp | None = None
    for word in _C_SPACES.split(text):
        # A NUL ends the word as C reads it (a binary file named as a list).
        item = word.partition("\0")[0]
        try:
            if item and host_match(item, host, lookups, (*chain, path), where, seen):
                return True
        except NameNotLookedUp as error:
            # Undecided only if no later word matches (`localhost 127.0.0.1`).
            missing = missing or error
    if missing is not None:
        raise missing
    return False


def split_at(text: str, delimiter: str) -> tuple[str, str | None]:
    """Split at the first delimiter outside [brackets] (Debian's IPv6-aware split_at)."""
    if "[" not in text and "]" not in text:
        # No bracket moves the depth: the first delimiter is the one (a table of tens
        # of thousands of rules splits each of its lines here).
        at = text.find(delimiter)
        return (text, None) if at < 0 else (text[:at], text[at + 1:])
    depth = 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif depth == 0 and char == delimiter:
            return text[:i], text[i + 1:]
    return text, None


def daemon_match(pattern: str, request: Request, lookups: Lookups, where: str = ""
                 ) -> bool:
    head, host = split_at(pattern[1:], "@")
    name = pattern[:1] + head
    if host is None:
        return string_match(pattern, request.daemon)
    return string_match(name, request.daemon) and host_match(host, request.server, lookups,
                                                             where=where)


def daemon_may_match(items: list[str], daemon: str) -> bool:
    """Whether the daemon list `items` may match a request for `daemon`, whatever its
    server's host: an item before the first EXCEPT names it (what follows an EXCEPT
    only takes away)."""
    for item in items:
        if item.upper() == "EXCEPT":
            return False
        if string_match(item[:1] + split_at(item[1:], "@")[0], daemon):
            return True
    return False


def client_match(pattern: str, request: Request, lookups: Lookups, where: str = ""
                 ) -> bool:
    user_part, host = split_at(pattern[1:], "@")
    if host is None:
        return host_match(pattern, request.client, lookups, where=where)
    user = pattern[:1] + user_part
    return host_match(host, request.client, lookups, where=where) \
        and string_match(user, request.user_text)


def _host_part(item: str) -> str:
    """The host pattern of a list item (`user@host` or `daemon@host`: the part after @)."""
    return split_at(item[1:], "@")[1] or "" if "@" in item[1:] else item


def _host_needs_name(host: str) -> bool:
    """Whether matching the host pattern `host` (no `/file`) may read a host name."""
    return not (host.upper() in ("ALL", "EXCEPT") or host.startswith("[")
                or "/" in host[1:] or (set(host) <= _ADDRESS_CHARS and host != ""))


def patterns_need_names(items: list[str]) -> bool:
    """True when matching may look at a host name (so the caller must resolve first).
    A `/file` list is not counted: whether it does depends on its words, read per
    request (`pattern_files`, `files_need_names`)."""
    return any(_host_needs_name(host) for host in map(_host_part, items)
               if not host.startswith("/"))


def pattern_files(items: list[str]) -> list[str]:
    """The `/file` lists the items name."""
    return [host for host in map(_host_part, items) if host.startswith("/")]


def files_need_names(paths: list[tuple[str, str]], lookups: Lookups,
                     chain: tuple[str, ...] = (), seen: set[str] | None = None) -> bool:
    """Whether a word of the `/file` lists (path, the place of the rule naming it) may
    make matching read a host name. libwrap looks the name up only when a word needs
    it: a file of addresses costs no lookup. Read through `lookups`, which the request
    is then judged with (Lookups.for_request), so both see the same words."""
    seen = set() if seen is None else seen
    for path, where in paths:
        if path in seen or len(chain) >= FILE_NESTING:
            continue    # its words were looked at already (host_match)
        seen.add(path)
        text = lookups.read_list(path, where)
        for word in _C_SPACES.split(text or ""):
            if not word:
                continue
            if word.startswith("/"):
                if files_need_names([(word, where)], lookups, (*chain, path), seen):
                    return True
            elif word.upper() == "EXCEPT" or _host_needs_name(word):
                # In a file, EXCEPT is a word like any other (libwrap's file_match
                # hands each word to host_match): compared with the name too.
                return True
    return False


def iter_expansions(text: str) -> Iterator[tuple[str, str | None]]:
    """Split `%` sequences: yields (literal, None) and ('', letter) parts in order."""
    i = 0
    start = 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text):
            if start < i:
                yield text[start:i], None
            yield "", text[i + 1]
            i += 2
            start = i
        else:
            i += 1
    if start < len(text):
        yield text[start:], None
