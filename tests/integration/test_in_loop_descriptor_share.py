"""In-loop sessions (internal stream builtins, redirect) hold a descriptor of the daemon
for as long as their clients stay; under a small descriptor limit they may not take the
last quarter of it, which is kept for the other services: an exec'd service still
accepts while echo clients hold every descriptor echo may have, and the echo clients
beyond its share wait in the queue and are served as sessions end
(docs/compatibility.md). Before, echo's clients took every descriptor and every
service's accept() failed with EMFILE for as long as they stayed."""

from __future__ import annotations

import socket

from tests.daemon import DaemonFactory, free_port, nofile_limited

TIMEOUT = 10.0
LIMIT = 64
CLIENTS = 100   # more than the limit: without the share, nothing else could accept


def config(echo_port: int, exec_port: int) -> str:
    return f"""service echo
{{
\ttype = INTERNAL UNLISTED
\tsocket_type = stream
\twait = no
\tport = {echo_port}
\tbind = 127.0.0.1
\tinstances = UNLIMITED
\tper_source = UNLIMITED
\tcps = 0 0
}}
service hello
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tuser = root
\tserver = /bin/echo
\tserver_args = hello
\tport = {exec_port}
\tbind = 127.0.0.1
}}
"""


def ask_echo(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    return conn.recv(100)


def test_echo_clients_leave_descriptors_for_an_exec_service(daemons: DaemonFactory) -> None:
    echo_port, exec_port = free_port(), free_port()
    daemon = daemons.start_config(config(echo_port, exec_port),
                                  wrapper=nofile_limited(LIMIT))
    held: list[socket.socket] = []
    try:
        for _ in range(CLIENTS):
            # Connected all: the ones beyond echo's share wait in its listen queue.
            held.append(socket.create_connection(("127.0.0.1", echo_port),
                                                 timeout=TIMEOUT))
        line = daemon.wait_for_log(r"WARNING: echo: its sessions reached the last 16 of "
                                   r"64 descriptors, kept for the other services; new "
                                   r"clients wait until one of its sessions ends")
        assert line
        # The exec'd service accepts and serves meanwhile.
        with socket.create_connection(("127.0.0.1", exec_port), timeout=TIMEOUT) as conn:
            assert conn.makefile("rb").read() == b"hello\n"
        # The first echo clients are served; the last wait for a session to end.
        assert ask_echo(held[0], b"first") == b"first"
        for conn in held[:CLIENTS // 2]:
            conn.close()
        # Each waiting client is served once descriptors are free (the listen
        # queue holds them all: backlog 64).
        for index, conn in enumerate(held[CLIENTS // 2:]):
            assert ask_echo(conn, b"%d" % index) == b"%d" % index
        assert "accept failed" not in daemon.log()
        # Logged once for the whole shortage.
        assert daemon.log().count("its sessions reached the last") == 1
    finally:
        for conn in held:
            conn.close()
    assert daemon.proc.poll() is None
