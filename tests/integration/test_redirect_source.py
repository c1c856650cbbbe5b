"""`redirect_source = ADDRESS`: the local address a redirect connects from (xinetd-org
issue 33). Real daemon, a real target socket that reports who connected."""

from __future__ import annotations

import socket

from tests.daemon import DaemonFactory, free_port

TIMEOUT = 10.0


def service(port: int, target: int, source: str) -> str:
    return f"""service relay
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tuser = root
\tport = {port}
\tbind = 127.0.0.1
\tredirect = 127.0.0.1 {target}
\tredirect_source = {source}
}}
"""


def test_the_target_sees_the_source_address(daemons: DaemonFactory) -> None:
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen(1)
        target.settimeout(TIMEOUT)
        port = free_port()
        daemons.start_config(service(port, target.getsockname()[1], "127.0.0.9"))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"who?")
            conn, peer = target.accept()
            with conn:
                assert peer[0] == "127.0.0.9"
                assert conn.recv(10) == b"who?"
                conn.sendall(b"you")
            assert client.recv(10) == b"you"


def test_a_source_that_is_not_local_is_reported_and_the_client_closed(
        daemons: DaemonFactory) -> None:
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen(1)
        port = free_port()
        daemon = daemons.start_config(service(port, target.getsockname()[1], "192.0.2.1"))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            assert client.recv(10) == b""
        line = daemon.wait_for_log("can't connect to remote host")
        assert ("can't connect to remote host 127.0.0.1 from 192.0.2.1: Cannot assign "
                "requested address (errno = 99)") in line
