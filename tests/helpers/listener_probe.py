"""A server that reports what it finds on fd 0: the socket the daemon handed over.

    listener_probe.py report        one JSON line on fd 1: family, type, peer, TCP_NODELAY,
                                    SO_KEEPALIVE of fd 0, and REMOTE_HOST; then exit 0
    listener_probe.py dgram         read one datagram from fd 0 (a dgram wait = yes service
                                    socket) and send the same report back to its sender
    listener_probe.py packet PATH   read one packet from fd 0 (a raw or datagram service
                                    socket, wait = yes) and write a JSON record of it to PATH

Standard library only.
"""

import json
import os
import socket
import sys


def describe(sock: socket.socket, peer: object) -> bytes:
    tcp = sock.type == socket.SOCK_STREAM and sock.proto in (0, socket.IPPROTO_TCP)
    out = {
        "family": int(sock.family),
        "type": int(sock.type),
        "peer": peer,
        "nodelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) if tcp else None,
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "remote_host": os.environ.get("REMOTE_HOST"),
    }
    return (json.dumps(out) + "\n").encode()


def report() -> None:
    sock = socket.socket(fileno=0)
    try:
        try:
            peer = list(sock.getpeername())
        except OSError:
            peer = None
        os.write(1, describe(sock, peer))
    finally:
        sock.detach()


def dgram() -> None:
    sock = socket.socket(fileno=0)
    try:
        _, addr = sock.recvfrom(65535)
        sock.sendto(describe(sock, list(addr)), addr)
    finally:
        sock.detach()


def packet(path: str) -> None:
    sock = socket.socket(fileno=0)
    try:
        data, addr = sock.recvfrom(65535)
    finally:
        sock.detach()
    record = {"length": len(data), "data": data.hex(), "addr": list(addr),
              "remote_host": os.environ.get("REMOTE_HOST")}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.rename(tmp, path)


def main() -> int:
    if sys.argv[1:2] == ["report"]:
        report()
    elif sys.argv[1:2] == ["dgram"]:
        dgram()
    elif sys.argv[1:2] == ["packet"] and len(sys.argv) == 3:
        packet(sys.argv[2])
    else:
        os.write(2, b"usage: listener_probe.py report | dgram | packet PATH\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
