"""A reload that changes what a kept service's socket is set up with, while its
wait = yes server runs (xinetd's readjust, reconfig.c).

- NODELAY and KEEPALIVE are options of the kept socket: set on it, the server and its
  clients go on (replacing the socket once ended them);
- INTERCEPT added: the server reading the service socket itself is ended (xinetd's
  "clear->set"), so that the interceptor checks every later client (the old server
  once answered clients the new only_from refused);
- the datagram destinations the daemon needs to answer from the address asked
  (INTERCEPT on a wildcard-bound dgram service) are asked for when INTERCEPT comes,
  and no longer when it goes (the plain server got ancillary data it never asked for).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_reload import defaults, reload, wait_service_log

SERVER = HELPERS / "reload_options_server.py"


def service(port: int, kind: str, flags: str = "", extra: str = "", idle: int = 20) -> str:
    return (f"service tw\n{{\n\ttype = UNLISTED\n\tsocket_type = {kind}\n\twait = yes\n"
            f"\tport = {port}\n\tuser = root\n\tflags = REUSE {flags}\n"
            f"\tserver = {sys.executable}\n\tserver_args = {SERVER} {kind} {idle}\n"
            f"{extra}}}\n")


def line(conn: socket.socket, data: bytes = b"x\n") -> str:
    conn.sendall(data)
    return conn.recv(200).decode()


def ask(dst: str, port: int, src: str = "127.0.0.1", timeout: float = 10.0) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((src, 0))
        client.connect((dst, port))     # a reply from another address never arrives
        client.settimeout(timeout)
        client.send(b"hi")
        try:
            return client.recv(200).decode()
        except TimeoutError:
            return None


def test_nodelay_and_keepalive_are_set_on_the_kept_socket(daemons: DaemonFactory,
                                                          tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service(port, "stream"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
        before = line(first)
        assert before.endswith("nodelay=0 keepalive=0\n"), before
        pid = before.split()[0]
        reload(daemon, defaults(tmp_path) + service(port, "stream", "NODELAY KEEPALIVE"), 1)
        assert line(first).startswith(pid)          # the server and its client go on
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert line(second) == f"{pid} nodelay=1 keepalive=1\n"
    assert "Sending signal" not in daemon.log()


def test_adding_intercept_ends_the_server_that_reads_the_socket_itself(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service(port, "dgram"))
    assert (ask("127.0.0.1", port) or "").startswith("pid=")
    reload(daemon, defaults(tmp_path) + service(port, "dgram", "INTERCEPT",
                                                "\tonly_from = 127.0.0.1\n"), 1)
    wait_service_log(tmp_path, r"EXIT: tw signal=15")
    # Refused by the new only_from, checked by the interceptor now.
    assert ask("127.0.0.1", port, src="127.0.0.2", timeout=2) is None
    wait_service_log(tmp_path, r"FAIL: tw address from=::ffff:127\.0\.0\.2")
    assert (ask("127.0.0.1", port) or "").startswith("pid=")


def test_intercept_added_answers_from_the_address_asked(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    # Bound to every address: the first datagram, sent to 127.0.0.5 from a socket
    # connected there, must be answered from 127.0.0.5.
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service(port, "dgram"))
    reload(daemon, defaults(tmp_path) + service(port, "dgram", "INTERCEPT"), 1)
    assert (ask("127.0.0.5", port) or "").startswith("pid=")


def test_intercept_removed_gives_the_server_a_socket_without_ancillary_data(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service(port, "dgram", "INTERCEPT",
                                                               idle=1))
    assert (ask("127.0.0.1", port) or "").startswith("pid=")
    wait_service_log(tmp_path, r"EXIT: tw status=0")   # its server ended (idle)
    reload(daemon, defaults(tmp_path) + service(port, "dgram", idle=1), 1)
    reply = ask("127.0.0.1", port)
    assert reply is not None and reply.endswith(" cmsgs=0"), reply
