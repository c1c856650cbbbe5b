"""A non-blocking portmapper client: PMAPPROC_SET/UNSET (and DUMP) over UDP.

RPC services are found through the portmapper (rpcbind), which maps (program,
version, protocol) to a port. xinetd registers with libtirpc's pmap_set(), a blocking
call followed by a 1 s sleep per version (reference §4.2). Here the calls are ONC RPC
v2 messages (RFC 5531) for the portmapper protocol v2 (RFC 1833), written by hand:
every field is a 32-bit XDR word and the credentials are AUTH_NONE, so a message is a
fixed sequence of words. They go over one UDP socket, connected to 127.0.0.1:111,
registered in the master's Loop; each call is retransmitted from a timer a few times
and then reported as unanswered (NO_ANSWER: the portmapper may have applied it, only
its answers lost). Nothing here blocks or sleeps. $PYXINETD_PORTMAP_INTERVAL sets the
seconds between retransmissions, for tests that hold the portmapper's answers.

A connected UDP socket reports the ICMP "port unreachable" of a host without a
portmapper as ECONNREFUSED, so that case fails at once instead of after every
retransmission. The socket is opened on demand and closed when no call is pending.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pyxinetd.log import strerror
from pyxinetd.loop import READ, Loop
from pyxinetd.timers import Timer, seconds_setting

PMAP_PROGRAM = 100000
PMAP_VERSION = 2
PMAPPROC_SET = 1
PMAPPROC_UNSET = 2
PMAPPROC_DUMP = 4
PMAP_ADDRESS = ("127.0.0.1", 111)

RPC_VERSION = 2
MSG_CALL = 0
MSG_REPLY = 1
MSG_ACCEPTED = 0
ACCEPT_SUCCESS = 0
AUTH_NONE = 0

# Seconds between retransmissions, and how many times a call is sent in all:
# about 2 s before a silent portmapper is given up on.
RETRY_INTERVAL = 0.5
ATTEMPTS = 4
# Test-only override of RETRY_INTERVAL, in seconds (so a test can hold the answers).
INTERVAL_ENV = "PYXINETD_PORTMAP_INTERVAL"
MAX_INTERVAL = 600.0
# The error of a call given up on after its last retransmission: the portmapper may
# have applied it (only its answer lost), unlike a call refused or never sent.
NO_ANSWER = "portmapper did not answer"
_MAX_REPLY = 65536

_WORD = struct.Struct(">I")
_CALL_HEADER = struct.Struct(">10I")
_MAPPING = struct.Struct(">4I")


class XdrError(ValueError):
    """A reply that is not a well-formed, accepted, successful RPC reply."""


@dataclass(frozen=True)
class Mapping:
    """One portmapper entry (struct pmap): the port of a program version/protocol."""

    program: int
    version: int
    protocol: int      # IPPROTO_TCP (6) or IPPROTO_UDP (17)
    port: int

    def encode(self) -> bytes:
        return _MAPPING.pack(self.program, self.version, self.protocol, self.port)


def encode_call(xid: int, procedure: int, mapping: Mapping | None = None) -> bytes:
    """A portmapper v2 call message; `mapping` is the argument of SET/UNSET/GETPORT."""
    header = _CALL_HEADER.pack(xid & 0xFFFFFFFF, MSG_CALL, RPC_VERSION, PMAP_PROGRAM,
                               PMAP_VERSION, procedure,
                               AUTH_NONE, 0,      # credentials: flavor, empty body
                               AUTH_NONE, 0)      # verifier
    return header + (mapping.encode() if mapping is not None else b"")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def word(self) -> int:
        if self._pos + 4 > len(self._data):
            raise XdrError("truncated RPC reply")
        (value,) = _WORD.unpack_from(self._data, self._pos)
        self._pos += 4
        return int(value)

    def opaque(self) -> None:
        """Skip a variable-length opaque (length word, data padded to 4 bytes)."""
        length = self.word()
        if length > 400:   # RFC 5531: an authentication body is at most 400 bytes
            raise XdrError("bad authenticator length")
        self._pos += (length + 3) & ~3
        if self._pos > len(self._data):
            raise XdrError("truncated RPC reply")

    def rest(self) -> bytes:
        return self._data[self._pos:]


def reply_xid(data: bytes) -> int:
    """The transaction id of a datagram, to match it with its call."""
    return _Reader(data).word()


def decode_reply(data: bytes) -> tuple[int, bytes]:
    """(xid, result body) of an accepted, successful reply; raises XdrError otherwise."""
    r = _Reader(data)
    xid = r.word()
    if r.word() != MSG_REPLY:
        raise XdrError("not an RPC reply")
    if r.word() != MSG_ACCEPTED:
        raise XdrError("call rejected by the portmapper (MSG_DENIED)")
    r.word()        # verifier flavor
    r.opaque()      # verifier body
    status = r.word()
    if status != ACCEPT_SUCCESS:
        raise XdrError(f"call not accepted by the portmapper (accept_stat {status})")
    return xid, r.rest()


def decode_bool(body: bytes) -> bool:
    """The result of SET/UNSET: an XDR bool."""
    return _Reader(body).word() != 0


def decode_dump(body: bytes) -> list[Mapping]:
    """The result of DUMP: an XDR optional-data list of mappings."""
    r = _Reader(body)
    out: list[Mapping] = []
    while r.word():
        out.append(Mapping(r.word(), r.word(), r.word(), r.word()))
    return out


def retry_interval(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """RETRY_INTERVAL, or $PYXINETD_PORTMAP_INTERVAL (seconds) when set and valid."""
    return seconds_setting(RETRY_INTERVAL, INTERVAL_ENV, MAX_INTERVAL, environ)

# done(result body, error text): exactly one of the two is None.
Done = Callable[[bytes | None, str | None], None]
_Result = TypeVar("_Result")


@dataclass
class _Pending:
    message: bytes
    done: Done
    attempts: int = 0
    timer: Timer | None = None


class PortmapClient:
    """Sends portmapper calls from the loop; each call's `done` is called exactly once."""

    def __init__(self, loop: Loop, address: tuple[str, int] = PMAP_ADDRESS, *,
                 attempts: int = ATTEMPTS, interval: float | None = None) -> None:
        self._loop = loop
        self._address = address
        self._attempts = attempts
        self._interval = retry_interval() if interval is None else interval
        self._sock: socket.socket | None = None
        self._pending: dict[int, _Pending] = {}
        # Start from a random xid: a late reply to an earlier daemon's call must not match.
        self._xids: Iterator[int] = itertools.count(int.from_bytes(os.urandom(4), "big") >> 1)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def give_up_after(self) -> float:
        """Seconds from a call's first send until it is reported unanswered."""
        return self._attempts * self._interval

    def set(self, mapping: Mapping, done: Callable[[bool | None, str | None], None]) -> int:
        """PMAPPROC_SET; done(True/False, None) with the answer, or (None, error), the
        error being NO_ANSWER when the call may have been applied. Returns the call's
        xid, for abandon()."""
        return self._call(PMAPPROC_SET, mapping, _decoding(decode_bool, done))

    def unset(self, mapping: Mapping,
              done: Callable[[bool | None, str | None], None]) -> int:
        """PMAPPROC_UNSET: the portmapper drops program/version for tcp *and* udp.
        Returns the call's xid."""
        return self._call(PMAPPROC_UNSET, mapping, _decoding(decode_bool, done))

    def dump(self, done: Callable[[list[Mapping] | None, str | None], None]) -> None:
        self._call(PMAPPROC_DUMP, None, _decoding(decode_dump, done))

    def abandon(self, xid: int) -> None:
        """Forget one pending call: no retransmission, its `done` is not called."""
        call = self._pending.pop(xid, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()
        if not self._pending:
            self._close_socket()

    def close(self) -> None:
        """Forget every pending call (their `done` is not called) and close the socket."""
        for call in self._pending.values():
            if call.timer is not None:
                call.timer.cancel()
        self._pending.clear()
        self._close_socket()

    # -- internals -------------------------------------------------------------
    def _call(self, procedure: int, mapping: Mapping | None, done: Done) -> int:
        xid = next(self._xids) & 0xFFFFFFFF
        call = _Pending(encode_call(xid, procedure, mapping), done)
        if self._sock is None:
            try:
                self._open()
            except OSError as err:
                done(None, f"portmapper socket: {strerror(err)}")
                return xid
        self._pending[xid] = call
        self._send(xid, call)
        return xid

    def _open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self._address)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop.register(sock, READ, self._on_readable)

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._loop.unregister(self._sock)
            self._sock.close()
            self._sock = None

    def _send(self, xid: int, call: _Pending) -> None:
        assert self._sock is not None
        call.attempts += 1
        for _ in range(2):
            try:
                self._sock.send(call.message)
                break
            except BlockingIOError:
                break       # the retransmission timer sends it again
            except ConnectionRefusedError:
                # An ICMP error left from an earlier datagram: it is consumed now,
                # so the second try tells whether the portmapper is there.
                continue
            except OSError as err:
                self._finish(xid, None, f"portmapper send: {strerror(err)}")
                return
        call.timer = self._loop.call_later(self._interval, lambda: self._retransmit(xid))

    def _retransmit(self, xid: int) -> None:
        call = self._pending.get(xid)
        if call is None:
            return
        if call.attempts >= self._attempts:
            self._finish(xid, None, NO_ANSWER)
            return
        self._send(xid, call)

    def _on_readable(self, mask: int) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(_MAX_REPLY)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                # Nothing listens on the portmapper port: every pending call fails.
                for xid in list(self._pending):
                    self._finish(xid, None, f"portmapper: {os.strerror(errno.ECONNREFUSED)}")
                return
            except OSError as err:
                for xid in list(self._pending):
                    self._finish(xid, None, f"portmapper receive: {strerror(err)}")
                return
            try:
                xid = reply_xid(data)
            except XdrError:
                continue
            if xid not in self._pending:
                continue    # a late duplicate of an answered call
            try:
                _, body = decode_reply(data)
            except XdrError as err:
                self._finish(xid, None, str(err))
                continue
            self._finish(xid, body, None)

    def _finish(self, xid: int, body: bytes | None, error: str | None) -> None:
        call = self._pending.pop(xid, None)
        if call is None:
            return
        if call.timer is not None:
            call.timer.cancel()
        if not self._pending:
            self._close_socket()
        call.done(body, error)


def _decoding(decode: Callable[[bytes], _Result],
              done: Callable[[_Result | None, str | None], None]) -> Done:
    """A Done that gives `done` the reply's body as `decode` reads it, or the call's
    error, or why the body does not decode."""
    def decoded(body: bytes | None, error: str | None) -> None:
        if body is None:
            done(None, error)
            return
        try:
            done(decode(body), None)
        except XdrError as err:
            done(None, str(err))
    return decoded
