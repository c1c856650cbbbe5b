"""pyxinetd.portmap: the XDR of portmapper calls and replies, and the loop-driven client.

The client is exercised over real UDP sockets on 127.0.0.1 against a small responder
driven by the same Loop; RFC 5531/1833 fix every word checked here.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest

from pyxinetd.loop import READ, Loop
from pyxinetd.portmap import (INTERVAL_ENV, MAX_INTERVAL, NO_ANSWER, PMAPPROC_DUMP,
                              PMAPPROC_SET, PMAPPROC_UNSET, RETRY_INTERVAL, Mapping,
                              PortmapClient, XdrError, decode_bool, decode_dump,
                              decode_reply, encode_call, reply_xid, retry_interval)


def words(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 4}I", data))


def reply(xid: int, *result: int, verifier: bytes = b"") -> bytes:
    pad = b"\0" * (-len(verifier) % 4)
    return (struct.pack(">5I", xid, 1, 0, 0, len(verifier)) + verifier + pad
            + struct.pack(f">{len(result) + 1}I", 0, *result))


def test_set_call_is_the_rfc_word_sequence() -> None:
    data = encode_call(0x01020304, PMAPPROC_SET, Mapping(0x20000111, 3, 17, 40000))
    assert words(data) == [0x01020304, 0, 2, 100000, 2, 1, 0, 0, 0, 0,
                           0x20000111, 3, 17, 40000]


def test_unset_and_dump_calls() -> None:
    assert words(encode_call(7, PMAPPROC_UNSET, Mapping(5, 1, 6, 0)))[5:] == \
        [2, 0, 0, 0, 0, 5, 1, 6, 0]
    assert words(encode_call(7, PMAPPROC_DUMP)) == [7, 0, 2, 100000, 2, 4, 0, 0, 0, 0]


def test_xid_wraps_to_32_bits() -> None:
    assert words(encode_call(2**32 + 5, PMAPPROC_DUMP))[0] == 5


def test_accepted_reply_with_a_verifier_body() -> None:
    xid, body = decode_reply(reply(9, 1, verifier=b"abcde"))
    assert xid == 9 and decode_bool(body) is True
    assert decode_bool(decode_reply(reply(9, 0))[1]) is False


@pytest.mark.parametrize("data, message", [
    (struct.pack(">3I", 9, 0, 0), "not an RPC reply"),
    (struct.pack(">3I", 9, 1, 1), "MSG_DENIED"),
    (struct.pack(">6I", 9, 1, 0, 0, 0, 1), "accept_stat 1"),
    (struct.pack(">2I", 9, 1), "truncated"),
    (struct.pack(">5I", 9, 1, 0, 0, 4000), "authenticator"),
])
def test_bad_replies(data: bytes, message: str) -> None:
    with pytest.raises(XdrError, match=message):
        decode_reply(data)


def test_dump_list() -> None:
    body = struct.pack(">11I", 1, 100000, 2, 17, 111, 1, 0x20000111, 1, 6, 999, 0)
    assert decode_dump(body) == [Mapping(100000, 2, 17, 111), Mapping(0x20000111, 1, 6, 999)]
    assert decode_dump(struct.pack(">I", 0)) == []
    with pytest.raises(XdrError):
        decode_dump(struct.pack(">3I", 1, 5, 1))


def test_reply_xid_of_a_short_datagram() -> None:
    with pytest.raises(XdrError):
        reply_xid(b"\0\0")


class Responder:
    """A UDP 'portmapper' on 127.0.0.1:0 run by the loop; `answer(call)` -> reply or None."""

    def __init__(self, loop: Loop, answer: Callable[[list[int]], bytes | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.calls: list[list[int]] = []
        self._answer = answer
        loop.register(self.sock, READ, self._on_readable)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def _on_readable(self, mask: int) -> None:
        data, peer = self.sock.recvfrom(4096)
        call = words(data)
        self.calls.append(call)
        answer = self._answer(call)
        if answer is not None:
            self.sock.sendto(answer, peer)


def run_until(loop: Loop, predicate: Callable[[], bool], turns: int = 200) -> None:
    for _ in range(turns):
        if predicate():
            return
        loop.run_once()
    raise AssertionError("the loop did not get there")


def test_set_answered() -> None:
    loop = Loop()
    responder = Responder(loop, lambda call: reply(call[0], 1))
    client = PortmapClient(loop, responder.address, interval=5.0)
    results: list[tuple[bool | None, str | None]] = []
    client.set(Mapping(0x20000111, 1, 17, 4000), lambda ok, err: results.append((ok, err)))
    run_until(loop, lambda: bool(results))
    assert results == [(True, None)]
    assert responder.calls[0][5:] == [1, 0, 0, 0, 0, 0x20000111, 1, 17, 4000]
    assert client.pending == 0
    responder.sock.close()
    loop.close()


def test_retransmits_then_gives_up() -> None:
    loop = Loop()
    responder = Responder(loop, lambda call: None)
    client = PortmapClient(loop, responder.address, attempts=3, interval=0.01)
    results: list[tuple[bool | None, str | None]] = []
    client.unset(Mapping(5, 1, 6, 0), lambda ok, err: results.append((ok, err)))
    run_until(loop, lambda: bool(results))
    assert results == [(None, NO_ANSWER)]
    assert len(responder.calls) == 3
    assert len({call[0] for call in responder.calls}) == 1   # the same xid each time
    responder.sock.close()
    loop.close()


def test_no_portmapper_fails_at_once() -> None:
    loop = Loop()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()       # nothing listens there now: the kernel answers port unreachable
    client = PortmapClient(loop, address, interval=30.0)
    results: list[tuple[bool | None, str | None]] = []
    client.set(Mapping(5, 1, 17, 9), lambda ok, err: results.append((ok, err)))
    client.set(Mapping(5, 2, 17, 9), lambda ok, err: results.append((ok, err)))
    run_until(loop, lambda: len(results) == 2)
    assert all(ok is None and err and "refused" in err for ok, err in results)
    loop.close()


def test_dump_answered() -> None:
    loop = Loop()
    table = struct.pack(">6I", 1, 100000, 2, 17, 111, 0)

    responder = Responder(loop, lambda call: reply(call[0], *words(table)))
    client = PortmapClient(loop, responder.address, interval=5.0)
    got: list[object] = []
    client.dump(lambda mappings, err: got.append((mappings, err)))
    run_until(loop, lambda: bool(got))
    assert got == [([Mapping(100000, 2, 17, 111)], None)]
    responder.sock.close()
    loop.close()


def test_an_abandoned_call_is_not_sent_again_nor_answered() -> None:
    loop = Loop()
    responder = Responder(loop, lambda call: None)
    # Long enough that no retransmission of the SET can fall due before the abandon,
    # however slowly a loaded machine runs the turn that reads it.
    client = PortmapClient(loop, responder.address, attempts=3, interval=0.25)
    results: list[tuple[bool | None, str | None]] = []
    xid = client.set(Mapping(5, 1, 6, 9), lambda ok, err: results.append((ok, err)))
    run_until(loop, lambda: len(responder.calls) == 1)
    client.abandon(xid)
    assert client.pending == 0
    # A later call gives the loop the time the retransmissions would have taken.
    client.unset(Mapping(5, 1, 6, 0), lambda ok, err: results.append((ok, err)))
    run_until(loop, lambda: bool(results))
    assert results == [(None, "portmapper did not answer")]     # the UNSET's only
    assert [call[5] for call in responder.calls] == [1, 2, 2, 2]
    responder.sock.close()
    loop.close()


@pytest.mark.parametrize("value, interval", [
    (None, RETRY_INTERVAL), ("60", 60.0), ("0.05", 0.05), ("0", RETRY_INTERVAL),
    ("-1", RETRY_INTERVAL), ("nan", RETRY_INTERVAL), ("soon", RETRY_INTERVAL),
    ("1e9", MAX_INTERVAL)])
def test_the_retransmission_interval_override(value: str | None, interval: float) -> None:
    environ = {} if value is None else {INTERVAL_ENV: value}
    assert retry_interval(environ) == interval
