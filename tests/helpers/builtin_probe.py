"""Client for the internal-services oracle test: talks to every builtin, prints JSON.

Usage: builtin_probe.py HOST '{"echo": [tcp_port, udp_port], ...}'
The same requests go to the real xinetd (inside its own network namespace) and to
pyxinetd's builtins; the test compares the two JSON documents. Bytes are hex-encoded.
"""

from __future__ import annotations

import json
import socket
import sys
import time

DEADLINE = 20.0


def connect(host: str, port: int) -> socket.socket:
    end = time.monotonic() + DEADLINE
    while True:
        try:
            return socket.create_connection((host, port), timeout=DEADLINE)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def wait_until_up(host: str, port: int) -> None:
    """The daemon binds every service before serving: one accepting port is enough."""
    connect(host, port).close()


def read_all(s: socket.socket, limit: int | None = None) -> bytes:
    data = b""
    while limit is None or len(data) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data if limit is None else data[:limit]


def stream(host: str, port: int, send: bytes, limit: int | None = None,
           shut: bool = True) -> bytes:
    with connect(host, port) as s:
        if send:
            s.sendall(send)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return read_all(s, limit)


def dgram(host: str, port: int, payloads: list[bytes]) -> list[bytes]:
    """One reply per payload; a request that gets no answer is sent again (UDP)."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(1.0)
        for p in payloads:
            for attempt in range(10):
                u.sendto(p, (host, port))
                try:
                    replies.append(u.recv(65536))
                    break
                except TimeoutError:
                    print(f"no reply from port {port} to {p[:8]!r}, attempt {attempt}",
                          file=sys.stderr)
            else:
                raise TimeoutError(f"no reply from port {port}")
    return replies


def main() -> None:
    host, ports = sys.argv[1], json.loads(sys.argv[2])
    echo_payload = b"hello\r\n" * 100 + bytes(range(256)) * 40
    out: dict[str, object] = {}
    # Datagrams first: xinetd sometimes loses a dgram request while a forked stream
    # builtin (echo, chargen) of a previous request exits. daytime does not fork.
    wait_until_up(host, ports["daytime"][0])
    out["echo_dgram"] = [r.hex() for r in dgram(host, ports["echo"][1],
                                                [b"ping", b"a" * 3000, b"\x00\xff"])]
    out["chargen_dgram"] = [r.hex() for r in dgram(host, ports["chargen"][1], [b"x"] * 9)]
    out["daytime_dgram"] = [r.hex() for r in dgram(host, ports["daytime"][1], [b"?"])]
    out["time_dgram"] = [r.hex() for r in dgram(host, ports["time"][1], [b"?"])]
    out["echo_stream"] = stream(host, ports["echo"][0], echo_payload).hex()
    out["chargen_stream"] = stream(host, ports["chargen"][0], b"", 74 * 400,
                                   shut=False).hex()
    out["daytime_stream"] = stream(host, ports["daytime"][0], b"", shut=False).hex()
    out["time_stream"] = stream(host, ports["time"][0], b"", shut=False).hex()
    out["now"] = time.time()
    mux = ports["tcpmux"][0]
    out["tcpmux_unknown"] = stream(host, mux, b"nope\r\n", shut=False).hex()
    out["tcpmux_plus"] = stream(host, mux, b"PLUS\r\n", shut=False).hex()
    out["tcpmux_short"] = stream(host, mux, b"\r\n", shut=False).hex()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
