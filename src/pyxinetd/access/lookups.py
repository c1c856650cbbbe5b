"""Name lookups in the resolver helper (pyxinetd.access.resolver): the blocking lookup
itself, and the pool of threads that runs them.

A burst of clients whose reverse lookups the DNS answers slowly (or never) must be
decided in about one lookup deadline, not one deadline per handful of clients. So:

- the pool grows on demand, one thread per lookup waiting to run, up to a bound
  ($PYXINETD_LOOKUP_THREADS, default 32), and a thread idle for IDLE_SECONDS ends;
- identical lookups are made once: while an address is queued or being looked up, a
  further request for it joins it and gets the same answer (many clients from one
  address are one DNS query, not one each);
- every request carries its own deadline (`until`, CLOCK_MONOTONIC, the master's clock
  too): an address whose askers have all given up is dropped from the queue unasked,
  its forward confirmation is not started, and nobody is answered late;
- no client network takes the pool: at most half the bound of threads look up
  addresses of one /24 (IPv4, mapped ones included) or /56 (IPv6) at a time (16 of
  32), the others of it wait their turn while other networks' addresses go first (the
  network with the fewest lookups in flight is served first); a burst from one
  network still gets many lookups side by side. And a network with nothing in flight
  gets a thread at once, past the bound if need be (up to MAX_THREADS): the threads
  other networks hold never make its client wait, so starving others takes more
  networks than a few. A client whose reverse zone
  never answers holds a thread for the resolver's whole timeout (10 s with glibc's
  defaults), past the master's deadline: from a few dozen addresses of its own it
  would otherwise keep every thread busy, and every other client whose verdict needs
  its name would miss its deadline (xinetd looks each name up in the request's own
  child, where a slow one delays only that client);
- a thread stuck in a lookup nobody waits for any more does not count against the
  bound either: the pool may grow past it by that many, up to MAX_THREADS.

Threads are harmless in the helper (it never forks while looking up); the master, which
forks servers, has none.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

THREADS_ENV = "PYXINETD_LOOKUP_THREADS"
DEFAULT_THREADS = 32
MAX_THREADS = 512
# How long a thread with nothing to look up lingers for the next burst before it ends.
IDLE_SECONDS = 10.0


def network_of(address: str) -> str:
    """The client network `address` counts against: its /24 (IPv4, IPv4-mapped IPv6
    too) or /56 (IPv6: a home or small site gets a /56, and has 256 /64s to spread
    over); the address itself when it is neither."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    bits = 24 if isinstance(parsed, ipaddress.IPv4Address) else 56
    return str(ipaddress.ip_network((parsed, bits), strict=False))


@dataclass(frozen=True)
class NameInfo:
    """`name`: the reverse name (None: none or timed out); `confirmed`: the name's
    forward lookup gives the address back (False with a name means PARANOID)."""

    name: str | None = None
    confirmed: bool = False
    # Not looked up: no process could be created for the resolver helper (the master's
    # side gives up, pyxinetd.access.resolver). Read as no name, but by the access
    # checks, which refuse the request as a failed fork.
    unavailable: bool = False
    # Never looked up, and why (the helper's queue stayed full, it exited or could not
    # be started): not a name the DNS lacks, so a verdict that depends on the name
    # refuses the request. Empty when the lookup ran.
    not_looked_up: str = ""
    # Why an unconfirmed name is not the host's, in libwrap's words (its sock_hostname
    # logs them when a rule first reads the name): `host name/name mismatch: A != B`,
    # `host name/address mismatch: ADDRESS != NAME`. Empty when confirmed, or when the
    # forward lookup failed.
    mismatch: str = ""


NO_NAME = NameInfo()
UNAVAILABLE = NameInfo(unavailable=True)
NOT_LOOKED_UP = NameInfo(not_looked_up="the name resolver's queue stayed full")


def _never_late() -> bool:
    return True


def resolve(address: str, wanted: Callable[[], bool] = _never_late) -> NameInfo:
    """Blocking: reverse lookup, then forward confirmation (as tcpd does), the latter
    only while `wanted()` (somebody still waits for the answer)."""
    try:
        # gethostbyaddr, not getnameinfo(NI_NAMEREQD) (same glibc lookup, same name):
        # Debian 12's Python 3.11.2 holds the interpreter lock for the whole of a
        # getnameinfo, so one lookup waiting on a slow DNS server would stop every other
        # thread of the helper, the other lookups and the reading of requests included.
        name = socket.gethostbyaddr(address)[0]
    except UnicodeDecodeError as err:
        # Python decodes the name as strict UTF-8; the resolver hands any bytes on
        # (a Latin-1 name in /etc/hosts), as it does to libwrap. The error holds them
        # all: the name is kept as they are, as the configuration keeps its bytes.
        if not isinstance(err.object, bytes):
            return NO_NAME
        name = err.object.decode("utf-8", "surrogateescape")
    except (OSError, UnicodeError):
        return NO_NAME
    if not wanted():
        return NameInfo(name, False)
    # libwrap's confirmation (socket.c, sock_hostname): the name's forward lookup, in
    # the client's family, must give the reverse name back as its canonical name
    # (compared ignoring case; `localhost` excepted), or the name is an alias, a CNAME
    # in the DNS or a second name of an /etc/hosts line ("host name/name mismatch");
    # and then the client's address among its addresses ("host name/address
    # mismatch"). Either way the client is PARANOID.
    family = socket.AF_INET6 if ":" in address and not address.startswith("::ffff:") \
        else socket.AF_INET if ":" not in address else socket.AF_UNSPEC
    written = os.fsencode(name)
    try:
        # As bytes: a str goes through Python's IDNA codec, which refuses what the
        # resolver itself takes (a label over 63 characters, from /etc/hosts say), and
        # such a name would wrongly read as PARANOID.
        try:
            infos = socket.getaddrinfo(written, None, family,
                                       proto=socket.IPPROTO_TCP, flags=socket.AI_CANONNAME)
            canonical = os.fsencode(infos[0][3]) if infos else b""
        except UnicodeDecodeError as err:
            # A canonical name that is not UTF-8 (Python decodes it strictly): its
            # bytes are in the error; the addresses are asked for again without it.
            canonical = err.object if isinstance(err.object, bytes) else b""
            canonical = canonical.split(b"\0", 1)[0]
            infos = socket.getaddrinfo(written, None, family, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return NameInfo(name, False)
    # Compared as bytes, ignoring the case of A-Z only (strcasecmp in the C locale).
    shown = canonical.decode("utf-8", "surrogateescape")
    if canonical.lower() != written.lower() and written.lower() != b"localhost":
        return NameInfo(name, False, mismatch=f"host name/name mismatch: {name} != {shown}")
    found = {str(info[4][0]).split("%", 1)[0] for info in infos}
    if address in found:
        return NameInfo(name, True)
    plain = address[len("::ffff:"):] if address.startswith("::ffff:") else address
    return NameInfo(name, False, mismatch=f"host name/address mismatch: {plain} != {shown}")


def lookup_threads(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """DEFAULT_THREADS, or $PYXINETD_LOOKUP_THREADS when set to a whole number from 1
    (at most MAX_THREADS)."""
    try:
        value = int(environ.get(THREADS_ENV, DEFAULT_THREADS))
    except ValueError:
        return DEFAULT_THREADS
    if value < 1:
        return DEFAULT_THREADS
    return min(value, MAX_THREADS)


Answer = Callable[[int, NameInfo], None]
Resolve = Callable[[str, Callable[[], bool]], NameInfo]


class LookupPool:
    """Looks addresses up on a bounded, growing set of threads; `answer(id, info)` is
    called (from a pool thread) for every request still within its deadline."""

    def __init__(self, answer: Answer, *, max_threads: int | None = None,
                 resolve: Resolve = resolve, idle: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._answer = answer
        self._max = lookup_threads() if max_threads is None else max_threads
        self._resolve = resolve
        self._idle_seconds = idle
        self._clock = clock
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        # Addresses no thread has taken yet, oldest first.
        self._queue: deque[str] = deque()
        # The requests (id, deadline) of every address queued or being looked up.
        self._askers: dict[str, list[tuple[int, float]]] = {}
        # Addresses being looked up, and how many threads each client network holds.
        self._in_flight: set[str] = set()
        self._per_network: dict[str, int] = {}
        self._per_network_max = max(1, self._max // 2)
        self._threads = 0
        self._idle = 0       # threads waiting for work
        self._closed = False

    @property
    def threads(self) -> int:
        with self._lock:
            return self._threads

    def ask(self, request_id: int, address: str, until: float) -> None:
        """Look `address` up for request `request_id`, whose asker waits until the
        monotonic time `until`."""
        with self._lock:
            if self._closed:
                return
            askers = self._askers.get(address)
            if askers is not None:
                askers.append((request_id, until))
                return
            self._askers[address] = [(request_id, until)]
            self._queue.append(address)
            now = self._clock()
            self._drop_stale_head(now)
            # Past the bound by as many threads as are stuck in lookups nobody waits
            # for, and for a network with nothing in flight (up to MAX_THREADS): the
            # threads other networks hold, answered or not, never make it wait.
            if len(self._queue) > self._idle and self._threads < MAX_THREADS and (
                    self._threads < self._max + self._stuck(now)
                    or self._network_waits_alone(address)):
                try:
                    threading.Thread(target=self._run, daemon=True,
                                     name="lookup").start()
                    self._threads += 1
                except RuntimeError:
                    # No thread to be had (memory, process limits): the threads there
                    # are take it in turn, or it expires and the next ask tries again.
                    pass
            self._work.notify()

    def close(self) -> None:
        """Take no more requests; idle threads end now, busy ones after their lookup."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._askers.clear()
            self._work.notify_all()

    def _drop_stale_head(self, now: float) -> None:
        # Requests come with about the same timeout, so the oldest queued addresses are
        # the first to go stale: dropping them here keeps the queue to one deadline's
        # worth of requests even while every thread is stuck in a slow lookup.
        while self._queue:
            address = self._queue[0]
            if self._live(address, now):
                return
            self._queue.popleft()
            del self._askers[address]

    def _live(self, address: str, now: float) -> bool:
        return any(until > now for _, until in self._askers[address])

    def _network_waits_alone(self, address: str) -> bool:
        """Whether `address` (just queued) is the only one of its network queued or in
        flight (lock held)."""
        network = network_of(address)
        if network in self._per_network:
            return False
        return sum(1 for queued in self._queue if network_of(queued) == network) == 1

    def _stuck(self, now: float) -> int:
        """How many threads look up an address nobody waits for any more (lock held)."""
        return sum(1 for address in self._in_flight if not self._live(address, now))

    def _take(self) -> str | None:
        """The next address somebody still waits for, now in flight (lock held): of
        the networks below their share, the one with the fewest lookups in flight
        (oldest first among equals), so that a network's queued burst never keeps a
        client of another from the next free thread."""
        now = self._clock()
        best: tuple[int, int] | None = None     # (in flight for its network, index)
        for index, address in enumerate(self._queue):
            if not self._live(address, now):
                continue
            busy = self._per_network.get(network_of(address), 0)
            if busy < self._per_network_max and (best is None or busy < best[0]):
                best = (busy, index)
                if busy == 0:
                    break
        # Addresses nobody waits for any more go now (dropped unasked).
        stale = [a for a in self._queue if not self._live(a, now)]
        taken = self._queue[best[1]] if best is not None else None
        for address in stale:
            self._queue.remove(address)
            del self._askers[address]
        if taken is None:
            return None
        self._queue.remove(taken)
        network = network_of(taken)
        self._per_network[network] = self._per_network.get(network, 0) + 1
        self._in_flight.add(taken)
        return taken

    def _landed(self, address: str) -> None:
        """`address`'s lookup is over (lock held)."""
        self._in_flight.discard(address)
        network = network_of(address)
        left = self._per_network.get(network, 0) - 1
        if left > 0:
            self._per_network[network] = left
        else:
            self._per_network.pop(network, None)
        if self._queue:
            # An address its network's bound held back may go now.
            self._work.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                address = self._take()
                while address is None:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    notified = self._work.wait(self._idle_seconds)
                    self._idle -= 1
                    address = self._take()
                    if address is None and not notified:
                        self._threads -= 1
                        return
            try:
                info = self._resolve(address, lambda: self._wanted(address))
            except Exception:
                # Never seen; but a thread that ended here would keep its network's
                # slot (and its askers waiting) for good.
                info = NO_NAME
            self._deliver(address, info)

    def _wanted(self, address: str) -> bool:
        with self._lock:
            return address in self._askers and self._live(address, self._clock())

    def _deliver(self, address: str, info: NameInfo) -> None:
        with self._lock:
            self._landed(address)
            askers = self._askers.pop(address, [])
            now = self._clock()
        for request_id, until in askers:
            if until > now:
                self._answer(request_id, info)
