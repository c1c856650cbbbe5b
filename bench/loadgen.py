"""The load generator: N client processes, each a tight blocking request loop.

Why processes: the machine has few cores shared with the daemons, and one Python process
issuing requests tops out well below what a fork-free server can take. Each client is
bench/loadclient.c when bench/cclient.py could compile it (the same loop in C, for a
fraction of the CPU the clients take from the daemon), else `_client` below. Each client process
runs one request at a time (so concurrency = number of processes), on blocking sockets
whose timeouts are kernel-side (SO_RCVTIMEO/SO_SNDTIMEO), so no poll() is added to the
path and no call can hang.

All processes share one schedule on CLOCK_MONOTONIC (the same clock in every process on
Linux): start together, run a warm-up whose requests are discarded, then measure until the
end. A request counts when it started at or after the measurement start and finished by
the end. Clients stop issuing requests at the end, so the run is bounded by
end + one request timeout.

Request kinds:
- "read": connect, read until EOF, expect exactly `payload` (an exec'd /bin/echo, a wait
  server);
- "echo": connect, send `payload`, shut down the write side, read until EOF, expect
  `payload` back (the stream echo service);
- "udp": on one connected UDP socket per client, send `payload` with a sequence number and
  wait for the same datagram back (the datagram echo service); a reply that does not come
  within the timeout counts as lost.
TCP sockets are closed with SO_LINGER 0 once the exchange is complete, so the client side
leaves no TIME_WAIT behind and a long run does not exhaust the ephemeral ports.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import socket
import struct
import subprocess
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Janitor

KINDS = ("read", "echo", "udp")
MAX_REPLY = 65536  # bounds every read loop: no reply in these tests is anywhere near it
STALE_REPLIES = 16  # bounds the loop that skips late UDP replies to earlier requests
RETRANSMITS = 20  # a UDP request is abandoned after this many unanswered retransmissions


@dataclass(frozen=True)
class Schedule:
    start: float  # time.monotonic() at which every client starts (warm-up begins)
    measure: float  # requests starting before this are warm-up
    end: float  # no request starts after this; requests finishing after it are not counted

    @property
    def duration(self) -> float:
        return self.end - self.measure


Probe = Callable[[], dict[str, float]]


@dataclass
class LoadResult:
    kind: str
    concurrency: int
    duration: float
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, sorted
    retransmits: int = 0  # UDP requests sent again after `rto` without a reply
    probes: tuple[dict[str, float], dict[str, float]] | None = None  # at measure start/end

    @property
    def rate(self) -> float:
        return self.ok / self.duration if self.duration > 0 else 0.0

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of the latencies, in seconds."""
        if not self.latencies:
            return None
        rank = max(1, min(len(self.latencies), int(-(-p * len(self.latencies) // 100))))
        return self.latencies[rank - 1]

    def summary(self) -> dict[str, object]:
        def ms(p: float) -> float | None:
            v = self.percentile(p)
            return None if v is None else round(v * 1000, 3)

        return {
            "kind": self.kind,
            "concurrency": self.concurrency,
            "duration_s": round(self.duration, 3),
            "ok": self.ok,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "udp_retransmits": self.retransmits,
            "rate_per_s": round(self.rate, 1),
            "p50_ms": ms(50),
            "p90_ms": ms(90),
            "p99_ms": ms(99),
            "max_ms": round(self.latencies[-1] * 1000, 3) if self.latencies else None,
        }


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


_LINGER_RESET = struct.pack("ii", 1, 0)


def _stream_request(addr: tuple[str, int], payload: bytes, send: bool, tv: bytes) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        s.connect(addr)
        if send:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        data = b""
        while len(data) <= MAX_REPLY:  # each recv is bounded by SO_RCVTIMEO
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        return data == payload
    finally:
        s.close()


class _Datagram:
    """One connected UDP socket per client; each request carries a fresh sequence number.

    A request whose reply does not arrive within `rto` seconds is sent again (up to
    RETRANSMITS times), and its latency runs from the first send: a daemon that drops
    datagrams pays for it in latency and rate, as a real client would.
    """

    def __init__(self, addr: tuple[str, int], payload: bytes, rto: float, worker: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(rto))
        self.sock.connect(addr)
        self.payload = payload
        self.prefix = b"%d:" % worker
        self.seq = 0
        self.retransmits = 0

    def request(self) -> bool:
        self.seq += 1
        message = self.prefix + b"%d:" % self.seq + self.payload
        for attempt in range(RETRANSMITS + 1):
            if attempt:
                self.retransmits += 1
            self.sock.send(message)
            try:
                for _ in range(STALE_REPLIES):
                    if self.sock.recv(2048) == message:
                        return True
            except BlockingIOError:  # SO_RCVTIMEO expired: the datagram or its reply is lost
                continue
        return False


def _client(kind: str, addr: tuple[str, int], payload: bytes, schedule: Schedule,
            timeout: float, rto: float, worker: int,
            out: multiprocessing.connection.Connection) -> None:
    """Body of one client process: requests until schedule.end, then report and exit."""
    tv = _timeval(timeout)
    latencies = array("d")
    errors: Counter[str] = Counter()
    dgram = _Datagram(addr, payload, rto, worker) if kind == "udp" else None
    send = kind == "echo"
    pause = schedule.start - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    monotonic = time.monotonic
    retransmits = 0
    while True:
        sent_again = dgram.retransmits if dgram is not None else 0
        t0 = monotonic()
        if t0 >= schedule.end:
            break
        try:
            good = dgram.request() if dgram is not None else \
                _stream_request(addr, payload, send, tv)
            reason = "" if good else "wrong reply"
        except OSError as e:  # refused, reset, timed out (EAGAIN from SO_RCVTIMEO), ...
            good = False
            reason = type(e).__name__ if e.errno is None else os.strerror(e.errno)
        t1 = monotonic()
        if t0 >= schedule.measure:
            if dgram is not None:
                retransmits += dgram.retransmits - sent_again
            if not good:  # counted even when it ends after the window: it started in it
                errors[reason] += 1
            elif t1 <= schedule.end:
                latencies.append(t1 - t0)
        if not good:
            time.sleep(0.001)  # a refusing daemon must not turn the client into a spinner
    if dgram is not None:
        dgram.sock.close()
    out.send((dict(errors), retransmits))
    out.send_bytes(latencies.tobytes())
    out.close()


def _at(when: float, probe: Probe) -> dict[str, float]:
    pause = when - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    return probe()


# What one client process gave back: its errors by reason, its retransmissions and its
# latencies; or, as a string, why it gave nothing.
ClientReport = tuple[dict[str, int], int, "array[float]"]
Collect = Callable[[float], "ClientReport | str"]   # deadline -> that client's report


def run_load(janitor: Janitor, kind: str, addr: tuple[str, int], payload: bytes,
             concurrency: int, warmup: float, duration: float,
             timeout: float = 5.0, rto: float = 0.1,
             probe: Probe | None = None, client: Path | None = None) -> LoadResult:
    """Drive `addr` with `concurrency` client processes; bounded by warmup+duration+timeout.

    `probe`, if given, is called when the measurement starts and when it ends (to read a
    daemon's CPU time over exactly the measured window). `client`: the compiled C client
    (bench/cclient.py) to run as each client process; None runs the Python loop.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown request kind {kind!r}")
    now = time.monotonic()
    # Leave time for every process to be started before the shared start.
    start = now + (0.1 if client is not None else 0.05) + 0.01 * concurrency
    schedule = Schedule(start, start + warmup, start + warmup + duration)
    collectors: list[Collect] = []
    stops: list[Callable[[], None]] = []
    try:
        for i in range(concurrency):
            if client is not None:
                collect, stop = _start_c_client(janitor, client, kind, addr, payload,
                                                schedule, timeout, rto, i)
            else:
                collect, stop = _start_python_client(janitor, kind, addr, payload,
                                                     schedule, timeout, rto, i)
            collectors.append(collect)
            stops.append(stop)
        result = LoadResult(kind, concurrency, duration)
        if probe is not None:
            result.probes = (_at(schedule.measure, probe), _at(schedule.end, probe))
        deadline = schedule.end + max(timeout, rto * (RETRANSMITS + 1)) + 10.0
        errors: Counter[str] = Counter()
        samples = array("d")
        retransmits = 0
        for collect in collectors:
            report = collect(deadline)
            if isinstance(report, str):
                errors[report] += 1
                continue
            client_errors, client_retransmits, latencies = report
            errors.update(client_errors)
            retransmits += client_retransmits
            samples.extend(latencies)
        result.latencies = sorted(samples)
        result.ok = len(result.latencies)
        result.errors = sum(errors.values())
        result.error_kinds = dict(errors)
        result.retransmits = retransmits
        return result
    finally:
        for stop in stops:
            stop()


def _start_python_client(janitor: Janitor, kind: str, addr: tuple[str, int],
                         payload: bytes, schedule: Schedule, timeout: float, rto: float,
                         worker: int) -> tuple[Collect, Callable[[], None]]:
    """One client running `_client` in a forked process; its collector and its stop."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_client, name=f"bench-client-{worker}", daemon=True,
        args=(kind, addr, payload, schedule, timeout, rto, worker, sender))
    proc.start()
    janitor.track_worker(proc)
    sender.close()

    def collect(deadline: float) -> ClientReport | str:
        left = deadline - time.monotonic()
        if left <= 0 or not receiver.poll(left):
            return "client did not report"
        try:
            client_errors, client_retransmits = receiver.recv()
            latencies = array("d")
            latencies.frombytes(receiver.recv_bytes())
        except (EOFError, OSError):
            return "client died"
        return client_errors, client_retransmits, latencies

    def stop() -> None:
        receiver.close()
        janitor.stop_worker(proc)
    return collect, stop


def _start_c_client(janitor: Janitor, client: Path, kind: str, addr: tuple[str, int],
                    payload: bytes, schedule: Schedule, timeout: float, rto: float,
                    worker: int) -> tuple[Collect, Callable[[], None]]:
    """One bench/loadclient.c process (same schedule, same request loop, same
    accounting; it reports on its stdout once the end has passed)."""
    proc = subprocess.Popen(
        [str(client), kind, addr[0], str(addr[1]), payload.hex(), repr(timeout), repr(rto),
         str(worker), repr(schedule.start), repr(schedule.measure), repr(schedule.end)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    janitor.track_popen(proc)

    def collect(deadline: float) -> ClientReport | str:
        try:
            out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return "client did not report"
        try:
            return _c_report(out)
        except ValueError:
            return "client died" if proc.returncode else "client report unreadable"

    return collect, lambda: janitor.stop_popen(proc)


def _c_report(out: bytes) -> ClientReport:
    """Parse a C client's report (see bench/loadclient.c); ValueError if incomplete."""
    lines = out.split(b"\n", 2)
    if len(lines) < 3 or not lines[0].startswith(b"retransmits ") \
            or not lines[1].startswith(b"errors "):
        raise ValueError("no report")
    retransmits = int(lines[0].split()[1])
    rest = lines[2]
    errors: dict[str, int] = {}
    for _ in range(int(lines[1].split()[1])):
        line, rest = rest.split(b"\n", 1)
        count, reason = line.split(b" ", 1)
        errors[reason.decode(errors="replace")] = int(count)
    head, data = rest.split(b"\n", 1)
    if not head.startswith(b"latencies "):
        raise ValueError("no latencies")
    wanted = int(head.split()[1])
    latencies = array("d")
    latencies.frombytes(data[:wanted * latencies.itemsize])
    if len(latencies) != wanted:
        raise ValueError("latencies cut short")
    return errors, retransmits, latencies


def merge(results: list[LoadResult]) -> LoadResult:
    """Pool several runs of the same load: requests, errors and latencies add up."""
    first = results[0]
    out = LoadResult(first.kind, first.concurrency, sum(r.duration for r in results))
    errors: Counter[str] = Counter()
    for r in results:
        out.ok += r.ok
        out.errors += r.errors
        out.retransmits += r.retransmits
        errors.update(r.error_kinds)
        out.latencies.extend(r.latencies)
    out.latencies.sort()
    out.error_kinds = dict(errors)
    return out
