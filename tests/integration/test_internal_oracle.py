"""Builtins byte for byte against the real xinetd 2.3.15.3.

tests/helpers/builtin_probe.py sends the same requests to xinetd (run inside its own
network namespace, `unshare -n`, so it never binds on the host's network) and to our
builtins on a Loop in this process, and both answers are compared. Time-dependent
replies (daytime, time) are compared by format; xinetd's trailing NUL after the tcpmux
replies is the one documented difference.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from internal_support import DEADLINE, LoopThread, make_service

import oracle
from pyxinetd import internal
from pyxinetd.config.model import ServiceConfig, SocketType
from pyxinetd.internal import chargen, tcpmux

pytestmark = pytest.mark.oracle

PROBE = Path(__file__).resolve().parents[1] / "helpers" / "builtin_probe.py"
DAYTIME = re.compile(r"^\d\d [A-Z]{3} \d{4} \d\d:\d\d:\d\d \S+\r\n$")

XINETD_CONF = """
defaults
{
}
"""
for _name in ("echo", "chargen", "daytime", "time"):
    for _type, _wait in (("stream", "no"), ("dgram", "yes")):
        XINETD_CONF += f"""
service {_name}
{{
    type = INTERNAL
    id = {_name}-{_type}
    socket_type = {_type}
    wait = {_wait}
    user = root
}}
"""
XINETD_CONF += """
service tcpmux
{
    type = INTERNAL
    socket_type = stream
    wait = no
    user = root
}
service plus
{
    type = TCPMUXPLUS UNLISTED
    socket_type = stream
    wait = no
    user = root
    server = /bin/echo
    server_args = from the server
}
"""
STANDARD_PORTS = {"echo": [7, 7], "chargen": [19, 19], "daytime": [13, 13],
                  "time": [37, 37], "tcpmux": [1, 1]}


def run_probe(host: str, ports: dict[str, list[int]]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(PROBE), host, json.dumps(ports)],
                          capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_xinetd_probe(xinetd: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "xinetd.conf"
        conf.write_text(XINETD_CONF)
        script = (f'ip link set lo up; "{xinetd}" -dontfork -f "{conf}" '
                  f'-filelog "{tmp}/log" & pid=$!; '
                  f'"{sys.executable}" "{PROBE}" 127.0.0.1 \'{json.dumps(STANDARD_PORTS)}\'; '
                  f'status=$?; kill $pid; wait $pid; exit $status')
        done = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True,
                              text=True, timeout=90, check=False, start_new_session=True)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def run_our_probe() -> dict[str, Any]:
    lt = LoopThread()
    ports: dict[str, list[int]] = {}
    for name in ("echo", "chargen", "daytime", "time"):
        svc = make_service(name)
        tcp = lt.listen(lambda loop, conn, peer, svc=svc: internal.start_stream(
            loop, svc, conn, peer, lambda: None))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        dsvc = make_service(name, socket_type=SocketType.DGRAM)
        lt.add_socket(udp, lambda mask, s=udp, d=dsvc: internal.handle_datagram(d, s))
        ports[name] = [tcp[1], udp.getsockname()[1]]
    plus = make_service("plus", types=frozenset({"TCPMUXPLUS", "UNLISTED"}))

    def lookup(name: str) -> ServiceConfig | None:
        return plus if name.lower() == "plus" else None

    def launch(service: ServiceConfig, conn: socket.socket, peer: Any) -> None:
        # What the daemon's launch of an admitted client and the spawned /bin/echo
        # would write.
        tcpmux.acknowledge(service, conn)
        conn.settimeout(DEADLINE)
        conn.sendall(b"from the server\n")
        conn.close()
    mux = make_service("tcpmux")
    ports["tcpmux"] = [lt.listen(lambda loop, conn, peer: internal.start_tcpmux(
        loop, mux, conn, peer, lookup, launch, lambda: None))[1]]
    chargen.DATAGRAM_CYCLE.position = 0     # a fresh daemon, as xinetd is
    with lt:
        return run_probe("127.0.0.1", ports)


@pytest.fixture(scope="module")
def answers() -> tuple[dict[str, Any], dict[str, Any]]:
    xinetd = oracle.require_xinetd()
    return run_xinetd_probe(xinetd), run_our_probe()


@pytest.mark.parametrize("key", ["echo_stream", "echo_dgram", "chargen_stream",
                                 "chargen_dgram", "tcpmux_short"])
def test_same_bytes(answers: tuple[dict[str, Any], dict[str, Any]], key: str) -> None:
    theirs, ours = answers
    assert theirs[key] == ours[key]


def test_tcpmux_replies_differ_only_by_xinetds_nul(
        answers: tuple[dict[str, Any], dict[str, Any]]) -> None:
    theirs, ours = answers
    assert bytes.fromhex(theirs["tcpmux_unknown"]) == b"-Service name not found\r\n\x00"
    assert bytes.fromhex(ours["tcpmux_unknown"]) == b"-Service name not found\r\n"
    assert bytes.fromhex(theirs["tcpmux_plus"]) == b"+Go\r\n\x00from the server\n"
    assert bytes.fromhex(ours["tcpmux_plus"]) == b"+Go\r\nfrom the server\n"


def test_daytime_and_time_formats(answers: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for side in answers:
        for text in (side["daytime_stream"], *side["daytime_dgram"]):
            assert DAYTIME.match(bytes.fromhex(text).decode()), text
        for raw in (side["time_stream"], *side["time_dgram"]):
            value = int(raw, 16)
            assert len(raw) == 8
            # Within a minute of when the probe ran: the format, not the clock, is tested.
            assert abs(value - 2208988800 - side["now"]) < 60
