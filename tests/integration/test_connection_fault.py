"""A bug met while handling one connection costs that client alone.

The listener's connections are accepted in batches (pyxinetd.dispatch). An exception
raised while one of them is handled used to reach the loop, which then stopped watching
the listener (the service served nobody after it) and reset the rest of the batch with
no line naming them. Now that client is reset, one internal-error line names the service
and the peer, the rest of the batch is served, and so is every later client. No real
input is known to raise there, so the failure is injected for one client address
(tests/helpers/faulty_master.py); the connections reach the daemon in one batch because
it is stopped (SIGSTOP) while they queue.
"""

from __future__ import annotations

import pickle
import signal
import socket
import sys
from dataclasses import replace

import pytest

from pyxinetd.master import MasterOptions
from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port
from tests.factories import make_service

TIMEOUT = 10.0
FAULTY = "127.0.0.3"
GOOD = ("127.0.0.1", "127.0.0.2", "127.0.0.4")


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def answer(sock: socket.socket) -> bytes | str:
    """What the server sent before closing, or how the connection ended otherwise."""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        return "reset"
    finally:
        sock.close()
    return received


@pytest.fixture
def daemon_and_port(daemons: DaemonFactory) -> tuple[Daemon, int]:
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo", server_argv=("echo", "hello"),
                       bind="127.0.0.1")
    log_path = daemons.tmp_path / "faulty.log"
    spec = daemons.tmp_path / "faulty.pickle"
    spec.write_bytes(pickle.dumps(([svc], replace(MasterOptions(dontfork=True),
                                                  filelog=str(log_path)))))
    daemon = daemons._spawn([sys.executable, str(HELPERS / "faulty_master.py"), str(spec),
                             FAULTY], log_path, daemons.tmp_path / "faulty.err", True)
    return daemon, port


def test_one_clients_failure_resets_it_and_names_it(daemon_and_port: tuple[Daemon, int]
                                                    ) -> None:
    daemon, port = daemon_and_port
    daemon.signal(signal.SIGSTOP)
    try:
        socks = {src: connect_from(src, port) for src in (GOOD[0], FAULTY, *GOOD[1:])}
    finally:
        daemon.signal(signal.SIGCONT)
    answers = {src: answer(sock) for src, sock in socks.items()}
    assert answers[FAULTY] == "reset"
    assert all(answers[src] == b"hello\n" for src in GOOD), answers
    daemon.wait_for_log(
        rf"internal error in handling hello's connection from {FAULTY} \(reset\): "
        rf"RuntimeError: injected failure for {FAULTY}")


def test_the_service_serves_every_later_client(daemon_and_port: tuple[Daemon, int]) -> None:
    daemon, port = daemon_and_port
    assert answer(connect_from(FAULTY, port)) == "reset"
    for src in GOOD:
        assert answer(connect_from(src, port)) == b"hello\n"
    assert answer(connect_from(FAULTY, port)) == "reset"
    assert answer(connect_from(GOOD[0], port)) == b"hello\n"
    text = daemon.log()
    assert text.count(f"connection from {FAULTY} (reset)") == 2, text
    assert "no longer watched" not in text
