"""Trivial pre-forked reference servers, used to measure the load generator's ceiling.

The same request loop that drives the daemons is pointed at a server that does the least
possible work per request (no fork, no exec, no event loop): a couple of processes
blocking in accept()/recvfrom() on one shared socket. What the clients reach against it is
a lower bound of what they can drive; a daemon measured close to it may be limited by the
load generator rather than by itself, and the benchmark says so.
"""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.procs import Janitor

MAX_REQUEST = 65536


def _serve_stream(listener: socket.socket, payload: bytes, echo: bool) -> None:
    while True:  # runs until the benchmark kills this process
        conn, _ = listener.accept()
        try:
            conn.settimeout(5.0)
            if echo:
                data = b""
                while len(data) <= MAX_REQUEST:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(data)
            else:
                conn.sendall(payload)
        except OSError:
            pass
        finally:
            conn.close()


def _serve_datagram(sock: socket.socket) -> None:
    while True:  # runs until the benchmark kills this process
        data, peer = sock.recvfrom(2048)
        try:
            sock.sendto(data, peer)
        except OSError:
            pass


@contextmanager
def reference_server(janitor: Janitor, kind: str, payload: bytes,
                     processes: int = 2, binary: Path | None = None
                     ) -> Iterator[tuple[str, int]]:
    """Serve `kind` ("read", "echo" or "udp") on 127.0.0.1; yields the address.
    `binary`: bench/refserver.c compiled (bench/cclient.py), run as the processes
    instead of the Python loops."""
    stream = kind != "udp"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    ctx = multiprocessing.get_context("fork")
    workers = []
    popens: list[subprocess.Popen[bytes]] = []
    try:
        sock.bind(("127.0.0.1", 0))
        if stream:
            sock.listen(256)
        for i in range(processes):
            if binary is not None:
                proc_c = subprocess.Popen(
                    [str(binary), kind, payload.hex(), str(sock.fileno())],
                    pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL,
                    start_new_session=True)
                janitor.track_popen(proc_c)
                popens.append(proc_c)
                continue
            if stream:
                proc = ctx.Process(target=_serve_stream, args=(sock, payload, kind == "echo"),
                                   name=f"bench-ref-{kind}-{i}", daemon=True)
            else:
                proc = ctx.Process(target=_serve_datagram, args=(sock,),
                                   name=f"bench-ref-{kind}-{i}", daemon=True)
            proc.start()
            janitor.track_worker(proc)
            workers.append(proc)
        address: tuple[str, int] = sock.getsockname()
        yield address
    finally:
        for proc_c in popens:
            janitor.stop_popen(proc_c)
        for proc in workers:
            if proc.is_alive():
                proc.kill()
            janitor.stop_worker(proc)
        sock.close()
