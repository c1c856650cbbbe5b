"""Internal services served inside the master's loop, without forking.

xinetd forks a child for the stream echo, discard, chargen and tcpmux builtins. Here
every builtin is a small state machine on the master's Loop: non-blocking sockets,
bounded output buffers, writes only on write readiness. A client that stops reading
costs one descriptor and at most OUTPUT_LIMIT bytes; it never delays anyone else.

API used by the master (all functions are called from the loop and never block):

    start_stream(loop, service, conn, peer, on_close, *, view=None, greeting=b"")
        -> Session
        Serve one accepted connection of a stream builtin (echo, discard, chargen,
        daytime, time, servers, services). `conn` becomes the session's property: it is
        made non-blocking and closed when the session ends. `on_close()` is called exactly
        once, when the session ends for any reason (EOF, error, Session.close()).
        `view` is required for `servers` and `services` (see MasterView). `greeting` is
        written before the service's own output: the master passes the rest of the
        `banner` and the `banner_success` file here (banners.py), so their order is kept
        without ever blocking.
        Internal stream services with `wait = yes` are served the same way: the master
        accepts the connection itself (xinetd's forked builtin accepted it instead).

    handle_datagram(service, sock, *, view=None) -> None
        The service's dgram socket is readable: receive one datagram and send at most one
        reply without waiting (dropped on EAGAIN). Never raises OSError. On a
        wildcard-bound socket the reply leaves from the request's destination address.

    datagram_reply(name, data) -> bytes | None
        The reply of the builtin `name` to a datagram the master has already received
        (with replysource.receive, which gives the sender its checks need and the
        address to answer from) and checked with `must_not_answer`; None for no reply
        (discard). The master sends it.

    start_tcpmux(loop, service, conn, peer, lookup, launch, on_close, *, names=None,
                 greeting=b"") -> Session
        RFC 1078 dispatcher. Writes `greeting` (the tcpmux service's banner_success)
        first, then reads the service name line; `lookup(name)` returns the
        TCPMUX/TCPMUXPLUS ServiceConfig with that name (case-insensitive) or None.
        When one is found, the session leaves the loop, `conn` is made blocking again,
        then `launch(service, conn, peer)` is called: from then on `conn` belongs to
        launch, which runs the service's own checks, then for an admitted client sends
        a TCPMUXPLUS service's "+Go\\r\\n" (tcpmux.acknowledge) and the banners and
        starts the server, and closes the master's copy. `on_close()` is called after
        launch returns (or raises). `names()` lists the TCPMUX service names for the
        `help` request; without it `help` is answered like an unknown name.

    start_redirect(loop, service, conn, peer, on_close, on_error, *, greeting=b"")
        -> Session
        (pyxinetd.redirect) TCP relay to service.redirect. Exactly one callback is
        called, once: `on_error(message)` when the target cannot be reached (message =
        the `can't connect to remote host A: ...` program-log text; no TRAFFIC then),
        else `on_close(bytes_in, bytes_out)` at the end (in = client -> target). The
        master should call redirect.resolve_targets(services) at every (re)load so
        that no DNS lookup happens on the serving path.

    None of the callbacks is ever called before the start_* function returns.

    is_builtin(service) -> bool       the service names a builtin this package serves
    must_not_answer(service, peer, view) -> bool   a reply to `peer` could start a loop
    supports(name, socket_type) -> bool

The master counts an open Session as a running instance of its service, keeps it in a
table, and calls Session.close() on shutdown or when the service is removed.
`peer` is the address tuple accept() returned; it is passed back to launch unchanged.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from pyxinetd.config.model import BUILTINS, ServiceConfig, SocketType
from pyxinetd.internal import chargen, clock, dgram, echo, status, tcpmux
from pyxinetd.internal.session import OnClose, Peer, Session
from pyxinetd.internal.status import MasterView, ServerInfo
from pyxinetd.internal.tcpmux import Launch, Lookup
from pyxinetd.loop import Loop

__all__ = [
    "BUILTINS", "Launch", "Lookup", "MasterView", "OnClose", "Peer", "ServerInfo", "Session",
    "datagram_reply", "handle_datagram", "is_builtin", "must_not_answer",
    "start_redirect", "start_stream",
    "start_tcpmux", "supports",
]



def supports(name: str, socket_type: SocketType) -> bool:
    return socket_type in BUILTINS.get(name, frozenset())


def is_builtin(service: ServiceConfig) -> bool:
    return service.is_internal and supports(service.name, service.socket_type)


def start_stream(loop: Loop, service: ServiceConfig, conn: socket.socket, peer: Peer,
                 on_close: OnClose, *, view: MasterView | None = None,
                 greeting: bytes = b"") -> Session:
    """Serve one accepted connection of a stream builtin; see the module docstring."""
    name = service.name
    if name == "echo":
        return echo.EchoSession(loop, conn, on_close, greeting=greeting)
    if name == "discard":
        return echo.DiscardSession(loop, conn, on_close, greeting=greeting)
    if name == "chargen":
        return chargen.ChargenSession(loop, conn, on_close, greeting=greeting)
    if name == "daytime":
        return clock.reply_session(loop, conn, on_close, clock.daytime_text(), greeting)
    if name == "time":
        return clock.reply_session(loop, conn, on_close, clock.time_bytes(), greeting)
    if name in ("servers", "services"):
        if view is None:
            raise ValueError(f"the {name} builtin needs a MasterView")
        return clock.reply_session(loop, conn, on_close, status.report(name, view),
                                   greeting)
    raise ValueError(f"no stream builtin named {name!r}")


def handle_datagram(service: ServiceConfig, sock: socket.socket, *,
                    view: MasterView | None = None) -> None:
    """Receive one datagram on a dgram builtin's socket and reply at most once."""
    dgram.handle(service.name, sock, view)


# The reply to one datagram already received and checked with `must_not_answer`,
# given the builtin's name; None: no reply (discard). Bound directly: it runs before
# every reply a builtin sends.
datagram_reply = dgram.reply_for


def must_not_answer(service: ServiceConfig, peer: Peer, view: MasterView | None) -> bool:
    """Whether the datagram builtin must not answer `peer`: never for discard, which
    does not answer; for the others, `loops_back`."""
    return dgram.must_not_answer(service.name, peer, view)


def start_tcpmux(loop: Loop, service: ServiceConfig, conn: socket.socket, peer: Peer,
                 lookup: Lookup, launch: Launch, on_close: OnClose, *,
                 names: Callable[[], Sequence[str]] | None = None,
                 greeting: bytes = b"", report: Callable[[str], None] | None = None
                 ) -> Session:
    """Run the RFC 1078 dispatcher on one connection; see the module docstring."""
    return tcpmux.TcpmuxSession(loop, conn, peer, lookup, launch, on_close, names=names,
                                greeting=greeting, report=report)


def start_redirect(loop: Loop, service: ServiceConfig, conn: socket.socket, peer: Peer,
                   on_close: Callable[[int, int], None],
                   on_error: Callable[[str], None], *, greeting: bytes = b"") -> Session:
    """Relay the connection to service.redirect; see pyxinetd.redirect."""
    # Imported here: redirect.py builds on internal.session, so a top-level import
    # would be circular.
    from pyxinetd import redirect

    return redirect.start_redirect(loop, service, conn, peer, on_close, on_error,
                                  greeting=greeting)
