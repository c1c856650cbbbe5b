"""The demo configuration of README's Quick start serves what its comments promise.

Its fixed ports are replaced by free ones, and its FILE log by a file, so the test never
depends on a fixed port; everything else is the shipped text.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.conftest import DaemonFactory
from tests.daemon import free_port

DEMO = Path(__file__).resolve().parents[2] / "etc" / "demo" / "xinetd.conf"


def _recv_all(conn: socket.socket, limit: int = 65536) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_demo_configuration_serves(daemons: DaemonFactory, tmp_path: Path) -> None:
    text = DEMO.read_text()
    ports = {int(p) for p in re.findall(r"port\s*=\s*(\d+)", text)}
    ports |= {int(p) for p in re.findall(r"redirect\s*=\s*\S+\s+(\d+)", text)}
    mapping = {old: free_port() for old in sorted(ports)}
    for old, new in mapping.items():
        text = re.sub(rf"\b{old}\b", str(new), text)
    text = text.replace("FILE /dev/stderr", f"FILE {tmp_path / 'services.log'}")
    daemon = daemons.start_config(text)
    services = len(re.findall(r"^service ", text, re.M))
    assert f"Started working: {services} available services" in daemon.log()

    def connect(demo_port: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", mapping[demo_port]), timeout=10)

    for demo_port in (20007, 20008):  # echo, and the redirect to it
        with connect(demo_port) as conn:
            conn.sendall(b"ping\n")
            conn.shutdown(socket.SHUT_WR)
            assert _recv_all(conn) == b"ping\n"
    with connect(20100) as conn:
        assert _recv_all(conn) == b"Hello from pyxinetd\n"
    with connect(20101) as conn:
        assert b"UTC" in _recv_all(conn)
    with connect(20013) as conn:
        assert _recv_all(conn).endswith(b"\r\n")
    with connect(20037) as conn:
        assert len(_recv_all(conn)) == 4
    with connect(20098) as conn:
        listing = _recv_all(conn).decode()
        assert "echo-stream" in listing and "hello" in listing
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.sendto(b"datagram", ("127.0.0.1", mapping[20007]))
        assert udp.recvfrom(100)[0] == b"datagram"
