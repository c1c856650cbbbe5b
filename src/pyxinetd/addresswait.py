"""Services whose `bind` address is not on the host yet: bound when it appears.

xinetd deactivates a service when its bind address does not exist at start-up
(EADDRNOTAVAIL after the bind retries), so a daemon started before the network is
configured serves nothing on that address until it is restarted or reloaded
(openSUSE/xinetd issue 13). pyxinetd logs the same failed binds, then keeps such a service waiting
(State.AWAITING_ADDRESS) and tries its bind again whenever the kernel reports a new
address: an rtnetlink socket subscribed to the IPv4 and IPv6 address groups, and to the
IPv4 route group, watched by the loop like any other descriptor. Nothing polls: without
such an event the services just wait; the socket exists only while some service waits.

Why the routes: an IPv4 bind is allowed when the address has a route of type `local`
(the kernel looks the address up in its routing tables, not in the address list), and
the kernel announces a new IPv4 address *before* it adds that route (net/ipv4/devinet.c,
`__inet_insert_ifa`: "Send message first, then call notifier"). A bind made as soon as
the RTM_NEWADDR arrives can still fail with EADDRNOTAVAIL; the RTM_NEWROUTE of the local
route, sent once it is in the table, is the moment it succeeds. The same message makes
an address served through a local route alone (`ip route add local ADDR dev lo`, the
"AnyIP" set-up) activate its service. IPv6 binds check the address list itself, and a
tentative address is announced again once duplicate address detection clears it.

Any such message (or a lost notification, ENOBUFS) triggers one bind attempt per
waiting service; an attempt that still finds no address is silent.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

from pyxinetd.log import strerror
from pyxinetd.loop import READ, Loop
from pyxinetd.service import ServiceRuntime

# <linux/rtnetlink.h>
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTN_LOCAL = 2
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
# struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG_TYPE_OFFSET = 7
_RECV_SIZE = 65536


def has_new_address(data: bytes) -> bool:
    """True when the netlink datagram `data` holds an RTM_NEWADDR message, or an
    RTM_NEWROUTE message for a route of type `local` (see the module's docstring)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if kind == RTM_NEWADDR:
            return True
        if length < _NLMSGHDR.size:
            return False
        type_at = offset + _NLMSGHDR.size + _RTMSG_TYPE_OFFSET
        if (kind == RTM_NEWROUTE and type_at < min(offset + length, len(data))
                and data[type_at] == RTN_LOCAL):
            return True
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return False


class AddressWatch:
    """Calls `on_new_address()` (once per readable turn) when an address or a local
    route is added."""

    def __init__(self, loop: Loop, on_new_address: Callable[[], None]) -> None:
        self._loop = loop
        self._on_new_address = on_new_address
        self._sock: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        """Open and watch the rtnetlink socket; raises OSError when the kernel refuses."""
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop.set_events(sock, READ, self._on_readable)

    def stop(self) -> None:
        if self._sock is not None:
            self._loop.unregister(self._sock)
            self._sock.close()
            self._sock = None

    def _on_readable(self, mask: int) -> None:
        sock = self._sock
        if sock is None:
            return
        added = False
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                # ENOBUFS: notifications were dropped; one of them may have been ours.
                if err.errno == errno.ENOBUFS:
                    added = True
                    continue
                raise
            if not data:
                break
            added = added or has_new_address(data)
        if added:
            self._on_new_address()


class AddressWait:
    """Keeps the watch open exactly while some service waits for its address.

    `waiting()` lists the runtimes to try (the master's services in
    State.AWAITING_ADDRESS with no attempt in flight); `attempt(rt)` binds one again.
    """

    def __init__(self, loop: Loop, waiting: Callable[[], list[ServiceRuntime]],
                 attempt: Callable[[ServiceRuntime], None], warn: Callable[[str], None]) -> None:
        self._waiting = waiting
        self._attempt = attempt
        self._warn = warn
        self._watch = AddressWatch(loop, self._retry)
        self._broken = False

    def can_wait(self) -> bool:
        """Whether a service may wait: the watch runs or can be started."""
        if self._watch.running:
            return True
        if self._broken:
            return False
        try:
            self._watch.start()
        except OSError as err:
            self._broken = True
            self._warn(f"cannot watch for new addresses ({strerror(err)}); services whose "
                       f"bind address is missing stay deactivated")
            return False
        return True

    def refresh(self) -> None:
        """Close the watch when nothing waits any more."""
        if self._watch.running and not self._waiting():
            self._watch.stop()

    def close(self) -> None:
        self._watch.stop()

    def _retry(self) -> None:
        for rt in self._waiting():
            self._attempt(rt)
        self.refresh()
