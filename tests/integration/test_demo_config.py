"""The demo configuration of README's Quick start serves what its comments promise.

Its fixed ports are replaced by free ones, and its FILE log by a file, so the test never
depends on a fixed port; everything else is the shipped text.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
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


def _on_free_ports(text: str) -> tuple[str, dict[int, int]]:
    ports = {int(p) for p in re.findall(r"port\s*=\s*(\d+)", text)}
    ports |= {int(p) for p in re.findall(r"redirect\s*=\s*\S+\s+(\d+)", text)}
    mapping = {old: free_port() for old in sorted(ports)}
    for old, new in mapping.items():
        text = re.sub(rf"\b{old}\b", str(new), text)
    return text, mapping


def test_demo_configuration_serves(daemons: DaemonFactory, tmp_path: Path) -> None:
    text, mapping = _on_free_ports(DEMO.read_text())
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


def test_demo_log_on_stderr_redirected_to_a_file_keeps_every_line(tmp_path: Path) -> None:
    # The Quick start's command with `2> FILE`: the daemon's lines (fd 2, no O_APPEND)
    # and the services' `FILE /dev/stderr` lines go to one file; none overwrites another.
    text, mapping = _on_free_ports(DEMO.read_text())
    conf = tmp_path / "demo.conf"
    conf.write_text(text)
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while "Started working" not in err_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.05)
        for demo_port in (20013, 20100, 20037):
            with socket.create_connection(("127.0.0.1", mapping[demo_port]), timeout=10) as conn:
                _recv_all(conn)
        deadline = time.monotonic() + 10
        while "EXIT: hello" not in err_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    lines = err_path.read_text().splitlines()
    expected = [r"NOTICE: Started working: \d+ available services", r": START: daytime pid=0 ",
                r": START: hello pid=\d+ ", r": EXIT: hello status=0 ", r": START: time pid=0 ",
                r"WARNING: Exiting\.\.\.$"]
    for pattern in expected:
        assert sum(1 for line in lines if re.search(pattern, line)) == 1, (pattern, lines)
    assert all(re.match(r"\d\d/\d\d/\d\d@\d\d:\d\d:\d\d[ :]", line) for line in lines), lines
