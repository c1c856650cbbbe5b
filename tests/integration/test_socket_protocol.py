"""A service's socket is made with its `protocol`, as xinetd makes it.

`socket_type = stream` with `protocol = icmp` is a socket the kernel refuses: xinetd
logs `socket creation failed (Protocol not supported ...)` at start and deactivates the
service; pyxinetd asks the kernel while loading and rejects it there, naming its file
and line (it used to listen on TCP instead). `protocol = sctp` over a stream socket is
SCTP, not TCP: created where the kernel has SCTP, refused alike where it has not. The
real xinetd 2.3.15.3 runs the same file; both serve the same services.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, namespace_problem
from tests.integration.test_dispatch import read_all
from tests.oracle import require_xinetd, run_xinetd_dump

STARTED = re.compile(r"Started working: .*")
REFUSED = re.compile(r"ERROR: service over-(\w+): protocol \1 does not carry socket_type "
                     r"stream \(the kernel refuses the pair: Protocol not supported\) "
                     r"- service disabled \[file=\S+\] \[line=\d+\]")


def _service(name: str, port: int, protocol: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
            f"\tsocket_type = stream\n\tprotocol = {protocol}\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = {name}\n}}\n")


def _sctp_available() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(namespace_problem("mount") is not None,
                    reason=str(namespace_problem("mount")))
def test_the_protocol_makes_the_socket_as_in_xinetd(daemons: DaemonFactory,
                                                    tmp_path: Path) -> None:
    icmp, sctp, tcp = free_port(), free_port(), free_port()
    text = (_service("over-icmp", icmp, "icmp") + _service("over-sctp", sctp, "sctp")
            + _service("over-tcp", tcp, "tcp"))
    daemon = daemons.start_config(text)
    with socket.create_connection(("127.0.0.1", tcp), timeout=10) as conn:
        assert read_all(conn) == b"over-tcp\n"
    # Nothing listens on TCP for the other two.
    for port in (icmp, sctp):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
    log = daemon.log()
    refused = [m.group(1) for m in REFUSED.finditer(log)]
    if _sctp_available():
        assert refused == ["icmp"], log
        assert "Started working: 2 available services" in log
    else:
        assert refused == ["icmp", "sctp"], log
        assert "Started working: 1 available service" in log

    require_xinetd()
    conf = tmp_path / "xinetd.conf"
    conf.write_text(text)
    run = run_xinetd_dump(conf, timeout=20.0)
    assert run.started, run
    assert "socket creation failed (Protocol not supported (errno = 93)). service = " \
        "over-icmp" in run.log, run.log
    assert STARTED.findall(log) == STARTED.findall(run.log), (log, run.log)
