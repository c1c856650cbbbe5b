"""A dgram/nowait client's own socket: its server keeps it across a cps pause.

A cps trip closes the service socket for its pause, as in xinetd: the port looks closed
to new clients (ICMP port unreachable). The clients whose servers run keep them: when a
server is started, its client gets a UDP socket of its own, bound to the address and
port the client sent to (SO_REUSEADDR, as the service socket has) and connected to the
client. Linux prefers a connected socket to the service socket for that client's
datagrams, and for those alone, whether the service socket is open, closed for a pause
or bound again after it; the server's replies leave from it, from the address the
client asked. Between its bind and its connect the socket takes any datagram sent to
that address, so what it reads is checked against its client's address: another
sender's datagram is handled as if the service socket had read it (pyxinetd.dgramrelay).

Each costs the master one descriptor for as long as its server runs. Together they may
hold at most an eighth of the daemon's descriptor limit (`budget`), within the half
in-loop sessions and relays may hold in all (pyxinetd.loopshare), so that however many
clients come, the services keep descriptors to serve with; a client beyond it, or one
for whom no socket can be made, is served through the service socket as before.
"""

from __future__ import annotations

import resource
import socket
import sys

from pyxinetd import replysource
from pyxinetd.listener import is_wildcard

# The share of the daemon's descriptor limit the clients' sockets may hold together: an
# eighth, a quarter of the half that relays and in-loop sessions share (loopshare).
DESCRIPTOR_SHARE = 8


def budget() -> int:
    """How many clients' sockets the master may hold at once."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    return soft // DESCRIPTOR_SHARE


def local_address(service: socket.socket, source: replysource.Source
                  ) -> tuple[object, ...] | None:
    """The address and port (in `service`'s family) a client's datagram was sent to:
    the service socket's own for one bound to an address, the datagram's destination
    (`source`, from replysource.receive) on a wildcard bind. None when it is not known
    (an IPv6 multicast destination, which is no source either; no destination
    reported, on a wildcard socket where IP_PKTINFO/IPV6_RECVPKTINFO is off)."""
    name = service.getsockname()
    host, port = str(name[0]), int(name[1])
    if not is_wildcard(host):
        return tuple(name)
    for level, kind, data in source:
        if level == socket.IPPROTO_IP and kind == replysource.IP_PKTINFO:
            v4 = socket.inet_ntop(socket.AF_INET, data[4:8])
            if service.family == socket.AF_INET6:
                return (f"::ffff:{v4}", port, 0, 0)
            return (v4, port)
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO \
                and service.family == socket.AF_INET6:
            # The interface index matters to a link-local address only (0 otherwise).
            return (socket.inet_ntop(socket.AF_INET6, data[:16]), port, 0,
                    int.from_bytes(data[16:20], sys.byteorder))
    return None


def open_for(service: socket.socket, client: tuple[object, ...],
             local: tuple[object, ...]) -> socket.socket:
    """A non-blocking socket of `service`'s family bound to `local` and connected to
    `client` (both in that family). Raises OSError."""
    sock = socket.socket(service.family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if service.family == socket.AF_INET6:
            # As the service socket: dual-stack to answer an IPv4 client from ::ffff:.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, service.getsockopt(
                socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
        sock.bind(local)
        sock.connect(client)
    except OSError:
        sock.close()
        raise
    return sock
