"""redirect against hostile targets and clients, with the real daemon: a target that
refuses, one that resets mid-transfer, one that accepts and never answers while its
client resets. The daemon names the client in its errors, logs TRAFFIC for relays
that ran, frees every instance and descriptor, and keeps serving."""

from __future__ import annotations

import fcntl
import re
import socket
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, open_fds, read_log, wait_until

DEADLINE = 10.0


def redirected(name: str, port: int, target: int, log: Path) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = nobody\n\tport = {port}\n\tbind = 127.0.0.1\n"
            f"\tredirect = 127.0.0.1 {target}\n\tinstances = 1\n"
            f"\tlog_type = FILE {log}\n\tlog_on_success = HOST EXIT TRAFFIC\n}}\n")


@contextmanager
def target(serve: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 running `serve` on each connection (one at a time)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)       # to notice `stop`: close() does not wake accept()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(DEADLINE)
                try:
                    serve(conn)
                except OSError:
                    pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(DEADLINE)
        listener.close()


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_then_reset(conn: socket.socket) -> None:
    conn.recv(1)
    conn.sendall(b"r" * 5000)
    reset(conn)


def never_answer(conn: socket.socket) -> None:
    while conn.recv(4096):      # until the daemon closes its side
        pass


def read_until_end(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_hostile_targets_and_clients(daemons: DaemonFactory, tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    dead = free_port()          # nothing listens there: refused
    ports = [free_port() for _ in range(3)]
    with target(send_then_reset) as resetting, target(never_answer) as silent:
        daemon = daemons.start_config(
            redirected("refused", ports[0], dead, log)
            + redirected("resetting", ports[1], resetting, log)
            + redirected("silent", ports[2], silent, log))
        baseline = set(open_fds(daemon.proc.pid).values())

        # 1. The target refuses: the client is dropped, the error names it.
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=DEADLINE) as c:
            assert read_until_end(c) == b""
        line = daemon.wait_for_log("can't connect to remote host")
        assert re.search(r"ERROR: can't connect to remote host 127\.0\.0\.1: Connection "
                         r"refused \(errno = 111\) \(client 127\.0\.0\.1\)\n", line), line

        # 2. The target sends, then resets: what it sent arrives, TRAFFIC counts it.
        with socket.create_connection(("127.0.0.1", ports[1]), timeout=DEADLINE) as c:
            c.sendall(b"q")
            got = read_until_end(c)
        assert set(got) <= {ord("r")} and len(got) <= 5000
        wait_until(lambda: "EXIT: resetting" in read_log(log), DEADLINE)
        assert re.search(r"TRAFFIC: resetting in=1\(bytes\) out=\d+\(bytes\)", read_log(log))

        # 3. The target never answers and the client resets: the session ends.
        c = socket.create_connection(("127.0.0.1", ports[2]), timeout=DEADLINE)
        c.sendall(b"hello?")
        wait_until(lambda: "START: silent" in read_log(log), DEADLINE)
        reset(c)
        wait_until(lambda: "EXIT: silent" in read_log(log), DEADLINE)
        assert "TRAFFIC: silent in=6(bytes) out=0(bytes)" in read_log(log)

        # Every instance is free again (instances = 1), and so is every descriptor.
        for port in ports[1:]:
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
                c.sendall(b"q")
                c.shutdown(socket.SHUT_WR)
                read_until_end(c)
        assert "FAIL" not in read_log(log)
        # The service log is opened at its first line, after the baseline was taken.
        wait_until(lambda: set(open_fds(daemon.proc.pid).values()) <= baseline | {str(log)},
                   DEADLINE, what="the descriptors of the ended sessions to close")
        wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")


PAYLOAD = 2 * 1024 * 1024


def unacknowledged(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def test_a_target_gone_while_its_client_still_sends(daemons: DaemonFactory,
                                                    tmp_path: Path) -> None:
    # The target sends its answer and resets; then the client, which reads slowly,
    # sends more: what the target sent reaches the client whole, ended by a FIN.
    # Closing the client's connection over input nobody read (or leaving later input
    # to the closed socket) would reset it, and the kernel would throw away the
    # answer still queued for the client.
    log = tmp_path / "service.log"
    port = free_port()
    gone = threading.Event()

    def send_all_then_reset(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(b"s" * PAYLOAD)
        # Once all of it has reached the daemon (the reset would lose what had not):
        # gone, without reading what the client sends.
        wait_until(lambda: unacknowledged(conn) == 0, DEADLINE)
        reset(conn)
        gone.set()

    with target(send_all_then_reset) as resetting:
        daemon = daemons.start_config(redirected("resetting", port, resetting, log))
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # reads slowly
        client.settimeout(DEADLINE)
        with client:
            client.connect(("127.0.0.1", port))
            client.sendall(b"q")
            assert gone.wait(DEADLINE)
            client.sendall(b"more")
            got, end = 0, "EOF"
            try:
                while chunk := client.recv(65536):
                    got += len(chunk)
            except ConnectionResetError:
                end = "RST"
        assert (got, end) == (PAYLOAD, "EOF")
        wait_until(lambda: "EXIT: resetting" in read_log(log), DEADLINE)
        assert f"TRAFFIC: resetting in=1(bytes) out={PAYLOAD}(bytes)" in read_log(log)
        wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
