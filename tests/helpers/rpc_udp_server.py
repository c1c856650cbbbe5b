"""A dgram wait=yes RPC-style server: answers the datagrams queued on fd 0, then exits.

It reads each datagram and sends back `udp-rpc <the datagram>`; after 0.5 s without
a new datagram it exits, as a wait=yes server does, so the service resumes.
"""

import socket
import sys

sock = socket.socket(fileno=0)
sock.settimeout(0.5)
try:
    while True:
        try:
            data, peer = sock.recvfrom(4096)
        except TimeoutError:
            break
        sock.sendto(b"udp-rpc " + data, peer)
finally:
    sock.detach()
sys.exit(0)
