"""An intercepted datagram server: its senders checked, and their datagrams relayed.

Every datagram on the service socket is read by the master. A sender's first datagram
is checked (common.py): a refused sender is not checked again for the rest of this
server's life, its datagrams are dropped, and each refusal is logged by the service's one
refusal policy (Dispatcher.refuse: an address refusal that repeats the service's last
one within a minute is not logged again, whether a server runs or not); an admitted one
gets `START` and a channel,
a loopback socket connected to the server's private socket, through which its datagrams
reach the server and the server's replies come back, to leave from the service socket
towards it, from the address the sender's first datagram was sent to (on a wildcard
bind; pyxinetd.replysource). The sender whose datagram started the server was checked by the dispatcher
before the start, and gets its channel at once. A sender a hosts.allow `twist` rule
admits gets no channel: the command runs for it, on a private socket of its own where
its datagrams wait, and nothing of it reaches the running server; the command counts
as a stream client's does (common.Interception.may_twist).

Bounded: at most MAX_CHANNELS senders talk to one server at once (a descriptor each),
and no more than a quarter of the daemon's descriptor limit (common.descriptor_share);
datagrams of further senders are dropped, with one ERROR line; so are those of a
sender whose channel finds no descriptor (it tries again at its next datagram; one
ERROR line until a channel opens again). A channel that carried
nothing either way for CHANNEL_IDLE seconds is closed, so a server that runs for long
holds a descriptor per sender that talks to it now, not per sender it ever served: the
sender's next datagram is checked again (a new START) and gets a new channel. One timer,
at the idle deadline of the channel quiet for longest, exists while channels do. While
a sender's verdict waits for a name lookup, at most PENDING_LIMIT of its datagrams are
kept, and all the senders waiting hold at most MAX_PARKED_DATAGRAMS datagrams and
MAX_PARKED_BYTES bytes (the bounds of a service without INTERCEPT, pyxinetd.service):
beyond them, datagrams of senders without a channel are dropped, with one ERROR line,
while the admitted senders' datagrams still flow. Each new sender's datagram is
otherwise kept for as long as its lookup takes (a flood from many ports grew the daemon
by up to 64 KiB a sender).

A sender whose verdict is still awaited when the server exits is not lost: refused, it
is logged as above; admitted, it and its datagrams go to the service's server running
then, or are held for its next one, which the dispatcher starts for them as for a
datagram queued on the service socket (its checks, then the server;
pyxinetd.intercept.registry).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pyxinetd import replysource
from pyxinetd.access.gate import PASS, RULES_REPLACED, Verdict
from pyxinetd.config.model import ServiceConfig
from pyxinetd.dgram import (DGRAM_BATCH, DRAIN_LIMIT, MAX_DATAGRAM, receive_datagrams,
                            send_quietly)
from pyxinetd.dgramrelay import reply_address
from pyxinetd.intercept.common import (Address, Client, Host, Interception, Rules,
                                       descriptor_share, loopback, private_socket)
from pyxinetd.listener import SHORTAGE_ERRNOS, peer_text
from pyxinetd.log import strerror
from pyxinetd.loop import READ
from pyxinetd.service import MAX_PARKED_BYTES, MAX_PARKED_DATAGRAMS, ServiceRuntime
from pyxinetd.timers import Timer, shortened

MAX_CHANNELS = 1024
PENDING_LIMIT = 16
# Seconds a channel may stay quiet (nothing from its sender, nothing from the server)
# before it is closed; as long as the kernel's connection tracking keeps a UDP stream.
CHANNEL_IDLE = 120.0
# Test-only override of CHANNEL_IDLE, in seconds.
IDLE_ENV = "PYXINETD_INTERCEPT_IDLE"


def channel_idle(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """CHANNEL_IDLE, or $PYXINETD_INTERCEPT_IDLE (seconds) when set and valid."""
    return shortened(CHANNEL_IDLE, IDLE_ENV, environ)


@dataclass
class HeldSender:
    """An admitted sender whose verdict came after its server exited, with its
    datagrams, waiting for the service's next server."""

    sender: Address
    peer: str
    datagrams: list[bytes]
    # Where its replies leave from; None: from its next datagram's destination (it was
    # read on a socket a reload has since replaced).
    source: replysource.Source | None
    verdict: Verdict
    # The service's rules it was admitted by: judged again by the service's rules of
    # the moment before it reaches a server (pyxinetd.intercept.handover).
    checked: ServiceConfig

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.datagrams)


class _Channel:
    """One sender's way to and from the intercepted server."""

    def __init__(self, sender: Address, sock: socket.socket,
                 source: replysource.Source | None, now: float) -> None:
        self.sender = sender
        self.sock = sock
        # When a datagram last went through it, either way (loop clock).
        self.used = now
        # Where replies leave from; None until the sender's first datagram is read
        # (the one that started the server is read after its channel is open).
        self.source = source


class DatagramInterception(Interception):
    def __init__(self, host: Host, rt: ServiceRuntime, listener: socket.socket,
                 server: socket.socket, late: Callable[[HeldSender], None],
                 rules: Rules) -> None:
        super().__init__(host, rt, listener, server, rules)
        # Where a sender goes whose verdict admitted it after the server exited: to
        # the service's running server or the next one (pyxinetd.intercept.registry).
        self._late = late
        self._closed = False
        self._channels: dict[Address, _Channel] = {}
        # The senders refused during this server's life, and why: not checked again.
        self._refused: dict[Address, str] = {}
        # The senders a twist command runs for: their datagrams are its, not checked
        # again until it exits (one command per sender, as per connection for a stream).
        self._twisted: set[Address] = set()
        self._pending: dict[Address, list[bytes]] = {}    # waiting for a verdict
        self._pending_datagrams = 0     # in _pending, and their bytes
        self._pending_bytes = 0
        self._waiting_reported = False
        self._sources: dict[Address, replysource.Source] = {}   # of the pending senders
        # The senders handed to the registry (`_late`) by the step `_contained` runs.
        self._handed: set[Address] = set()
        self._full_reported = False
        # Out of descriptors for a channel: logged once, until a channel opens again.
        self._short = False
        self.max_channels = descriptor_share(1, MAX_CHANNELS)
        self._idle = channel_idle()
        self._expiry: Timer | None = None

    def begin(self, pid: int, admitted: Address | None, held: list[HeldSender]) -> None:
        """The server runs: read the service socket from now on. `admitted`: the sender
        whose datagram started the server, already checked by the dispatcher; `held`:
        senders admitted after an earlier server exited, with their datagrams."""
        self.pid = pid
        for sender in held:
            self.adopt(sender)
        if admitted is not None and admitted not in self._channels:
            self._open_channel(admitted, peer_text(admitted), [], None)

    def adopt(self, held: HeldSender) -> None:
        """Relay a sender admitted for an earlier server, and its datagrams, to this
        one (its `START` names this server)."""
        # Read on a socket a reload replaced, it is named in this socket's family.
        sender = reply_address(self.listener, held.sender)
        if sender is None:
            # An IPv6 sender of a service that is now IPv4 only: no reply could reach it.
            self.host.program.warning(
                "intercept", f"service {self.svc.id}: datagrams of {held.peer} held for "
                             f"the next server dropped: the service's socket is now IPv4")
            return
        channel = self._channels.get(sender)
        if channel is None:
            self._open_channel(sender, held.peer, held.datagrams, held.source)
            return
        for data in held.datagrams:
            send_quietly(channel.sock, data, None)

    def server_exited(self) -> None:
        """Stop reading the service socket; forward the replies still queued, then end.
        The senders still waiting for their verdict keep their datagrams (_admit_sender)."""
        self.finished = True
        self.host.loop.unregister(self.listener)
        for channel in list(self._channels.values()):
            # All that is queued, not one batch: nothing reads the channel after this.
            self._forward_replies(channel, DRAIN_LIMIT)
            self._close_channel(channel)

    def close(self) -> None:
        super().close()
        self._closed = True
        for channel in list(self._channels.values()):
            self._close_channel(channel)
        self._forget_pending()

    def clients(self) -> list[Client]:
        def alive(channel: _Channel) -> Callable[[], bool]:
            return lambda: self._channels.get(channel.sender) is channel

        def end(channel: _Channel) -> Callable[[], None]:
            return lambda: self._close_channel(channel) if alive(channel)() else None
        return [Client(peer_text(channel.sender), self.pid, alive(channel), end(channel))
                for channel in self._channels.values()]

    def readjusted(self) -> None:
        # A sender refused under the old rules is checked again at its next datagram.
        self._refused.clear()

    def _forget_pending(self) -> None:
        self._pending.clear()
        self._sources.clear()
        self._pending_datagrams = self._pending_bytes = 0

    # -- senders ------------------------------------------------------------------
    def _reading(self) -> socket.socket | None:
        """The socket to read next: the service socket, until the server is gone."""
        return None if self.finished else self.listener

    def receive(self) -> None:
        # The read loop of the dgram/nowait relays (pyxinetd.dgram), on the fixed
        # service socket; a failed read (a queued ICMP error) is skipped, as they skip it.
        for _, data, sender, source in receive_datagrams(self._reading):
            channel = self._channels.get(sender)
            if channel is not None:
                if channel.source is None:
                    channel.source = source
                channel.used = self.host.loop.clock()
                send_quietly(channel.sock, data, None)
            elif sender in self._pending:
                if len(self._pending[sender]) < PENDING_LIMIT and self._room(sender):
                    self._keep_pending(sender, data)
            elif sender in self._twisted:
                pass    # its twist command read what it was given
            elif sender in self._refused:
                # Not checked again; logged as the service logs any refused datagram.
                self._refuse(sender, peer_text(sender), self._refused[sender])
            elif self._room(sender):
                self._check_sender(sender, data, source)

    def _room(self, sender: Address) -> bool:
        """Whether one more datagram may wait for its sender's verdict."""
        if self._pending_datagrams < MAX_PARKED_DATAGRAMS and \
                self._pending_bytes < MAX_PARKED_BYTES:
            return True
        if not self._waiting_reported:
            self._waiting_reported = True
            self.host.program.error(
                "intercept", f"{self.svc.id}: {self._pending_datagrams} datagrams already "
                f"wait for their senders' names; datagrams from senders not yet checked "
                f"(the first: {peer_text(sender)}) are dropped until verdicts come")
        return False

    def _keep_pending(self, sender: Address, data: bytes) -> None:
        self._pending.setdefault(sender, []).append(data)
        self._pending_datagrams += 1
        self._pending_bytes += len(data)

    def _take_pending(self, sender: Address) -> list[bytes]:
        queued = self._pending.pop(sender, [])
        self._pending_datagrams -= len(queued)
        self._pending_bytes -= sum(len(data) for data in queued)
        return queued

    def _check_sender(self, sender: Address, data: bytes,
                      source: replysource.Source) -> None:
        self._keep_pending(sender, data)
        self._sources[sender] = source
        self._ask_about(sender, peer_text(sender), self.svc)

    def _ask_about(self, sender: Address, peer: str, asked: ServiceConfig) -> None:
        """Ask `asked`'s rules about a sender whose datagrams wait in _pending; asked
        again by the rules of the moment if a reload replaces them before they are
        applied (a `spawn` of the old ones never runs). A bug met on the way costs
        that sender alone (`_contained`)."""
        def decided(verdict: Verdict) -> None:
            self._contained(sender, peer, lambda: decide(verdict))

        def decide(verdict: Verdict) -> None:
            rules = self.rules()
            if verdict is not RULES_REPLACED:
                self._admit_sender(sender, peer, verdict, asked)
            elif self._closed:
                self._drop_pending(sender)      # shutdown
            elif rules is not None:
                self._ask_about(sender, peer, rules)
            else:
                # The service is gone: the registry drops its datagrams, saying why.
                self._hand_late(HeldSender(sender, peer, self._take_pending(sender),
                                      self._sources.pop(sender, None), PASS, asked))

        def ask() -> None:
            self.ask(asked, peer, None, sender, decided)
        self._contained(sender, peer, ask)

    def _hand_late(self, held: HeldSender) -> None:
        self._handed.add(held.sender)
        self._late(held)

    def _drop_pending(self, sender: Address) -> None:
        self._take_pending(sender)
        self._sources.pop(sender, None)

    def _contained(self, sender: Address, peer: str, step: Callable[[], None]) -> None:
        """Run `step` of a sender's checks: from the read of the service socket, or
        from the loop by the name resolver's socket's handler once its verdict came.
        A bug met there costs that sender alone: the datagrams it has waiting are
        dropped (given back to the bounds on waiting datagrams; its next datagram is
        checked again), and one line names it. Raised to the loop, it would stop
        watching the service socket or the resolver's (every later name unread until
        its deadline). A sender handed on by then keeps what it was handed on with
        (its datagrams, the address its replies leave from): relayed by its channel,
        or kept by the registry; the line says which."""
        try:
            step()
        except Exception as exc:
            self._drop_pending(sender)
            if sender in self._channels:
                fate = "relayed"
            elif sender in self._handed:
                fate = "kept for its server"
            else:
                fate = "dropped"
            if self.host.loop.on_error is None:
                raise
            self.host.loop.on_error(f"handling {self.svc.id}'s datagrams from {peer} "
                                    f"({fate})", exc)
        finally:
            self._handed.discard(sender)

    def _admit_sender(self, sender: Address, peer: str, verdict: Verdict,
                      asked: ServiceConfig) -> None:
        """`asked`: the service's rules the verdict was asked of."""
        queued = self._take_pending(sender)
        source = self._sources.pop(sender, replysource.KERNEL_CHOICE)
        if self._closed:
            return      # shutdown
        reason = self.refusal(verdict, asked)
        if reason is not None:
            if len(self._refused) < MAX_CHANNELS and not self.finished:
                self._refused[sender] = reason
            self._refuse(sender, peer, reason)
            return
        if verdict.decision is not None and verdict.decision.twist is not None:
            # A hosts.allow `twist`: that command takes this sender's datagrams instead
            # of the running server, as it would have had no server been running.
            self._twist(sender, peer, verdict, asked, queued)
            return
        if self.finished or asked is not self.svc:
            # The server exited while this sender's verdict was awaited: like any
            # datagram that arrives after it, its datagrams are not lost. Or a reload
            # replaced the rules it was asked under: judged by the new ones first (the
            # registry hands it back to this server if it still runs).
            self._hand_late(HeldSender(sender, peer, queued, source, verdict, asked))
            return
        if sender in self._channels:
            self.adopt(HeldSender(sender, peer, queued, source, verdict, asked))
            return
        self._open_channel(sender, peer, queued, source)

    def _twist(self, sender: Address, peer: str, verdict: Verdict, asked: ServiceConfig,
               queued: list[bytes]) -> None:
        """Run a `twist` command for a sender admitted while a server runs: on a
        private socket of its own (the sender's datagrams queued there), never relayed
        to the running server. Like the twist command of a wait = yes service that no
        server held, it reads them on an unconnected socket, where its writes fail.
        Never one of rules a reload replaced (AccessGate.wait answers RULES_REPLACED).
        It counts as the service's server would (`may_twist`): a sender the limits
        refuse is logged, and checked again at its next datagram; beyond MAX_TWISTS
        its datagrams are dropped."""
        if not self.may_twist(peer, asked, lambda reason: self._refuse(sender, peer, reason),
                              f"datagrams of {peer} dropped"):
            return
        svc = self.host.access.prepare(asked, verdict, None, peer)
        feeder: socket.socket | None = None
        try:
            sock = private_socket(self.listener)
        except OSError as err:
            self.host.program.error("intercept", f"{svc.id}: cannot run the twist command "
                                                 f"for {peer}: {strerror(err)}")
            return
        try:
            feeder = socket.socket(sock.family, socket.SOCK_DGRAM)
            feeder.setblocking(False)
            feeder.bind((loopback(sock.family), 0))
            for data in queued:
                send_quietly(feeder, data, tuple(sock.getsockname()))
            if self.spawn_twist(svc, sock, peer, lambda: self._twisted.discard(sender)) \
                    and not self._closed:
                self._twisted.add(sender)
        except OSError as err:
            self.host.program.error("intercept", f"{svc.id}: cannot run the twist command "
                                                 f"for {peer}: {strerror(err)}")
        finally:
            if feeder is not None:
                feeder.close()
            sock.close()

    def _refuse(self, sender: Address, peer: str, reason: str) -> None:
        """A refused datagram, logged by the service's one refusal policy (an address
        refusal repeating the service's last one within a minute is not logged)."""
        self.host.refuse(self.rt, peer, reason, None, sender=sender)

    def _open_channel(self, sender: Address, peer: str, queued: list[bytes],
                      source: replysource.Source | None) -> None:
        if len(self._channels) >= self.max_channels:
            if not self._full_reported:
                self._full_reported = True
                self.host.program.error("intercept", f"{self.svc.id}: {self.max_channels} "
                                        "senders already talk to this server; datagrams "
                                        "from new ones are dropped until it exits")
            return
        sock: socket.socket | None = None
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((loopback(self.family), 0))
            sock.connect(self.server_address)
        except OSError as err:
            if sock is not None:
                sock.close()
            if err.errno in SHORTAGE_ERRNOS:
                # The sender's next datagram tries again: one line for the shortage,
                # not one per datagram.
                if self._short:
                    return
                self._short = True
            self.host.program.error("intercept", f"{self.svc.id}: cannot relay for "
                                                 f"{peer}: {strerror(err)}")
            return
        self._short = False
        channel = _Channel(sender, sock, source, self.host.loop.clock())
        self._channels[sender] = channel
        if self._expiry is None:
            self._expiry = self.host.loop.call_later(self._idle, self._close_idle)
        self.host.loop.register(sock, READ, lambda mask: self._forward_replies(channel))
        self.started(peer)
        for data in queued:
            send_quietly(sock, data, None)

    def _forward_replies(self, channel: _Channel, limit: int = DGRAM_BATCH) -> None:
        for _ in range(limit):
            try:
                data = channel.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ECONNREFUSED: the server's socket is gone
            channel.used = self.host.loop.clock()
            send_quietly(self.listener, data, channel.sender,
                         channel.source or replysource.KERNEL_CHOICE)

    def _close_channel(self, channel: _Channel) -> None:
        self.host.loop.unregister(channel.sock)
        channel.sock.close()
        if self._channels.get(channel.sender) is channel:
            del self._channels[channel.sender]
        if not self._channels and self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _close_idle(self) -> None:
        """The timer: close the channels quiet for CHANNEL_IDLE seconds, then wait for
        the next one to be (no timer once none is left)."""
        self._expiry = None
        now = self.host.loop.clock()
        for channel in [c for c in self._channels.values() if now - c.used >= self._idle]:
            self._close_channel(channel)
        if self._channels:
            quiet = min(c.used for c in self._channels.values())
            self._expiry = self.host.loop.call_at(quiet + self._idle, self._close_idle)
