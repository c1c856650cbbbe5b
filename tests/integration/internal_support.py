"""Shared by the tests of the in-loop services: a Loop running in a thread, services.

The Loop is not thread-safe, so everything it runs is set up before its thread starts:
a listening socket per served kind, whose accept handler starts a session in the loop
thread. The test thread then acts as the clients, with plain blocking sockets.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from pyxinetd.config.model import Origin, Rlimits, ServiceConfig, SocketType  # noqa: E402
from pyxinetd.loop import READ, Loop  # noqa: E402

DEADLINE = 20.0


def make_service(name: str, **overrides: Any) -> ServiceConfig:
    """An internal service called `name` (stream, nowait) with the given fields changed."""
    fields: dict[str, Any] = dict(
        name=name, id=name, origin=Origin("test.conf", 1), types=frozenset({"INTERNAL"}),
        flags=frozenset(), socket_type=SocketType.STREAM, protocol="tcp",
        protocol_number=socket.IPPROTO_TCP, port=None, wait=False, user=None,
        user_name=None, group=None, groups=False, supplementary_groups=(), server=None,
        server_argv=(), environment=None, passenv=None, env=(), instances=None,
        per_source=None, cps=(50, 10), max_load=None, bind=None, family=socket.AF_INET,
        v6only=False, only_from=None, no_access=(), access_times=(), redirect=None,
        banner=None, banner_success=None, banner_fail=None, umask=None, nice=None,
        rlimits=Rlimits(), log_type=None, log_on_success=frozenset(),
        log_on_failure=frozenset(), deny_time=0, libwrap=None, rpc_version=None,
        rpc_number=None,
    )
    names = {f.name for f in dataclasses.fields(ServiceConfig)}
    fields = {k: v for k, v in fields.items() if k in names}
    fields.update(overrides)
    return ServiceConfig(**fields)


Starter = Callable[[Loop, socket.socket, Any], Any]


class LoopThread:
    """Runs a Loop in a background thread; listeners are added before start()."""

    def __init__(self) -> None:
        self.loop = Loop()
        self.sessions: list[Any] = []
        self.closes: list[Any] = []
        self.errors: list[BaseException] = []
        self._stop_r, self._stop_w = socket.socketpair()
        self._listeners: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stopping = False
        self.loop.register(self._stop_r, READ, self._on_stop)

    def listen(self, start: Starter, family: int = socket.AF_INET) -> tuple[Any, ...]:
        """Listen on loopback; each accepted connection is passed to start().

        Call before start(): the Loop belongs to its thread once that runs.
        """
        assert not self._thread.is_alive()
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        ls.listen(128)
        ls.setblocking(False)
        self._listeners.append(ls)

        def accept(mask: int) -> None:
            while True:
                try:
                    conn, peer = ls.accept()
                except BlockingIOError:
                    return
                self.sessions.append(start(self.loop, conn, peer))

        self.loop.register(ls, READ, accept)
        return tuple(ls.getsockname())

    def add_socket(self, sock: socket.socket, handler: Callable[[int], None]) -> None:
        assert not self._thread.is_alive()
        self._listeners.append(sock)
        self.loop.register(sock, READ, handler)

    def on_close(self, tag: Any) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.closes.append((tag, *args))
        return record

    def _on_stop(self, mask: int) -> None:
        self._stop_r.recv(16)
        self.loop.stop()

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:   # surfaced by stop()
            self.errors.append(exc)

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_w.send(b"x")
        self._thread.join(DEADLINE)
        for s in self.sessions:
            if s is not None and not s.closed:
                s.close()
        for ls in self._listeners:
            self.loop.unregister(ls)
            ls.close()
        self.loop.unregister(self._stop_r)
        self._stop_r.close()
        self._stop_w.close()
        self.loop.close()
        assert not self._thread.is_alive()
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> LoopThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def recv_all(sock: socket.socket, limit: int | None = None) -> bytes:
    """Read until EOF (or `limit` bytes), with the socket's timeout as the bound."""
    sock.settimeout(DEADLINE)
    data = bytearray()
    while limit is None or len(data) < limit:
        chunk = sock.recv(65536 if limit is None else min(65536, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def wait_for(predicate: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()
