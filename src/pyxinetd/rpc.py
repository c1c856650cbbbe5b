"""RPC services (`type = RPC`): portmapper registration around a normal listener.

An RPC service listens like any other (reference §4.2), except that its socket is
bound to port 0 (or its bind address) and the kernel picks the port, unless the service
gives a `port` (Red Hat's xinetd honours it, Debian's ignores it). The service is
then registered with the portmapper for every version of its `rpc_version` range and
its protocol (pyxinetd.portmap), and it is available once at least one version is
registered; with none, it fails like a bind failure (xinetd's rule). Requests are then
dispatched as for any service of its socket type and wait mode.

The registrations are dropped (PMAPPROC_UNSET of every version) when a reload removes
the service or moves it to a new socket, and at SIGTERM/SIGQUIT; a reload that only
changes the version range unregisters the old range and registers the new one.

UNSET is protocol-blind: the portmapper drops the tcp *and* udp entries of a program
version. xinetd leaves the other protocol's service unregistered in that case; here
the versions of any other live service of the same program are registered again.

A SET that is never answered (every retransmission unanswered) may still have been
applied, only its answers lost: its version is UNSET (and the other live services of
the program SET again, as above), so that the portmapper does not hand out a port
nobody serves, whether the service then runs with its other versions or fails.
xinetd leaves such a version registered.

Unlike xinetd, no call blocks: the SET of every version is sent at once, without the
1 s sleep xinetd makes after each one, and the loop serves the other services meanwhile.
So a SET may still be unanswered when the daemon stops; the portmapper may have taken
it (only its answer lost or late), so it is abandoned and its version UNSET too, or the
portmapper would keep handing out the port of a daemon that has gone. Likewise a
reload may change `rpc_version` while a service's calls are in flight (its first
registration, or the UNSET/SET of an earlier reload): once they are answered, the
range they were for is compared with the configuration's, and registered again when
it differs, so the registered versions end as the last configuration gives them.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyxinetd.children import Child
from pyxinetd.config.model import ServiceConfig
from pyxinetd.log import ProgramLog
from pyxinetd.loop import Loop
from pyxinetd.portmap import NO_ANSWER, Mapping, PortmapClient
from pyxinetd.service import ServiceRuntime


def is_rpc(svc: ServiceConfig) -> bool:
    return "RPC" in svc.types and svc.rpc_number is not None


def versions(svc: ServiceConfig) -> range:
    assert svc.rpc_version is not None
    low, high = svc.rpc_version
    return range(low, high + 1)


@dataclass(frozen=True)
class Registration:
    """What one service registered: the versions the portmapper accepted."""

    program: int
    protocol: int
    port: int
    versions: tuple[int, ...]

    def mappings(self) -> list[Mapping]:
        return [Mapping(self.program, v, self.protocol, self.port) for v in self.versions]


class RpcRegistry:
    """The portmapper registrations of the master's RPC services."""

    def __init__(self, loop: Loop, program: ProgramLog,
                 client: PortmapClient | None = None) -> None:
        self.log = program
        self.client = client or PortmapClient(loop)
        self._registered: dict[ServiceRuntime, Registration] = {}
        # The SET calls not answered yet: (service id, mapping, xid of the call).
        self._setting: dict[int, tuple[str, Mapping, int | None]] = {}
        self._set_keys = itertools.count()

    def registration(self, rt: ServiceRuntime) -> Registration | None:
        return self._registered.get(rt)

    def activation(self, rt: ServiceRuntime, sock: socket.socket,
                   on_registered: Callable[[socket.socket], None],
                   on_failed: Callable[[], None]) -> Activation:
        """The registration step of a freshly bound RPC service (call start())."""
        return Activation(self, rt, sock, on_registered, on_failed)

    # -- registering -------------------------------------------------------------
    def register(self, rt: ServiceRuntime, port: int,
                 done: Callable[[Registration | None], None], *,
                 still_wanted: Callable[[], bool]) -> None:
        """SET every version of `rt` at `port`; done(registration, or None if none took).

        When a reload changed `rt`'s range while the calls were in flight, what they
        registered is UNSET and the new range registered, until the range answered is
        the configuration's; done() then reports that one. Once `still_wanted()` is
        False (the service stopped meanwhile), done() gets what was registered (its
        caller unregisters it), or is not called when nothing is left registered."""
        asked = rt.config.rpc_version

        def answered(registration: Registration | None) -> None:
            if not still_wanted():
                if registration is not None:
                    done(registration)  # for its caller to unregister
                return
            if rt.config.rpc_version == asked:
                done(registration)
                return

            def again() -> None:
                if still_wanted():
                    self.register(rt, port, done, still_wanted=still_wanted)
            if registration is None:
                again()
            else:
                self.unset(rt.config.id, registration, again)
        self._register_range(rt.config, port, answered)

    def _register_range(self, svc: ServiceConfig, port: int,
                        done: Callable[[Registration | None], None]) -> None:
        """SET every version of `svc` at `port`; done(registration, or None if none
        took), after the UNSET of any version whose SET went unanswered is sent."""
        assert svc.rpc_number is not None
        program, protocol = svc.rpc_number, svc.protocol_number
        wanted = list(versions(svc))
        accepted: list[int] = []
        unanswered: list[int] = []
        remaining = [len(wanted)]

        def answered(version: int, ok: bool | None, error: str | None) -> None:
            if ok:
                accepted.append(version)
            else:
                why = f" ({error})" if error else ""
                self.log.error("activate_rpc",
                                    f"pmap_set failed. service={svc.id} program={program} "
                                    f"version={version}{why}")
                if error == NO_ANSWER:
                    unanswered.append(version)
            remaining[0] -= 1
            if remaining[0]:
                return
            self.log.debug("activate_rpc",
                                f"Registered {len(accepted)} versions of {svc.id}")
            if unanswered:
                # Sent before done() may SET any of these versions again, so that the
                # portmapper takes the UNSET first.
                self.unset(svc.id, Registration(program, protocol, port,
                                                tuple(sorted(unanswered))), None)
            if not accepted:
                done(None)
                return
            done(Registration(program, protocol, port, tuple(sorted(accepted))))

        for version in wanted:
            self._set(svc.id, Mapping(program, version, protocol, port),
                      functools.partial(answered, version))

    def _set(self, service_id: str, mapping: Mapping,
             done: Callable[[bool | None, str | None], None]) -> None:
        """A SET call, kept among those in flight until it is answered (or fails)."""
        key = next(self._set_keys)

        def answered(ok: bool | None, error: str | None) -> None:
            self._setting.pop(key, None)
            done(ok, error)
        self._setting[key] = (service_id, mapping, None)
        xid = self.client.set(mapping, answered)
        if key in self._setting:    # not failed at once
            self._setting[key] = (service_id, mapping, xid)

    def keep(self, rt: ServiceRuntime, registration: Registration) -> None:
        self._registered[rt] = registration

    # -- unregistering -----------------------------------------------------------
    def unregister(self, rt: ServiceRuntime, then: Callable[[], None] | None = None) -> None:
        """UNSET what `rt` registered (if anything); `then()` once answered."""
        registration = self._registered.pop(rt, None)
        if registration is None:
            if then is not None:
                then()
            return
        self.unset(rt.config.id, registration, then)

    def unregister_all(self, then: Callable[[], None]) -> None:
        """UNSET every registration (shutdown), and every version whose SET is still
        unanswered (abandoned: no retransmission may follow the UNSET); `then()` once
        every call is answered."""
        entries = [(rt.config.id, registration)
                   for rt, registration in self._registered.items()]
        self._registered.clear()
        for service_id, mapping, xid in self._setting.values():
            if xid is not None:
                self.client.abandon(xid)
            entries.append((service_id, Registration(mapping.program, mapping.protocol,
                                                     mapping.port, (mapping.version,))))
        self._setting.clear()
        remaining = [len(entries) + 1]

        def one_done() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                then()

        for service_id, registration in entries:
            self.unset(service_id, registration, one_done, restore=False)
        one_done()

    def reregister(self, rt: ServiceRuntime, old: ServiceConfig) -> None:
        """A readjusted service: register again if its version range changed (§6.2).

        Not registered: nothing to do, or its calls are in flight, and register()
        compares the range they were for with the new one once they are answered."""
        if old.rpc_version == rt.config.rpc_version or rt not in self._registered:
            return
        port = self._registered[rt].port
        self.unregister(rt, lambda: self._register_live(rt, port))

    def follow(self, rt: ServiceRuntime) -> None:
        """A cps re-activation bound a new socket: register it (xinetd does too)."""
        if not is_rpc(rt.config) or rt.sock is None:
            return
        self._register_live(rt, rt.sock.getsockname()[1])

    def _register_live(self, rt: ServiceRuntime, port: int) -> None:
        """Register a service that serves at `port`, for as long as it does."""
        def live() -> bool:
            return rt.sock is not None and rt.sock.getsockname()[1] == port
        if not live():
            return      # stopped or moved meanwhile
        self.register(rt, port, lambda reg: self._keep_if_live(rt, reg), still_wanted=live)

    def _keep_if_live(self, rt: ServiceRuntime, registration: Registration | None) -> None:
        if registration is None:
            self.log.error("activate_rpc",
                                f"No RPC versions registered for service {rt.config.id}")
        elif rt.sock is not None and rt.sock.getsockname()[1] == registration.port:
            self._registered[rt] = registration
        else:
            self.unset(rt.config.id, registration, None)

    def unset(self, service_id: str, registration: Registration,
               then: Callable[[], None] | None, *, restore: bool = True) -> None:
        remaining = [len(registration.versions)]

        def answered(version: int, ok: bool | None, error: str | None) -> None:
            if not ok:
                why = f" ({error})" if error else ""
                self.log.error("deactivate",
                                    f"pmap_unset failed. service={service_id} "
                                    f"program={registration.program} version={version}{why}")
            remaining[0] -= 1
            if remaining[0]:
                return
            if restore:
                self._restore_shared(registration)
            if then is not None:
                then()

        for mapping in registration.mappings():
            self.client.unset(mapping, functools.partial(answered, mapping.version))

    def _restore_shared(self, dropped: Registration) -> None:
        """SET again the versions of other services that the protocol-blind UNSET took."""
        for rt, other in self._registered.items():
            if other.program != dropped.program:
                continue
            for mapping in other.mappings():
                if mapping.version in dropped.versions:
                    self._set(rt.config.id, mapping, functools.partial(
                        self._restored, rt.config.id, other, mapping.version))

    def _restored(self, service_id: str, registration: Registration, version: int,
                  ok: bool | None, error: str | None) -> None:
        if not ok:
            why = f" ({error})" if error else ""
            self.log.error("activate_rpc",
                                f"pmap_set failed. service={service_id} "
                                f"program={registration.program} version={version}{why}")

    def close(self) -> None:
        self.client.close()


class Activation:
    """Registers one freshly bound RPC service; reports once, like listener.Binder.

    `on_registered(sock)` when at least one version was registered, else `on_failed()`
    (the socket is then closed). cancel() abandons it: nothing is reported, and the
    versions the portmapper accepts meanwhile are unregistered again.
    """

    def __init__(self, registry: RpcRegistry, rt: ServiceRuntime, sock: socket.socket,
                 on_registered: Callable[[socket.socket], None],
                 on_failed: Callable[[], None]) -> None:
        self._registry = registry
        self._rt = rt
        self._sock = sock
        self._on_registered = on_registered
        self._on_failed = on_failed
        self.done = False

    def start(self) -> None:
        self._registry.register(self._rt, self._sock.getsockname()[1], self._answered,
                                still_wanted=lambda: not self.done)

    def _answered(self, registration: Registration | None) -> None:
        if self.done:
            if registration is not None:
                self._registry.unset(self._rt.config.id, registration, None)
            return
        self.done = True
        if registration is None:
            self._registry.log.error(
                "activate_rpc", f"No RPC versions registered for service {self._rt.config.id}")
            self._sock.close()
            self._on_failed()
            return
        self._registry.keep(self._rt, registration)
        self._on_registered(self._sock)

    def cancel(self) -> None:
        if not self.done:
            self._sock.close()
        self.done = True


def kill_servers(children: Iterable[Child], log: ProgramLog) -> None:
    """SIGTERM of the daemon: RPC servers get SIGKILL, as xinetd sends them (§6.1)."""
    for child in children:
        if not is_rpc(child.service):
            continue
        log.warning("terminate_servers", f"Sending signal {int(signal.SIGKILL)} to "
                                         f"{child.service.id} server {child.pid}")
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def implied_flags(svc: ServiceConfig) -> frozenset[str]:
    """Flags xinetd adds by itself: NOLIBWRAP on TCP RPC services (reference §4.14)."""
    return frozenset({"NOLIBWRAP"}) if is_rpc(svc) and svc.protocol == "tcp" \
        else frozenset()


def dump_lines(svc: ServiceConfig) -> list[str]:
    """The `RPC data` block of the SIGUSR1 dump (reference §6.4)."""
    if not is_rpc(svc):
        return []
    assert svc.rpc_version is not None
    low, high = svc.rpc_version
    return ["RPC data",
            f"\tprogram number = {svc.rpc_number}",
            f"\trpc_version = {low}" + (f"-{high}" if high != low else "")]
