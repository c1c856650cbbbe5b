"""The datagram builtins: one datagram in, at most one reply out, never blocking.

Replies go out without waiting; when the socket buffer is full the reply is dropped
(UDP may lose it anyway). On a wildcard-bound socket a reply leaves from the address
the request was sent to (pyxinetd.replysource). Replies to source port 0, to the well-known ports of
the UDP builtins and to the port of any datagram builtin this daemon serves are dropped
too: two such services answering each other (echo <-> chargen), or one answering
itself, would bounce a single forged datagram forever.
"""

from __future__ import annotations

import socket
from typing import Any

from pyxinetd import replysource
from pyxinetd.internal import chargen, clock, status

# xinetd reads up to this much of a datagram for echo; longer ones are truncated.
ECHO_DATAGRAM = 2048
# Enough for any datagram, so that one read consumes exactly one.
_MAX_DATAGRAM = 65536
_LOOP_PORTS = frozenset({0, 7, 9, 13, 19, 37})


def reply_for(name: str, data: bytes) -> bytes | None:
    """The reply a builtin sends for one received datagram, or None for no reply."""
    if name == "echo":
        return data[:ECHO_DATAGRAM]
    if name == "chargen":
        return chargen.DATAGRAM_CYCLE.next_reply()
    if name == "daytime":
        return clock.daytime_text()
    if name == "time":
        return clock.time_bytes()
    return None     # discard


def handle(name: str, sock: socket.socket, view: status.MasterView | None) -> None:
    """Receive one datagram and answer it; never raises OSError."""
    try:
        data, peer, source = replysource.receive(sock, _MAX_DATAGRAM,
                                                 replysource.space(sock))
    except OSError:
        return      # nothing queued after all, or an ICMP error reported late
    answer(name, sock, data, peer, view, source)


def must_not_answer(name: str, peer: tuple[Any, ...], view: status.MasterView | None
                    ) -> bool:
    """Whether the builtin `name` must not answer `peer` because the reply could come
    back (`loops_back`); never for discard, which does not answer."""
    return name != "discard" and loops_back(peer, view)


def loops_back(peer: tuple[Any, ...], view: status.MasterView | None) -> bool:
    """True when a reply to `peer` could be answered by a datagram builtin: its source
    port is 0, a well-known builtin port, or the port of one of our datagram builtins
    (a forged datagram from there would otherwise bounce between them, or between a
    service and itself, as fast as the loop runs)."""
    port = peer[1]
    if port in _LOOP_PORTS:
        return True
    return view is not None and port in view.datagram_builtin_ports()


def answer(name: str, sock: socket.socket, data: bytes, peer: tuple[Any, ...],
           view: status.MasterView | None,
           source: replysource.Source = replysource.KERNEL_CHOICE) -> None:
    """Answer one datagram already received from `peer`, from `source` (what
    replysource.receive gave); never raises OSError."""
    reply = reply_for(name, data)
    if reply is None or loops_back(peer, view):
        return
    try:
        replysource.send(sock, reply, peer, source)
    except OSError:
        pass        # EAGAIN (dropped), or the peer vanished
