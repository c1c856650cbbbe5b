"""The datagram dispatch models: what happens when a dgram service's socket is readable.

Reference §4.3. Kept apart from dispatch.py, which holds the stream models, the shared
parent-level checks and the routing; everything here reaches those through `Host`.

  dgram/wait      MSG_PEEK learns the sender; the server gets the service socket;
                  suspended until reaped; then whatever is still queued is discarded
                  (`drain`, called from the shared wait=yes reap hook)
  dgram/nowait    (external servers; broken in xinetd 2.3.15.3) pyxinetd.dgramrelay:
                  each datagram is handed to a server through a socketpair
  internal        the datagram builtins answer in the loop, one read per datagram

On a wildcard-bound socket the read is a recvmsg that also gives the datagram's
destination, and the reply leaves from it (pyxinetd.replysource).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from pyxinetd import internal, replysource
from pyxinetd.access.gate import AccessGate, Datagram, Verdict
from pyxinetd.children import Child, ExitStatus
from pyxinetd.config.model import ServiceConfig
from pyxinetd.forkretry import Hold, Outcome
from pyxinetd.internal.status import MasterView
from pyxinetd.listener import peer_text
from pyxinetd.log import ProgramLog
from pyxinetd.servicelog import ServiceLogs, start_entry
from pyxinetd.reload import rules_replaced
from pyxinetd.loop import Loop
from pyxinetd.service import REASON_ADDRESS, ServiceRuntime, State

if TYPE_CHECKING:
    from pyxinetd.intercept import Interceptors
    from pyxinetd.intercept.dgram import HeldSender

# Datagrams handled per readiness event before the loop serves others.
DGRAM_BATCH = 64
# Upper bound of the drain after a dgram/wait server exits (a flood cannot pin us).
DRAIN_LIMIT = 10_000
MAX_DATAGRAM = 65_535

OnReap = Callable[[Child, ExitStatus], None]
# A datagram as read: the socket it came in on, its bytes, its sender, and the source
# its reply leaves from.
Received = tuple[socket.socket, bytes, tuple[object, ...], replysource.Source]


class Host(MasterView, Protocol):
    """What the datagram models use of the dispatcher: the shared checks and spawn."""

    loop: Loop
    program: ProgramLog
    logs: ServiceLogs
    access: AccessGate
    intercept: Interceptors

    def parent_check(self, rt: ServiceRuntime, peer: str) -> str | None: ...

    def hold(self, rt: ServiceRuntime, peer: str, drop: Callable[[], None]
             ) -> Callable[[], bool]: ...

    def refuse(self, rt: ServiceRuntime, peer: str, reason: str,
               conn: socket.socket | None, *, sender: tuple[object, ...] | None = None
               ) -> None: ...

    def refresh(self, rt: ServiceRuntime) -> None: ...

    def in_loop_descriptors(self) -> int: ...

    def spawn_server(self, svc: ServiceConfig, sock: socket.socket, peer: str,
                     on_reap: OnReap | None = None, *,
                     hold: Hold | None = None,
                     sender: object = None,
                     client: tuple[object, ...] | None = None) -> int | Outcome | None: ...

    def start_wait_server(self, rt: ServiceRuntime, svc: ServiceConfig, peer: str,
                          drop: Callable[[socket.socket], None], *,
                          sender: tuple[object, ...] | None = None,
                          again: Callable[[], None] | None = None
                          ) -> int | Outcome | None: ...

    def judge_again(self, rt: ServiceRuntime, peer: str, *,
                    admitted: Callable[[ServiceConfig], None],
                    conn: socket.socket | None = None, datagram: Datagram | None = None,
                    dropped: Callable[[], None] = ...) -> None: ...


def drain(sock: socket.socket) -> None:
    """Discard what a dgram wait = yes server left queued on its socket, as xinetd's
    drain() does (util.c: recv() while it returns more than 0): up to and including
    the first empty datagram or error (an ICMP error queued on the socket); what
    follows starts the next server. Bounded by DRAIN_LIMIT."""
    for _ in range(DRAIN_LIMIT):
        try:
            if not sock.recv(MAX_DATAGRAM, socket.MSG_DONTWAIT):
                return
        except InterruptedError:
            continue
        except OSError:
            return


def _discard(sock: socket.socket) -> None:
    """Drop the datagram at the head of the queue."""
    try:
        sock.recv(MAX_DATAGRAM, socket.MSG_DONTWAIT)
    except OSError:
        pass


def _nothing() -> None:
    """What dropping a waiting datagram takes: nothing (it goes with its socket)."""


def send_quietly(sock: socket.socket, data: bytes, addr: tuple[object, ...] | None,
                 source: replysource.Source = replysource.KERNEL_CHOICE) -> None:
    # Datagrams are best effort: a full buffer drops the datagram, never blocks.
    try:
        replysource.send(sock, data, addr, source)
    except OSError:
        pass


def read_datagrams(rt: ServiceRuntime) -> Iterator[Received]:
    """The datagrams of one readiness event of `rt`'s socket (`receive_datagrams`).

    Before each read the service is looked at again, since handling the previous
    datagram may have changed it: reading stops once it has no socket or is not to be
    watched (`wants_events`: suspended, paused, too much parked), and goes on from a
    socket that replaced the one read before.
    """
    return receive_datagrams(lambda: rt.sock if rt.wants_events else None)


def receive_datagrams(current: Callable[[], socket.socket | None]) -> Iterator[Received]:
    """The datagrams of one readiness event, one read each (`replysource.receive`), at
    most DGRAM_BATCH reads. `current()` is asked before each read for the socket to
    read, None to stop; a socket other than the one read before gets its own
    `space()` (the room for its ancillary data). Reading stops when nothing is queued
    (BlockingIOError, InterruptedError).

    Any other OSError from the read counts against the batch and reading goes on, as
    `drain` does: the failed read consumed the error, and what is queued behind it is
    read in this event. pyxinetd sets no IP_RECVERR, and Linux reports ICMP errors to
    an unconnected UDP socket only with it, so these errors should be rare. (The
    datagram builtins read in `DatagramDispatch.on_internal` instead, and stop at an
    error.)
    """
    seen, room = None, 0
    for _ in range(DGRAM_BATCH):
        sock = current()
        if sock is None:
            return
        if sock is not seen:
            seen, room = sock, replysource.space(sock)
        try:
            data, addr, source = replysource.receive(sock, MAX_DATAGRAM, room)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        yield sock, data, addr, source


def contained(host: Host, rt: ServiceRuntime, addr: tuple[object, ...],
              exc: Exception) -> bool:
    """A bug met while handling one datagram (already read) costs that datagram alone:
    logged naming the service and the sender, and the socket stays watched (raised to
    the loop, it would no longer be, ending the service). False without the loop's
    error hook (unit tests): the caller raises it again."""
    if host.loop.on_error is None:
        return False
    host.loop.on_error(f"handling {rt.id}'s datagram from {peer_text(addr)} (dropped)", exc)
    return True


def contained_verdict(host: Host, rt: ServiceRuntime, addr: tuple[object, ...],
                      step: Callable[[], None], dropped: Callable[[], None]) -> None:
    """Run `step`, the handling of a datagram whose access verdict came in (from the
    name resolver's socket's handler). A bug met there costs that datagram alone:
    `dropped()` gives back what it held (it must be safe to call whatever `step`
    did before failing), and one line names it. Raised to the loop, it would stop
    watching the resolver's socket: every later name unread until its deadline."""
    try:
        step()
    except Exception as exc:
        dropped()
        if not contained(host, rt, addr, exc):
            raise


class DatagramDispatch:
    """The readiness handlers of dgram/wait services and of the datagram builtins
    (dgram/nowait: pyxinetd.dgramrelay)."""

    def __init__(self, host: Host) -> None:
        self.host = host

    # -- dgram/wait ----------------------------------------------------------
    @staticmethod
    def _peek(rt: ServiceRuntime) -> tuple[object, ...] | None:
        assert rt.sock is not None
        try:
            _, addr = rt.sock.recvfrom(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            # A queued ICMP error (e.g. port unreachable) is reported once; consumed now.
            return None
        return tuple(addr) if isinstance(addr, tuple) else ()

    @staticmethod
    def _discard_one(rt: ServiceRuntime) -> None:
        if rt.sock is not None:
            _discard(rt.sock)

    def on_wait(self, rt: ServiceRuntime) -> None:
        host = self.host
        held = host.intercept.next_sender(rt)
        if held is not None:
            self._serve_held(rt, held)
            return
        addr = self._peek(rt)
        if addr is None:
            return
        peer = peer_text(addr)
        try:
            reason = host.parent_check(rt, peer)
            assert rt.sock is not None
            datagram = Datagram(rt.sock, addr)
            verdict = None if reason is not None \
                else host.access.check(rt.config, peer, datagram=datagram)
        except Exception as exc:
            if not contained(host, rt, addr, exc):
                raise
            # Still queued: it would wake the loop again at once, and fail again.
            self._discard_one(rt)
            return
        if reason is not None:
            # Discard the refused datagram, or it would wake us again at once.
            self._discard_one(rt)
            host.refuse(rt, peer, reason, None, sender=addr)
            return
        if verdict is None:
            # The rules need the sender's name: stop watching the socket (the datagram
            # stays queued) until the verdict.
            rt.accept_paused = True
            host.refresh(rt)
            resume = host.hold(rt, peer, _nothing)     # counts as its server would
            asked = rt.config

            def dropped() -> None:
                # Still paused: the datagram is still queued, its fate undecided.
                resume()
                if rt.accept_paused:
                    self._wait_dropped(rt)
                else:
                    host.refresh(rt)

            def decided(v: Verdict) -> None:
                contained_verdict(host, rt, addr, lambda: decide(v), dropped)

            def decide(v: Verdict) -> None:
                if not resume():
                    rt.accept_paused = False    # its service was removed meanwhile
                elif rules_replaced(asked, rt.config):
                    # A reload replaced the rules meanwhile: the new ones judge the
                    # sender, the datagram still queued.
                    host.judge_again(rt, peer, datagram=datagram,
                                     admitted=lambda now: self._wait_start(rt, now, addr, peer),
                                     dropped=lambda: self._wait_dropped(rt))
                else:
                    self._wait_admit(rt, addr, peer, v, resumed=True)
            # A reload that replaces the socket replaces the rules too: the datagram
            # goes with the old socket, no verdict of the old rules is applied to it.
            try:
                host.access.wait(asked, peer, decided, datagram=datagram,
                                 replaced=lambda: rules_replaced(asked, rt.current().config))
            except Exception as exc:
                # Nothing waits: the slot is free, the datagram goes, the socket is
                # watched again.
                resume()
                if not contained(host, rt, addr, exc):
                    raise
                self._wait_dropped(rt)
            return
        self._wait_admit(rt, addr, peer, verdict)

    def _wait_start(self, rt: ServiceRuntime, svc: ServiceConfig, addr: tuple[object, ...],
                    peer: str) -> None:
        """Start `svc`'s server for the admitted datagram at the head of the queue."""
        rt.accept_paused = False
        if rt.sock is None or rt.state is not State.ACTIVE:
            self.host.refresh(rt)
            return
        # A failed fork keeps the datagram queued for the retry; given up, it goes.
        if self.host.start_wait_server(rt, svc, peer, _discard, sender=addr) is None:
            self._discard_one(rt)

    def _wait_dropped(self, rt: ServiceRuntime) -> None:
        """The datagram at the head of the queue was refused (its FAIL line written),
        or its service removed: it goes, and the socket is watched again."""
        rt.accept_paused = False
        self._discard_one(rt)
        self.host.refresh(rt)

    def _wait_admit(self, rt: ServiceRuntime, addr: tuple[object, ...], peer: str,
                    verdict: Verdict, *, resumed: bool = False) -> None:
        host = self.host
        if resumed:
            rt.accept_paused = False
        if rt.sock is None or rt.state is not State.ACTIVE:
            host.refresh(rt)
            return
        if not verdict.allowed:
            self._discard_one(rt)
            host.refuse(rt, peer, verdict.reason or REASON_ADDRESS, None, sender=addr)
            host.refresh(rt)
            return
        self._wait_start(rt, host.access.prepare(rt.config, verdict, None, peer), addr, peer)

    def _serve_held(self, rt: ServiceRuntime, held: HeldSender, *,
                    checked: bool = False) -> None:
        """A sender admitted by an intercepted server's checks after that server exited
        (pyxinetd.intercept.dgram): served first, as the oldest request, like a datagram
        queued on the socket: the parent-level checks (unless `checked`: the fork retry
        of this same sender, which passed them and kept its slot), then a server, which
        is handed its datagrams (its access verdict is in)."""
        host = self.host

        def drop(sock: socket.socket | None) -> None:
            host.intercept.forget_sender(rt, held)
        if not checked:
            reason = host.parent_check(rt, held.peer)
            if reason is not None:
                drop(None)
                host.refuse(rt, held.peer, reason, None, sender=held.sender)
                host.refresh(rt)    # the next held sender, or the socket
                return
        svc = host.access.prepare(rt.config, held.verdict, None, held.peer)
        if host.start_wait_server(rt, svc, held.peer, drop, sender=held.sender,
                                  again=lambda: self._retry_held(rt, held)) is None:
            drop(None)

    def _retry_held(self, rt: ServiceRuntime, failed: HeldSender) -> None:
        """A fork retry for the held senders, `failed` the one whose fork failed: the
        first one held now, with the service as it is now. A reload since the failed
        fork may have refused `failed` (its recheck drops it) or changed the service:
        the retry must not start the server for it, or with the old configuration.
        Another sender served instead never passed the parent-level checks (its
        verdict came while the fork was held, or it waited behind `failed`): they run
        now, by the service's limits of the moment, as for a datagram queued on the
        socket; `failed` passed them, and its slot was held until this retry."""
        held = self.host.intercept.next_sender(rt)
        if held is None:
            self.host.refresh(rt)   # none left: the socket is watched again
            return
        self._serve_held(rt, held, checked=held is failed)

    # -- internal datagram builtins -----------------------------------------
    def on_internal(self, rt: ServiceRuntime) -> None:
        # Written out flat on purpose: everything up to the reply's sendto is latency
        # the client sees, and on a 2 GHz core each Python call saved is about a
        # microsecond of it. `receive_datagrams` does the same reading for the relays.
        host = self.host
        check = host.parent_check
        gate = host.access
        seen: socket.socket | None = None
        room = 0
        for _ in range(DGRAM_BATCH):
            # Looked at again before each read: handling the previous datagram may
            # have suspended the service, or a reload replaced its socket.
            sock = rt.sock
            if sock is None or not rt.wants_events:
                return
            if sock is not seen:
                seen, room = sock, replysource.space(sock)
            # One read gives the datagram, the sender the checks need (no MSG_PEEK
            # first) and the address to answer from; a refused datagram is consumed.
            # A failed read ends the batch: a queued ICMP error is reported once,
            # consumed now.
            try:
                data, addr, source = replysource.receive(sock, MAX_DATAGRAM, room)
            except OSError:
                return
            try:
                first = addr[0]
                peer = (first if isinstance(first, str) and (len(addr) < 4 or not addr[3])
                        else peer_text(addr))     # peer_text's common case, inline
                reason = check(rt, peer)
                if reason is not None:
                    host.refuse(rt, peer, reason, None, sender=addr)
                    continue
                datagram = Datagram(sock, addr)
                self._internal_admit(rt, data, datagram, peer, source,
                                     gate.check(rt.config, peer, datagram=datagram))
            except Exception as exc:
                if not contained(host, rt, addr, exc):
                    raise

    def _internal_admit(self, rt: ServiceRuntime, data: bytes, datagram: Datagram,
                        peer: str, source: replysource.Source, verdict: Verdict | None
                        ) -> None:
        host = self.host
        if verdict is None:
            asked = rt.config

            def decided(v: Verdict) -> None:
                if rt.current() is not rt:
                    return      # a reload replaced its socket: the datagram goes with it
                if rules_replaced(asked, rt.config):
                    # A reload replaced the rules meanwhile: the new ones judge it.
                    v2 = host.access.check(rt.config, peer, datagram=datagram)
                    self._internal_admit(rt, data, datagram, peer, source, v2)
                else:
                    self._internal_admit(rt, data, datagram, peer, source, v)
            self.park(rt, decided, peer, datagram, len(data),
                      lambda: rules_replaced(asked, rt.current().config))
            return
        if not verdict.allowed:
            host.refuse(rt, peer, verdict.reason or REASON_ADDRESS, None, sender=datagram.sender)
            return
        svc, sock = rt.config, rt.sock
        if sock is None:
            return
        sender = datagram.sender
        if internal.must_not_answer(svc, sender, host):
            # A forged sender: answering would start a loop between builtins (discard,
            # which never answers, takes and logs the datagram like any other).
            unlogged = rt.loop_warning_due()
            if unlogged is not None:
                since = f" ({unlogged} more dropped since the last warning)" if unlogged else ""
                why = ("no reply can go there" if sender[1] == 0
                       else "the port of a datagram builtin (possible loop)")
                host.program.warning("svc_dgram", f"{svc.id}: no reply to {peer} port "
                                                  f"{sender[1]}: {why}{since}")
            return
        if svc.log_type is not None:
            host.logs.write(svc, start_entry(svc, 0, peer))
        # The loop check is done: the reply goes out without a second one.
        reply = internal.datagram_reply(svc.name, data)
        if reply is not None:
            send_quietly(sock, reply, sender, source)

    def park(self, rt: ServiceRuntime, admit: Callable[[Verdict], None], peer: str,
             datagram: Datagram, size: int, replaced: Callable[[], bool],
             dropped: Callable[[], None] = _nothing) -> None:
        """Hold a datagram of `size` bytes read from `rt`'s socket until the access
        verdict; while the service holds as many as its bounds allow (ServiceRuntime's
        parked counts), its socket is not read. `replaced`: whether a reload has since
        replaced the rules asked (AccessGate.wait: RULES_REPLACED, nothing of the old
        rules run; `admit` asks the new ones). A failure in `admit` drops the datagram
        (`dropped()` gives back what else it held) and is named (`contained_verdict`)."""
        host = self.host
        rt.parked += 1
        rt.parked_bytes += size
        if not rt.wants_events:
            host.refresh(rt)
        parked = True

        def unpark() -> bool:
            """Give the datagram's share of the bounds back; False if it was already."""
            nonlocal parked
            if not parked:
                return False
            parked = False
            was_full = not rt.wants_events
            rt.parked -= 1
            rt.parked_bytes -= size
            if was_full and rt.wants_events:
                host.refresh(rt)
            return True

        def decided(verdict: Verdict) -> None:
            # A wait that failed after asking for a name may still be called back: its
            # datagram was dropped then, and is neither counted off nor served again.
            if unpark():
                contained_verdict(host, rt, datagram.sender, lambda: admit(verdict), dropped)
        try:
            host.access.wait(rt.config, peer, decided, datagram=datagram, replaced=replaced)
        except BaseException:
            # Nothing waits (the datagram is dropped): counted for good, such failures
            # would fill the bounds and the socket would be read no more.
            unpark()
            raise
