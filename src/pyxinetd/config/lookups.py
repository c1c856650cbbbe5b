"""Name look-ups done once, at load time: users, groups, services, protocols, RPC, networks.

Nothing on the serving path may consult NSS (it can block on LDAP), so every name in the
configuration is turned into a number here. /etc/services, /etc/protocols, /etc/rpc and
/etc/networks are read once per load and indexed (a thousand services would otherwise
mean a thousand scans of /etc/services); users and groups go through pwd/grp so that
NSS sources other than files still work. Paths are parameters so tests can use fixtures.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyxinetd.config.hostnames import HostNameCheck


@dataclass(frozen=True)
class UserInfo:
    uid: int
    gid: int                    # the primary gid the server gets when `group` is unset
    name: str | None
    # The passwd entry's gid, for initgroups (`groups = yes`): a numeric user's `gid`
    # is the uid's number, which need not be one of the user's groups at all.
    passwd_gid: int | None = None


# The protocols a socket type implies, by their fixed numbers (IANA's, the kernel's).
KERNEL_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}

# (uid_t)-1 means "no change" to setuid/setgid: the largest usable id is one less.
_MAX_ID = 2**32 - 2


def is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters int() refuses."""
    return text.isascii() and text.isdigit()


# More significant digits than any range the configuration checks (2**64 has 20).
_MAX_DIGITS = 40


def decimal(text: str) -> int | None:
    """The value of an all-ASCII-digit word, else None. A word of more than 40
    significant digits reads as 10**40, beyond every range checked: int() refuses
    words over 4300 digits, and such a value must be reported, never raised."""
    if not is_digits(text):
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else 10 ** _MAX_DIGITS


def _read_table(path: str) -> list[list[str]]:
    """Rows of whitespace-separated words with '#' comments removed; [] if unreadable."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="surrogateescape")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            rows.append(words)
    return rows


class Lookups:
    """Per-load caches of the system databases."""

    def __init__(self, *, services: str = "/etc/services", protocols: str = "/etc/protocols",
                 rpc: str = "/etc/rpc", networks: str = "/etc/networks",
                 selinuxfs: str = "/sys/fs/selinux", check_host_names: bool = True) -> None:
        self._paths = {"services": services, "protocols": protocols, "rpc": rpc,
                       "networks": networks}
        self._selinuxfs = selinuxfs
        self._services: dict[tuple[str, str], int] | None = None
        self._protocols: dict[str, tuple[str, int]] | None = None
        self._rpc: dict[str, int] | None = None
        self._networks: dict[str, ipaddress.IPv4Network] | None = None
        self._users: dict[str, UserInfo | None] = {}
        self._groups: dict[str, int | None] = {}
        # The address lists' host names, looked up for a diagnostic only (None: not
        # looked up, see pyxinetd.config.load).
        self.hosts: HostNameCheck | None = None
        if check_host_names:
            # Imported here: the daemon imports this module but never loads a
            # configuration itself, and needs neither the check nor its queue module.
            from pyxinetd.config.hostnames import HostNameCheck
            self.hosts = HostNameCheck()

    # -- SELinux -----------------------------------------------------------------

    def selinux_enabled(self) -> bool:
        """Whether the host runs SELinux: its filesystem is mounted with a policy
        loaded (the `enforce` file), as libselinux's is_selinux_enabled() tells."""
        return os.path.exists(os.path.join(self._selinuxfs, "enforce"))

    # -- /etc/services -----------------------------------------------------------

    def service_port(self, name: str, protocol: str) -> int | None:
        """Port of NAME/PROTOCOL (aliases included), as getservbyname would give."""
        if self._services is None:
            table: dict[tuple[str, str], int] = {}
            for row in _read_table(self._paths["services"]):
                if len(row) < 2 or "/" not in row[1]:
                    continue
                port_text, proto = row[1].split("/", 1)
                if not is_digits(port_text):
                    continue
                for alias in [row[0], *row[2:]]:
                    table.setdefault((alias, proto), int(port_text))
            self._services = table
        return self._services.get((name, protocol))

    # -- /etc/protocols ----------------------------------------------------------

    def protocol(self, name: str) -> tuple[str, int] | None:
        """(official name, number) of a protocol name or alias."""
        if self._protocols is None:
            table: dict[str, tuple[str, int]] = {}
            for row in _read_table(self._paths["protocols"]):
                if len(row) < 2 or not is_digits(row[1]):
                    continue
                for alias in [row[0], *row[2:]]:
                    table.setdefault(alias, (row[0], int(row[1])))
            if not table:
                # No readable file (a minimal image may ship none): the usual two by
                # the kernel's numbers. The C library is no fallback: its
                # getprotobyname reads the same missing file.
                table = {proto: (proto, number) for proto, number in KERNEL_PROTOCOLS.items()}
            self._protocols = table
        return self._protocols.get(name)

    def implied_protocol(self, name: str) -> tuple[str, int]:
        """(name, number) of the protocol a socket type implies (`tcp` for stream,
        `udp` for dgram): the number /etc/protocols gives the name when it lists it,
        else the kernel's. xinetd's manual promises the service's default protocol when
        `protocol` is not written, whatever the file holds. The name stays the implied
        one, as xinetd's does, even where the file lists it as an alias (`TCP 6 tcp`):
        a listed service's port is looked up under it (`telnet/tcp`)."""
        found = self.protocol(name)
        return name, found[1] if found is not None else KERNEL_PROTOCOLS[name]

    # -- /etc/rpc ----------------------------------------------------------------

    def rpc_number(self, name: str) -> int | None:
        if self._rpc is None:
            table: dict[str, int] = {}
            for row in _read_table(self._paths["rpc"]):
                if len(row) < 2 or not is_digits(row[1]):
                    continue
                for alias in [row[0], *row[2:]]:
                    table.setdefault(alias, int(row[1]))
            self._rpc = table
        return self._rpc.get(name)

    # -- /etc/networks -----------------------------------------------------------

    def network(self, name: str) -> ipaddress.IPv4Network | None:
        """A named IPv4 network; the mask follows the size of the network number."""
        if self._networks is None:
            table: dict[str, ipaddress.IPv4Network] = {}
            for row in _read_table(self._paths["networks"]):
                if len(row) < 2:
                    continue
                net = _network_number(row[1])
                if net is not None:
                    for alias in [row[0], *row[2:]]:
                        table.setdefault(alias, net)
            self._networks = table
        return self._networks.get(name)

    # -- users and groups --------------------------------------------------------

    def user(self, text: str) -> UserInfo | None:
        """A user name, or an all-digit uid (accepted without a passwd entry, as xinetd)."""
        if text in self._users:
            return self._users[text]
        info: UserInfo | None
        uid = decimal(text)
        if uid is not None:
            if uid > _MAX_ID:
                self._users[text] = None
                return None
            passwd_gid: int | None
            try:
                entry = pwd.getpwuid(uid)
                name: str | None = entry.pw_name
                passwd_gid = entry.pw_gid
            except (KeyError, OverflowError):
                name = passwd_gid = None
            # A numeric user gets the same number as its group unless `group` says
            # otherwise: that is what xinetd does, passwd entry or not.
            info = UserInfo(uid, uid, name, passwd_gid)
        else:
            try:
                entry = pwd.getpwnam(text)
                info = UserInfo(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_gid)
            except (KeyError, ValueError):
                info = None
        self._users[text] = info
        return info

    def group(self, text: str) -> int | None:
        gid = decimal(text)
        if gid is not None:
            return gid if gid <= _MAX_ID else None
        if text not in self._groups:
            try:
                self._groups[text] = grp.getgrnam(text).gr_gid
            except (KeyError, ValueError):
                self._groups[text] = None
        return self._groups[text]

    @staticmethod
    def supplementary_groups(user_name: str, gid: int) -> tuple[int, ...]:
        """What initgroups(user, gid) would install."""
        try:
            return tuple(os.getgrouplist(user_name, gid))
        except OSError:
            return (gid,)


def _network_number(text: str) -> ipaddress.IPv4Network | None:
    """'169.254' or '169.254.0.0' -> 169.254.0.0/16 (mask from the significant octets).

    The number 0 (`default 0.0.0.0`) is 0.0.0.0/0, every IPv4 address, as the numeric
    entry 0.0.0.0 is in an address list; xinetd refuses it (docs/compatibility.md)."""
    parts = text.split(".")
    numbers = [decimal(p) for p in parts]
    if not 1 <= len(parts) <= 4 or not all(n is not None and n < 256 for n in numbers):
        return None
    octets = [n for n in numbers if n is not None] + [0] * (4 - len(parts))
    significant = 4
    while significant > 0 and octets[significant - 1] == 0:
        significant -= 1
    address = ".".join(str(o) for o in octets)
    return ipaddress.IPv4Network(f"{address}/{significant * 8}")
