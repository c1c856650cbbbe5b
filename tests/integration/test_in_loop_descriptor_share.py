"""In-loop sessions (internal stream builtins, redirect) hold descriptors of the daemon
for as long as their clients stay; under a small descriptor limit they may hold half
of it together (pyxinetd.loopshare), the rest being kept for the other services: an
exec'd service still accepts while echo or redirect clients hold all they may, and the
clients beyond the share wait in the queue and are served as sessions end
(docs/compatibility.md). Before, their clients took every descriptor and every
service's accept() failed with EMFILE for as long as they stayed."""

from __future__ import annotations

import os
import socket
import threading
import time

from tests.daemon import Daemon, DaemonFactory, free_port, nofile_limited

TIMEOUT = 10.0


def echo_service(port: int) -> str:
    return f"""service echo
{{
\ttype = INTERNAL UNLISTED
\tsocket_type = stream
\twait = no
\tport = {port}
\tbind = 127.0.0.1
\tinstances = UNLIMITED
\tper_source = UNLIMITED
\tcps = 0 0
}}
"""


def exec_service(port: int) -> str:
    return f"""service hello
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tuser = root
\tserver = /bin/echo
\tserver_args = hello
\tport = {port}
\tbind = 127.0.0.1
}}
"""


def redirect_service(port: int, target: int) -> str:
    return f"""service rd
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tport = {port}
\tbind = 127.0.0.1
\tredirect = 127.0.0.1 {target}
\tuser = root
\tinstances = UNLIMITED
\tper_source = UNLIMITED
\tcps = 0 0
}}
"""


def ask_echo(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    return conn.recv(100)


def hello(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        return conn.makefile("rb").read()


def open_descriptors(daemon: Daemon) -> int:
    return len(os.listdir(f"/proc/{daemon.pid}/fd"))


def test_echo_clients_leave_descriptors_for_an_exec_service(daemons: DaemonFactory) -> None:
    echo_port, exec_port = free_port(), free_port()
    daemon = daemons.start_config(echo_service(echo_port) + exec_service(exec_port),
                                  wrapper=nofile_limited(64))
    held: list[socket.socket] = []
    try:
        for _ in range(90):
            # Connected all: the ones beyond the share wait in echo's listen queue
            # (backlog 64: 32 sessions and 64 waiting at most).
            held.append(socket.create_connection(("127.0.0.1", echo_port),
                                                 timeout=TIMEOUT))
        daemon.wait_for_log(r"WARNING: echo: in-loop sessions, servers' channels and "
                            r"identity lookups hold 32 descriptors, half the limit; the "
                            r"rest are kept for the services whose servers run on their "
                            r"own, and new clients of echo wait until one of them ends")
        # The exec'd service accepts and serves meanwhile.
        assert hello(exec_port) == b"hello\n"
        # The share is not worn away: echo is looked at again each second (and at each
        # server's end), and takes no client beyond it then.
        count = open_descriptors(daemon)
        time.sleep(2.5)
        assert hello(exec_port) == b"hello\n"
        assert open_descriptors(daemon) == count
        # The first echo clients are served; the last wait for sessions to end.
        assert ask_echo(held[0], b"first") == b"first"
        for conn in held[:50]:
            conn.close()
        for index, conn in enumerate(held[50:]):
            # Each served in turn: the last ones once earlier sessions have ended.
            assert ask_echo(conn, b"%d" % index) == b"%d" % index
            conn.close()
        assert "accept failed" not in daemon.log()
        # Logged once for the whole shortage (at most once a minute, as clients keep
        # coming to the share's edge).
        assert daemon.log().count("identity lookups hold") == 1
    finally:
        for conn in held:
            conn.close()
    assert daemon.proc.poll() is None


def test_redirect_clients_leave_descriptors_for_an_exec_service(
        daemons: DaemonFactory) -> None:
    # Each redirect session holds two descriptors: the client's and the target's.
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(512)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        target.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(target.accept()[0])
            except TimeoutError:
                continue
    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    rd_port, exec_port = free_port(), free_port()
    held: list[socket.socket] = []
    try:
        daemon = daemons.start_config(
            redirect_service(rd_port, target.getsockname()[1]) + exec_service(exec_port),
            wrapper=nofile_limited(128))
        for _ in range(90):
            held.append(socket.create_connection(("127.0.0.1", rd_port), timeout=TIMEOUT))
        daemon.wait_for_log(r"WARNING: rd: in-loop sessions, servers' channels and "
                            r"identity lookups hold 64 descriptors")
        assert hello(exec_port) == b"hello\n"
        log = daemon.log()
        assert "Too many open files" not in log, log
        # 32 sessions of two descriptors each, no more.
        deadline = time.monotonic() + TIMEOUT
        while len(accepted) < 32 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)     # one look again at least: still no more
        assert len(accepted) == 32
    finally:
        stop.set()
        acceptor.join(TIMEOUT)
        for conn in held + accepted:
            conn.close()
        target.close()
