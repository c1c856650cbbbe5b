"""A portmapper on 127.0.0.1:111 whose answers the RPC scenarios decide, in a thread.

Run it inside a private network namespace (the scenarios that use it are). Its table
follows rpcbind's rules for the v2 protocol (pmap_svc.c): SET adds (program, version,
protocol) at a port unless that triple is there already (then TRUE at the same port,
as for a retransmitted SET whose answer was lost, else FALSE); UNSET drops the
program version for tcp *and* udp (TRUE if anything went). Each call that arrives is
recorded in `calls` as (procedure, program, version, protocol, port), retransmissions
included, and then handled as `policy(call)` says:

- ANSWER: applied and answered at once;
- SILENT: applied and never answered (a portmapper whose answer is lost);
- HOLD:   kept, unapplied, until release() applies and answers every held call in the
          order they came (a busy portmapper); a retransmission of a held call is
          dropped.

sync() returns once every datagram sent to it before has been handled (a NULL call
of its own goes through the same socket, last), so that a scenario knows what the
portmapper has seen of what a daemon sent.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

NULL, SET, UNSET = 0, 1, 2
TCP, UDP = 6, 17
ANSWER, SILENT, HOLD = "answer", "silent", "hold"

Call = tuple[int, int, int, int, int]


def answer_all(call: Call) -> str:
    return ANSWER


class FakePortmapper:
    def __init__(self, policy: Callable[[Call], str] = answer_all) -> None:
        self.policy = policy
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 111))
        self.sock.settimeout(0.2)
        self.table: set[tuple[int, int, int, int]] = set()
        self.calls: list[Call] = []
        self.held: list[tuple[int, Call, tuple[str, int]]] = []
        self.lock = threading.Lock()
        self.running = True
        self._synced: set[int] = set()
        self._sync_xids = iter(range(1, 1 << 31))
        self._sync_done = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def snapshot(self) -> tuple[list[Call], list[Call], list[tuple[int, int, int, int]]]:
        """(calls, held calls, table), copied under the lock."""
        with self.lock:
            return (list(self.calls), [call for _, call, _ in self.held],
                    sorted(self.table))

    def holds(self, procedure: int, program: int, version: int) -> bool:
        """Whether a call of `procedure` for that program version is held."""
        with self.lock:
            return any(call[:3] == (procedure, program, version)
                       for _, call, _ in self.held)

    def sync(self, timeout: float = 10.0) -> None:
        """Once every datagram that reached the portmapper before this call is handled."""
        with self.lock:
            xid = next(self._sync_xids) | 0x80000000
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.sendto(struct.pack(">14I", xid, 0, 2, 100000, 2, NULL, *[0] * 8),
                         ("127.0.0.1", 111))
            with self.lock:
                if not self._sync_done.wait_for(lambda: xid in self._synced, timeout):
                    raise RuntimeError("the fake portmapper did not handle its NULL call")

    def release(self) -> None:
        """Apply and answer every held call, in the order they came."""
        with self.lock:
            held, self.held = self.held, []
            for xid, call, peer in held:
                self._reply(xid, self._apply(call), peer)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if len(data) < 56:
                continue        # not a SET/UNSET call: nothing here uses others
            words = struct.unpack(">14I", data[:56])
            xid = words[0]
            call = (words[5], *words[10:14])
            with self.lock:
                if call[0] == NULL:
                    self._synced.add(xid)
                    self._sync_done.notify_all()
                    continue
                self.calls.append(call)
                if any(held_xid == xid for held_xid, _, _ in self.held):
                    continue
                what = self.policy(call)
                if what == HOLD:
                    self.held.append((xid, call, peer))
                    continue
                result = self._apply(call)
                if what == ANSWER:
                    self._reply(xid, result, peer)

    def _apply(self, call: Call) -> bool:
        procedure, program, version, protocol, port = call
        if procedure == SET:
            if any(m[:3] == (program, version, protocol) for m in self.table):
                return (program, version, protocol, port) in self.table
            self.table.add((program, version, protocol, port))
            return True
        if procedure == UNSET:
            before = len(self.table)
            self.table = {m for m in self.table if m[:2] != (program, version)}
            return len(self.table) < before
        return False

    def _reply(self, xid: int, result: bool, peer: tuple[str, int]) -> None:
        # An accepted, successful reply (AUTH_NONE verifier) carrying an XDR bool.
        self.sock.sendto(struct.pack(">7I", xid, 1, 0, 0, 0, 0, int(result)), peer)
