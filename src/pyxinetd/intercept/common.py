"""What the stream and datagram interceptions share: the dispatcher they use, the
private socket their server gets, and the checks and log lines of each client."""

from __future__ import annotations

import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pyxinetd.access.gate import PASS, AccessGate, Datagram, Verdict
from pyxinetd.children import Child, ExitStatus
from pyxinetd.config.model import ServiceConfig
from pyxinetd.forkretry import Hold, Outcome
from pyxinetd.listener import LISTEN_BACKLOG
from pyxinetd.log import ProgramLog
from pyxinetd.servicelog import ServiceLogs, fail_entry, start_entry
from pyxinetd.reload import rules_replaced
from pyxinetd.loop import Loop
from pyxinetd.service import REASON_ADDRESS, REASON_TIME, ServiceRuntime, within_access_times

INTERCEPT_FLAG = "INTERCEPT"
# Twist commands run at once for the clients of one server (a process each, stream or
# dgram; a flood of clients a twist rule matches must not fork without end).
MAX_TWISTS = 16

OnReap = Callable[[Child, ExitStatus], None]
Address = tuple[object, ...]
# The service's rules as they are now: its runtime's, or those of the runtime a reload
# moved it to (a new socket); None once a reload removed it.
Rules = Callable[[], ServiceConfig | None]


@dataclass(frozen=True)
class Client:
    """An admitted client of an intercepted server (a stream relay, a datagram
    sender's channel, a stream client held for the next server), as a reload checks
    it again against the service's new rules (pyxinetd.recheck)."""

    peer: str
    server: int                     # the pid of the server it reaches; 0: held
    alive: Callable[[], bool]       # False once it ended by itself
    end: Callable[[], None]         # disconnect it


class Host(Protocol):
    """What the interceptions use of the dispatcher."""

    loop: Loop
    program: ProgramLog
    logs: ServiceLogs
    access: AccessGate
    denied: Callable[[str], bool]

    def refuse(self, rt: ServiceRuntime, peer: str, reason: str,
               conn: socket.socket | None, *, sender: tuple[object, ...] | None = None
               ) -> None: ...

    def spawn_server(self, svc: ServiceConfig, sock: socket.socket, peer: str,
                     on_reap: OnReap | None = None, *, hold: Hold | None = None,
                     announce: bool = True,
                     addresses: socket.socket | None = None,
                     client: tuple[object, ...] | None = None) -> int | Outcome | None: ...

    def refresh(self, rt: ServiceRuntime) -> None: ...

    def twist_check(self, rt: ServiceRuntime, peer: str) -> str | None: ...

    def pause_accept(self, rt: ServiceRuntime, err: OSError) -> None: ...

    def accepting(self, rt: ServiceRuntime) -> None: ...


def descriptor_share(each: int, most: int) -> int:
    """How many relays of `each` descriptors one intercepted server may have at once:
    `most`, but never more than a quarter of the daemon's descriptor limit, so that
    whatever its clients do, the other services keep descriptors to serve with (under
    the common limit of 1,024, `most` alone would allow them all)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return most
    return max(1, min(most, soft // 4 // each))


def loopback(family: int) -> str:
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def private_socket(listener: socket.socket) -> socket.socket:
    """The intercepted server's socket: the service socket's type and protocol, bound to
    the loopback address of its family on an ephemeral port (listening, for a stream).
    A host without an IPv6 loopback (IPv6 disabled) gets 127.0.0.1 for an IPv6
    service: the relay carries bytes, not addresses."""
    others = [f for f in (socket.AF_INET, socket.AF_INET6) if f != listener.family]
    failure: OSError | None = None
    for family in [listener.family, *others]:
        sock = socket.socket(family, listener.type, listener.proto)
        try:
            sock.bind((loopback(family), 0))
            if listener.type == socket.SOCK_STREAM:
                sock.listen(LISTEN_BACKLOG)
        except OSError as err:
            sock.close()
            failure = err
            continue
        return sock
    assert failure is not None
    raise failure


class Interception:
    """The service socket of one running intercepted server, read by the master."""

    def __init__(self, host: Host, rt: ServiceRuntime, listener: socket.socket,
                 server: socket.socket, rules: Rules) -> None:
        self.host = host
        self.rt = rt
        self.rules = rules
        self.listener = listener
        self.family = server.family
        self.server_address: Address = tuple(server.getsockname())
        self.pid = 0
        self.finished = False
        # Not reading the service socket for now (too many clients in hand).
        self.stopped = False
        self._twists = 0                # twist commands running for its clients
        self._twists_reported = False

    @property
    def svc(self) -> ServiceConfig:
        # The service as it is now: a reload that keeps the service replaces its
        # attributes, and the new access rules apply to the clients that come next.
        return self.rt.config

    def on_readable(self, mask: int) -> None:
        if not self.finished and self.rt.sock is self.listener:
            self.receive()

    def receive(self) -> None:
        """Take what waits on the service socket."""
        raise NotImplementedError

    def clients(self) -> list[Client]:
        """The admitted clients talking to the server now."""
        raise NotImplementedError

    def readjusted(self) -> None:
        """A reload kept the service: verdicts kept from its old rules are dropped."""

    def close(self) -> None:
        """Shutdown: end everything now."""
        self.finished = True

    # -- twist commands -------------------------------------------------------------
    def may_twist(self, peer: str, svc: ServiceConfig, refuse: Callable[[str], None],
                  what: str) -> bool:
        """Whether a `twist` command may start for a client a hosts.allow rule sends to
        it while the server runs. It is a process started for that client, as a
        wait = no service's twisted server is: the service's limits (Host.twist_check)
        count it; one refuses it with `refuse(reason)`. At most MAX_TWISTS run at once
        for the clients of one server, whatever the limits: beyond, one ERROR line
        until one exits (`what`: what becomes of the client)."""
        if self._twists >= MAX_TWISTS:
            if not self._twists_reported:
                self._twists_reported = True
                self.host.program.error("intercept", f"{svc.id}: {MAX_TWISTS} twist commands "
                                                     f"already run for clients of this "
                                                     f"server; {what}")
            return False
        reason = self.host.twist_check(self.rt, peer)
        if reason is not None:
            refuse(reason)
            return False
        return True

    def spawn_twist(self, svc: ServiceConfig, sock: socket.socket, peer: str,
                    ended: Callable[[], None] = lambda: None) -> bool:
        """Start `svc`'s twist command on `sock` for `peer`: whether it started. It
        counts toward MAX_TWISTS until it is reaped (then `ended()`)."""
        def reaped(child: Child, status: ExitStatus) -> None:
            self._twists -= 1
            self._twists_reported = False
            ended()
        if not isinstance(self.host.spawn_server(svc, sock, peer, reaped), int):
            return False
        self._twists += 1
        return True

    # -- the checks, the log lines -------------------------------------------------
    def fail(self, peer: str, reason: str, svc: ServiceConfig | None = None) -> None:
        """`svc`: the service's rules that refused (default: the runtime's)."""
        svc = svc or self.svc
        if svc.log_type is not None:
            self.host.logs.write(svc, fail_entry(svc, reason, peer))

    def started(self, peer: str) -> None:
        if self.svc.log_type is not None:
            self.host.logs.write(self.svc, start_entry(self.svc, self.pid, peer))

    def replaced(self, asked: ServiceConfig) -> Callable[[], bool]:
        """Whether a reload has replaced the rules a verdict was asked of (or removed
        the service): AccessGate.wait then answers RULES_REPLACED, and the client is
        asked about again by the rules of the moment (`ask`)."""
        def replaced() -> bool:
            now = self.rules()
            return now is None or rules_replaced(asked, now)
        return replaced

    def verdict_now(self, svc: ServiceConfig, peer: str, conn: socket.socket | None,
                    sender: Address | None) -> Verdict | None:
        """The address verdict of `svc`'s rules (deny list, only_from/no_access, TCP
        Wrappers), or None when it must wait for a name or an aclexec check
        (AccessGate.wait)."""
        if INTERCEPT_FLAG not in svc.flags:
            return PASS     # a reload removed the flag: relay without checking
        if self.host.denied(peer):
            return Verdict(False, REASON_ADDRESS)
        datagram = Datagram(self.listener, sender) if sender is not None else None
        return self.host.access.check(svc, peer, conn, datagram)

    def ask(self, svc: ServiceConfig, peer: str, conn: socket.socket | None,
            sender: Address | None, decided: Callable[[Verdict], None]) -> bool:
        """Ask `svc`'s rules about a client: `decided(verdict)` now (True), or once
        its names or aclexec check are in (False); RULES_REPLACED if a reload replaced
        `svc` before its rules were applied."""
        verdict = self.verdict_now(svc, peer, conn, sender)
        if verdict is not None:
            decided(verdict)
            return True
        datagram = Datagram(self.listener, sender) if sender is not None else None
        self.host.access.wait(svc, peer, decided, conn, datagram,
                              replaced=self.replaced(svc))
        return False

    def refusal(self, verdict: Verdict, svc: ServiceConfig | None = None) -> str | None:
        """xinetd's interceptor order: the address rules, then access_times (`svc`'s:
        the rules the verdict was asked of; default: the runtime's)."""
        if not verdict.allowed:
            return verdict.reason or REASON_ADDRESS
        svc = svc or self.svc
        if INTERCEPT_FLAG in svc.flags and svc.access_times and not within_access_times(svc):
            return REASON_TIME
        return None
