"""Replies on a wildcard-bound datagram socket leave from the request's destination.

A socket bound to 0.0.0.0 or :: sends from whatever source the kernel picks for the
route back, which on a host with several addresses need not be the address the client
asked: a client that connect()ed its UDP socket, or a firewall or NAT keyed on that
address, then drops the reply. As mature UDP servers do, the listener asks the kernel
for each datagram's destination (IP_PKTINFO, IPV6_RECVPKTINFO; `enable`), `receive`
turns it into the ancillary data that names the reply's source, and `send` passes it
back with sendmsg.

What Linux gives (checked on a dual-stack socket):

- IPv6 datagrams: IPV6_PKTINFO with the header's destination, the one to answer from
  (a multicast destination is no source: the kernel picks one instead).
- IPv4 datagrams on an IPv4 socket: IP_PKTINFO; its `ipi_spec_dst` is the header's
  destination for a unicast request and the receiving interface's address for a
  broadcast or multicast one, the source to answer from in every case.
- IPv4 datagrams on a dual-stack IPv6 socket: IPV6_PKTINFO with the v4-mapped header
  destination is enough for unicast, but for a broadcast it is the broadcast address,
  which cannot be a source (sendmsg fails). The socket therefore also gets IP_PKTINFO,
  which Linux honours on an IPv6 socket for its IPv4 traffic, and its `ipi_spec_dst` is
  used, sent back as IP_PKTINFO (accepted on the IPv6 socket for a v4-mapped peer).

A socket bound to one address needs none of this: it can only send from that address.
"""

from __future__ import annotations

import ipaddress
import socket
import weakref

# Python 3.11's socket module lacks IP_PKTINFO (Linux: 8).
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_V4_INFO = 12       # struct in_pktinfo: ifindex, spec_dst, addr
_V6_INFO = 20       # struct in6_pktinfo: addr, ifindex
# Receive buffers sized once: what each kind of socket can be given per datagram.
SPACE_V4 = socket.CMSG_SPACE(_V4_INFO)
SPACE_V6 = socket.CMSG_SPACE(_V6_INFO)
SPACE_DUAL = SPACE_V6 + SPACE_V4
_NO_INDEX = bytes(4)

# The ancillary data to send a reply with; empty: the kernel picks the source.
Source = tuple[tuple[int, int, bytes], ...]
KERNEL_CHOICE: Source = ()
# Each socket's buffer size, learnt once (`enable`, or `space` on first use), by
# descriptor; the weak reference tells a socket from a later one given the same
# descriptor. (A WeakKeyDictionary lookup is a Python call per datagram event.)
_rooms: dict[int, tuple[weakref.ref[socket.socket], int]] = {}


def enable(sock: socket.socket, *, v6only: bool) -> int:
    """Ask the kernel for every datagram's destination on the wildcard-bound `sock`;
    the ancillary buffer size `receive` needs. Raises OSError."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        room = SPACE_V6
        if not v6only:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            room = SPACE_DUAL
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        room = SPACE_V4
    _rooms[sock.fileno()] = (weakref.ref(sock), room)
    return room


def space(sock: socket.socket) -> int:
    """The ancillary buffer size for `sock`: 0 for a socket bound to one address, which
    needs no options. A wildcard-bound socket `enable` did not set up (one passed by
    systemd) is set up on its first use."""
    known = _rooms.get(sock.fileno())
    if known is not None and known[0]() is sock:
        return known[1]
    room = _adopt(sock)
    _rooms[sock.fileno()] = (weakref.ref(sock), room)
    return room


def disable(sock: socket.socket) -> None:
    """Stop asking for `sock`'s datagram destinations (enable's undoing: a server now
    reads the socket itself, and gets no ancillary data it did not ask for). Raises
    OSError."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 0)
        if not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 0)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 0)
    # Known as needing none: `space` must not set it up again on the next peek.
    _rooms[sock.fileno()] = (weakref.ref(sock), 0)


def _adopt(sock: socket.socket) -> int:
    try:
        if not ipaddress.ip_address(str(sock.getsockname()[0]).partition("%")[0]
                                    ).is_unspecified:
            return 0
        v6only = sock.family == socket.AF_INET6 and bool(
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
        return enable(sock, v6only=v6only)
    except (OSError, ValueError, IndexError):
        return 0


def receive(sock: socket.socket, size: int, room: int
            ) -> tuple[bytes, tuple[object, ...], Source]:
    """One datagram of at most `size` bytes, its sender and the source to answer it
    from; `room` is `space(sock)`. Raises OSError (BlockingIOError: nothing queued)."""
    if not room:
        data, addr = sock.recvfrom(size, socket.MSG_DONTWAIT)
        return data, tuple(addr), KERNEL_CHOICE
    data, ancillary, _, addr = sock.recvmsg(size, room, socket.MSG_DONTWAIT)
    return data, tuple(addr), reply_source(ancillary)


def reply_source(ancillary: list[tuple[int, int, bytes]]) -> Source:
    """The ancillary data naming the reply's source, from what recvmsg gave."""
    v6: bytes | None = None
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _V4_INFO:
            # ipi_spec_dst, no interface: the route back picks the way out.
            return ((socket.IPPROTO_IP, IP_PKTINFO, _NO_INDEX + data[4:8] + bytes(4)),)
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO \
                and len(data) >= _V6_INFO:
            v6 = data[:_V6_INFO]
    if v6 is None or v6[0] == 0xFF:
        return KERNEL_CHOICE
    if v6[0] == 0xFE and v6[1] & 0xC0 == 0x80:
        # A link-local source is only valid on its own link: keep the interface.
        return ((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6),)
    return ((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6[:16] + _NO_INDEX),)


def send(sock: socket.socket, data: bytes, addr: tuple[object, ...] | None,
         source: Source = KERNEL_CHOICE) -> None:
    """Send `data` to `addr` (None: the socket's peer) from `source`, without waiting.
    Raises OSError; BlockingIOError when the buffer is full."""
    if addr is None:
        sock.send(data, socket.MSG_DONTWAIT)
    elif not source:
        sock.sendto(data, socket.MSG_DONTWAIT, addr)
    else:
        try:
            sock.sendmsg((data,), source, socket.MSG_DONTWAIT, addr)
        except (BlockingIOError, InterruptedError):
            raise
        except OSError:
            # The address left the host since the request came, or a kernel that
            # refuses the option: the kernel's choice beats no reply at all.
            sock.sendto(data, socket.MSG_DONTWAIT, addr)
