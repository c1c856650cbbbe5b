"""A wait = yes server that keeps serving across reloads, reporting what it sees.

    reload_options_server.py stream|dgram [IDLE]

stream: accepts every connection on the listening socket (fd 0), answers each line
with `pid=P nodelay=N keepalive=K` (the options the accepted socket has); dgram:
answers each datagram on the service socket with `pid=P cmsgs=N`, the number of
ancillary messages its recvmsg() got. Either exits after IDLE seconds (default 20)
without a request. Standard library only; every wait bounded.
"""

import os
import select
import socket
import sys
import threading
import time

mode = sys.argv[1]
idle = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
sock = socket.socket(fileno=0)
last = [time.monotonic()]


def report(conn: socket.socket) -> bytes:
    nodelay = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    keepalive = conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    return f"pid={os.getpid()} nodelay={int(bool(nodelay))} keepalive={keepalive}\n".encode()


def serve(conn: socket.socket) -> None:
    conn.settimeout(idle)
    try:
        while conn.recv(4096):
            last[0] = time.monotonic()
            conn.sendall(report(conn))
    except OSError:
        pass
    conn.close()


while time.monotonic() - last[0] < idle:
    ready, _, _ = select.select([sock], [], [], 0.2)
    if not ready:
        continue
    last[0] = time.monotonic()
    if mode == "stream":
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    else:
        data, ancillary, _, addr = sock.recvmsg(65535, 1024)
        sock.sendto(f"pid={os.getpid()} cmsgs={len(ancillary)}".encode(), addr)
sock.detach()
