"""The loaded configuration: immutable, fully resolved objects.

Everything the daemon needs at run time is resolved here, at load time: users and
groups are numbers, ports are numbers, the server's argv and environment are final.
Nothing on the serving path ever consults NSS, /etc/services or the environment.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from dataclasses import dataclass, field, replace
from collections.abc import Mapping
from typing import Literal

from pyxinetd.config.diagnostics import Diagnostic

# The words `type` and `flags` accept (upper-case canonical spelling; the loader
# matches them case-insensitively, as xinetd does with strcasecmp).
SERVICE_TYPES: tuple[str, ...] = ("RPC", "INTERNAL", "UNLISTED", "TCPMUX", "TCPMUXPLUS", "SPECIAL")
SERVICE_FLAGS: tuple[str, ...] = (
    "REUSE", "INTERCEPT", "NORETRY", "IDONLY", "NAMEINARGS", "NODELAY", "KEEPALIVE",
    "NOLIBWRAP", "SENSOR", "IPv4", "IPv6", "LABELED",
    "PEERENV",  # pyxinetd's: client and local addresses in the environment (peerenv.py)
)
LOG_ON_SUCCESS_FLAGS: tuple[str, ...] = ("HOST", "PID", "USERID", "EXIT", "DURATION", "TRAFFIC")
LOG_ON_FAILURE_FLAGS: tuple[str, ...] = ("HOST", "ATTEMPT", "USERID")

# xinetd's defaults for limits (reference §9).
DEFAULT_CPS: tuple[int, int] = (50, 10)


class SocketType(str, enum.Enum):
    STREAM = "stream"
    DGRAM = "dgram"
    RAW = "raw"
    SEQPACKET = "seqpacket"

    @property
    def kernel_type(self) -> int:
        return {
            SocketType.STREAM: socket.SOCK_STREAM,
            SocketType.DGRAM: socket.SOCK_DGRAM,
            SocketType.RAW: socket.SOCK_RAW,
            SocketType.SEQPACKET: socket.SOCK_SEQPACKET,
        }[self]


# The internal services pyxinetd serves, by service name, with the socket types each
# supports. `servers` and `services` were dropped by xinetd 2.3.15; pyxinetd keeps them,
# on stream only as xinetd had them: on dgram a forged one-byte datagram would get up
# to 64 KiB of list sent to its forged source (a reflector).
BUILTINS: dict[str, frozenset[SocketType]] = {
    name: frozenset({SocketType.STREAM, SocketType.DGRAM})
    for name in ("echo", "discard", "chargen", "daytime", "time")
}
BUILTINS["servers"] = BUILTINS["services"] = BUILTINS["tcpmux"] = frozenset({SocketType.STREAM})
# The socket types of xinetd's builtin `sensor`, which serves every `flags = SENSOR`.
SENSOR_SOCKET_TYPES = frozenset({SocketType.STREAM, SocketType.DGRAM})


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a configuration item was written."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


AddressKind = Literal["numeric", "net", "cidr", "host", "domain", "factorized", "netname"]


@dataclass(frozen=True, slots=True)
class AddressEntry:
    """One parsed only_from/no_access token.

    `network` is set for every numeric kind (an exact address is a /32 or /128);
    `name` is set for host and domain entries, which match by reverse lookup.
    """

    text: str
    kind: AddressKind
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """An access_times interval, both ends inclusive, in minutes after local midnight."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    facility: str
    level: str = "info"


@dataclass(frozen=True, slots=True)
class FileTarget:
    path: str
    soft_limit: int | None = None
    hard_limit: int | None = None
    # True when the service inherited the one shared log file of `defaults`.
    common: bool = False


LogTarget = SyslogTarget | FileTarget


# RLIM_INFINITY in a limit field means `UNLIMITED` was written; None means not set.
@dataclass(frozen=True, slots=True)
class Rlimits:
    as_: int | None = None
    cpu: int | None = None
    data: int | None = None
    rss: int | None = None
    stack: int | None = None
    files: int | None = None

    def items(self) -> list[tuple[str, int]]:
        """(name, value) of every limit that is set, in xinetd's application order."""
        pairs = [("files", self.files), ("as", self.as_), ("cpu", self.cpu),
                 ("data", self.data), ("rss", self.rss), ("stack", self.stack)]
        return [(n, v) for n, v in pairs if v is not None]


@dataclass(frozen=True, slots=True)
class Defaults:
    """The `defaults` section after every file was read."""

    log_type: LogTarget | None = None
    log_on_success: frozenset[str] = frozenset()
    log_on_failure: frozenset[str] = frozenset()
    only_from: tuple[AddressEntry, ...] | None = None
    no_access: tuple[AddressEntry, ...] = ()
    passenv: tuple[str, ...] | None = None
    instances: int | None = None
    per_source: int | None = None
    # Which of instances and per_source the defaults set to UNLIMITED: None above is
    # also "not set", and xinetd's dump lists the ones written.
    unlimited: frozenset[str] = frozenset()
    cps: tuple[int, int] | None = None
    max_load: float | None = None
    groups: bool | None = None
    umask: int | None = None
    bind: str | None = None
    banner: str | None = None
    banner_success: str | None = None
    banner_fail: str | None = None
    stderr: str | None = None
    v6only: bool | None = None
    enabled: frozenset[str] | None = None
    disabled: frozenset[str] = frozenset()
    # The environment built from the defaults' passenv (NAME=value) when some service
    # takes it (names no passenv of its own); xinetd's dump shows it. None otherwise.
    environment: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One service as the daemon runs it; every default of xinetd already applied."""

    name: str
    id: str
    origin: Origin
    types: frozenset[str]
    flags: frozenset[str]
    socket_type: SocketType
    protocol: str
    protocol_number: int
    # None for services that own no port: TCPMUX clients and RPC services.
    port: int | None
    wait: bool
    # uid/gid are None when not configured (the server keeps the daemon's ids).
    user: int | None
    user_name: str | None
    group: int | None
    groups: bool
    # Supplementary groups to set before setgid/setuid: initgroups(user) with
    # `groups = yes`, otherwise empty (setgroups(0)). Resolved at load time.
    supplementary_groups: tuple[int, ...]
    server: str | None
    # The complete argv, argv[0] included (NAMEINARGS already applied).
    server_argv: tuple[str, ...]
    # The server's final environment as NAME=value strings, REMOTE_HOST excluded
    # (added per connection). None for internal and redirected services.
    environment: tuple[str, ...] | None
    passenv: tuple[str, ...] | None
    env: tuple[str, ...]
    instances: int | None          # None = UNLIMITED
    per_source: int | None         # None = UNLIMITED
    cps: tuple[int, int]
    max_load: float | None
    bind: str | None               # numeric address to bind, None = wildcard
    family: int                    # socket.AF_INET or socket.AF_INET6
    v6only: bool                   # effective IPV6_V6ONLY for AF_INET6 listeners
    only_from: tuple[AddressEntry, ...] | None   # None = absent (everyone)
    no_access: tuple[AddressEntry, ...]
    access_times: tuple[TimeWindow, ...]
    redirect: tuple[str, int] | None
    banner: str | None
    banner_success: str | None
    banner_fail: str | None
    umask: int | None
    nice: int | None
    rlimits: Rlimits
    log_type: LogTarget | None
    log_on_success: frozenset[str]
    log_on_failure: frozenset[str]
    deny_time: int                 # minutes; -1 FOREVER, 0 NEVER
    libwrap: str | None
    rpc_version: tuple[int, int] | None
    rpc_number: int | None
    # pyxinetd's `stderr = FILE`: the server's descriptor 2 (None: the client, as xinetd).
    stderr: str | None = None
    # pyxinetd's `redirect_source`: the local address a redirect connects from.
    redirect_source: str | None = None
    # `group` was written (in the service), not taken from the user's passwd entry.
    group_set: bool = False
    # The environment a service of its own (its passenv and/or env, xinetd's
    # CUSTOM_ENV) gets, internal and redirected services included; None when the
    # service names neither and takes the daemon's or the defaults' environment.
    own_environment: tuple[str, ...] | None = None
    # The service this is the copy of, made for one client by a hosts.allow rule's
    # options (setenv, twist, nice, umask, user, group: AccessGate.prepare); None for
    # the service itself. Not an attribute: equality ignores it.
    prepared_from: ServiceConfig | None = field(default=None, compare=False, repr=False)

    def belongs_to(self, service: ServiceConfig) -> bool:
        """Whether a server or session started as `self` is one of `service`'s: it was
        started as `service` itself or as the copy a hosts.allow rule made of it."""
        return self is service or self.prepared_from is service

    def moved(self, moves: Mapping[int, ServiceConfig]) -> ServiceConfig | None:
        """The service a reload kept `self` as, when `self` (or the service it is the
        hosts.allow copy of) is a key of `moves` (id() of the old configuration -> the
        new one); else None. One look-up per server or session, whatever the number of
        services a reload kept."""
        target: ServiceConfig | None = moves.get(id(self))
        if target is None and self.prepared_from is not None:
            target = moves.get(id(self.prepared_from))
        return target

    def as_of(self, old: ServiceConfig, new: ServiceConfig) -> ServiceConfig:
        """`self`, to be started as `old` or as a copy prepared of it, as a
        configuration of `new`: the same service after a reload that left its
        attributes as they were. The server started from it is then `new`'s, for the
        reloads that come later. Anything else is returned as it is."""
        if old is new or not self.belongs_to(old):
            return self
        if self is old:
            return new
        return replace(self, prepared_from=new)

    @property
    def is_internal(self) -> bool:
        return "INTERNAL" in self.types

    @property
    def is_tcpmux_client(self) -> bool:
        return bool({"TCPMUX", "TCPMUXPLUS"} & self.types)

    @property
    def is_redirect(self) -> bool:
        return self.redirect is not None

    @property
    def is_sensor(self) -> bool:
        return "SENSOR" in self.flags


@dataclass(frozen=True, slots=True)
class DroppedEntry:
    """A service or entry that will not be activated, and why."""

    name: str | None
    id: str | None
    file: str | None
    line: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Configuration:
    path: str
    defaults: Defaults
    services: tuple[ServiceConfig, ...]
    dropped: tuple[DroppedEntry, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    files: tuple[str, ...] = field(default=())

    def service(self, service_id: str) -> ServiceConfig | None:
        wanted = service_id.lower()
        for svc in self.services:
            if svc.id.lower() == wanted:
                return svc
        return None
