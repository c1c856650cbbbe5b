"""wait = yes server for the INTERCEPT tests: serve COUNT requests on the socket on fd 0,
then exit; give up after IDLE seconds without one (default 10: every run is bounded).

    intercept_server.py COUNT [IDLE [env]]

stream: accept a connection, send `pid=<pid> peer=<address> local=<address>` and a
newline, echo one line back, close. dgram: answer each datagram with
`pid=<pid> peer=<address> got=<data>`. The addresses are the ones this server sees,
so a test can tell a relayed client (the loopback address) from a direct one. With
`env`, the greeting and each answer end with the PEERENV variables this server got
(` NAME=value` each, those set only)."""

import os
import socket
import sys

count = int(sys.argv[1])
idle = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
PEERENV = ("PROTO", "TCPLOCALIP", "TCPLOCALPORT", "TCPREMOTEIP", "TCPREMOTEPORT",
           "TCPREMOTEHOST", "REMOTE_ADDR", "REMOTE_PORT")
told = "".join(f" {name}={os.environ[name]}" for name in PEERENV if name in os.environ) \
    if sys.argv[3:4] == ["env"] else ""
sock = socket.socket(fileno=0)
sock.settimeout(idle)
try:
    for _ in range(count):
        if sock.type == socket.SOCK_STREAM:
            conn, peer = sock.accept()
            with conn:
                conn.settimeout(idle)
                local = conn.getsockname()[0]
                conn.sendall(f"pid={os.getpid()} peer={peer[0]} local={local}{told}\n".encode())
                line = conn.recv(4096)
                conn.sendall(line)
        else:
            data, peer = sock.recvfrom(65535)
            sock.sendto(f"pid={os.getpid()} peer={peer[0]} got={data.decode()}{told}".encode(),
                        peer)
except OSError:
    pass
finally:
    sock.detach()
