"""A server that sends back its environment, in order, as a JSON list of "NAME=value".

    env_probe.py stream       write it on fd 1 (a stream wait = no connection)
    env_probe.py wait-stream  accept one connection on fd 0 (the listening socket of a
                              stream wait = yes service) and write it there
    env_probe.py dgram        read one datagram from fd 0 (a dgram wait = yes service
                              socket) and send it to the datagram's sender
    env_probe.py relay        read one datagram from fd 0 (the socket pair of a dgram
                              wait = no server) and send it back there

Standard library only. The order is the one execve received (/proc/self/environ).
"""

import json
import os
import sys


def environment() -> bytes:
    with open("/proc/self/environ", "rb") as f:
        entries = [e.decode(errors="replace") for e in f.read().split(b"\0") if e]
    return (json.dumps(entries) + "\n").encode()


def main() -> int:
    mode = sys.argv[1:2]
    if mode == ["stream"]:
        os.write(1, environment())
        return 0
    # Imported only now: `stream` needs no extension module, so it works under an
    # interpreter that cannot find its lib-dynload (no PATH to locate itself by).
    import socket

    if mode == ["wait-stream"]:
        listener = socket.socket(fileno=0)
        conn, _ = listener.accept()
        conn.sendall(environment())
        conn.close()
        listener.detach()
    elif mode == ["dgram"]:
        sock = socket.socket(fileno=0)
        _, sender = sock.recvfrom(65535)
        sock.sendto(environment(), sender)
        sock.detach()
    elif mode == ["relay"]:
        sock = socket.socket(fileno=0)
        sock.recv(65535)
        sock.send(environment())
        sock.detach()
    else:
        os.write(2, b"usage: env_probe.py stream | wait-stream | dgram | relay\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
