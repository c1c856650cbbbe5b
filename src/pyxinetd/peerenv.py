"""`flags = PEERENV`: the client's and the service's addresses in the server's environment.

xinetd gives a server only `REMOTE_HOST` (the client's address, no port); the most asked
for addition is the port (xinetd-org PR 25) and the local end. With this pyxinetd flag a
server also gets the variables of the two conventions servers already read:

- systemd's socket activation: `REMOTE_ADDR`, `REMOTE_PORT`;
- UCSPI (tcpserver, s6-tcpserver): `PROTO=TCP`, `TCPREMOTEIP`, `TCPREMOTEPORT`,
  `TCPLOCALIP`, `TCPLOCALPORT` for TCP, and `TCPREMOTEHOST`, the client's name, when
  its reverse lookup gives one whose forward lookup gives the address back (looked up
  by the dispatcher before the start, without blocking the loop: pyxinetd.dispatch);
  `PROTO=UDP` for UDP (UCSPI names no UDP variables, so only the systemd pair tells the
  sender there).

The values are read from the socket the server gets, so they are what the server would
see itself: `getpeername`/`getsockname`; for a `wait = yes` datagram service, the sender
of the datagram waiting on the socket (read with MSG_PEEK, so it stays for the server);
for a `wait = no` datagram server, whose socket pair cannot tell it, the sender the
dispatcher received the datagram from. An intercepted `wait = yes` server
(pyxinetd.intercept) gets a private socket, but the variables are read from the service
socket, as for the same server without INTERCEPT.
A `wait = yes` stream server gets the listening socket and no client yet: only `PROTO`
and the local pair. IPv4 clients of a dual-stack socket appear as plain IPv4 (as on the
connection the server gets), not `::ffff:a.b.c.d`. Variables the socket cannot tell are
left out, never set empty.
"""

from __future__ import annotations

import ipaddress
import socket

PEERENV_FLAG = "PEERENV"


def _host(address: object) -> tuple[str, int] | None:
    if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)):
        return None
    host, port = address[0], address[1]
    try:
        mapped = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        host = str(mapped.ipv4_mapped)
    return host, int(port)


def _remote(sock: socket.socket, kind: int) -> tuple[str, int] | None:
    try:
        return _host(sock.getpeername())
    except OSError:
        pass
    if kind != socket.SOCK_DGRAM:
        return None  # a listening socket: no client yet
    try:
        _, sender = sock.recvfrom(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return None
    return _host(sender)


def peer_environment(sock: socket.socket, remote_name: str | None = None,
                     sender: object = None) -> tuple[str, ...]:
    """The PEERENV variables for a server started on `sock` (TCP or UDP; else none);
    `remote_name`: the client's confirmed name, for TCPREMOTEHOST; `sender`: the
    address of the datagram that started the server when the socket cannot tell it
    (dgram wait = no: the server talks through a socket pair the master relays)."""
    kind = sock.type
    if kind == socket.SOCK_STREAM and sock.proto in (0, socket.IPPROTO_TCP):
        proto = "TCP"
    elif kind == socket.SOCK_DGRAM and sock.proto in (0, socket.IPPROTO_UDP):
        proto = "UDP"
    else:
        return ()
    out = [f"PROTO={proto}"]
    try:
        local = _host(sock.getsockname())
    except OSError:
        local = None
    if proto == "TCP" and local is not None:
        out += [f"TCPLOCALIP={local[0]}", f"TCPLOCALPORT={local[1]}"]
    remote = _remote(sock, kind)
    if remote is None and sender is not None:
        remote = _host(sender)
    if remote is not None:
        if proto == "TCP":
            out += [f"TCPREMOTEIP={remote[0]}", f"TCPREMOTEPORT={remote[1]}"]
            if remote_name:
                out.append(f"TCPREMOTEHOST={remote_name}")
        out += [f"REMOTE_ADDR={remote[0]}", f"REMOTE_PORT={remote[1]}"]
    return tuple(out)
