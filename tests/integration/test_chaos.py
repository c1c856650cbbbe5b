"""Chaos: signals at odd moments, hostile clients and misbehaving servers, all at once.

The real daemon serves one configuration with every kind of service on loopback. Each
test runs a bounded, seeded random schedule (the seed is printed; PYXINETD_CHAOS_SEED
replays one), then checks what the brief promises: the daemon is alive, every service
of the final configuration answers correctly, no zombie children, the descriptor table
is back to its baseline, and neither log holds a traceback or an "internal error".
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, HELPERS, free_port, open_fds, read_log, wait_until
from tests.helpers.procs import accept_queue, kill_if_running

DEADLINE = 5.0          # every socket operation of a client
CHAOS_SECONDS = 2.5     # length of each random schedule
HOSTILE_WAIT = 0.2      # how long a hostile client waits for anything

SEED = int(os.environ.get("PYXINETD_CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    # The same seed for every test of a run; mixed with the test name so the tests differ.
    print(f"chaos seed: PYXINETD_CHAOS_SEED={SEED}")
    return random.Random(f"{SEED}:{request.node.name}")


@dataclass(frozen=True)
class Ports:
    exec: int
    waitstream: int
    echo: int
    echo_dgram: int
    chargen: int
    daytime: int
    tcpmux: int
    relay: int
    udpwait: int
    servers: int
    intercepted: int


def make_ports(extra: int = 0) -> tuple[Ports, list[int]]:
    # free_port() never hands out the same port twice in a row.
    count = len(fields(Ports))
    ports = [free_port() for _ in range(count + extra)]
    return Ports(*ports[:count]), ports[count:]


def listener_inodes(ports: list[int]) -> set[str]:
    """Socket inodes of the listening (or bound UDP) sockets on these loopback ports."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/udp"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port in ports and fields[3] in ("0A", "07"):
                found.add(fields[9])
    return found


def service(name: str, **attrs: object) -> str:
    body = "\n".join(f"    {key} = {value}" for key, value in attrs.items())
    return f"service {name}\n{{\n{body}\n}}\n"


def stream(port: int, **attrs: object) -> dict[str, object]:
    return {"type": "UNLISTED", "socket_type": "stream", "protocol": "tcp", "port": port,
            "bind": "127.0.0.1", "wait": "no", "user": "root", **attrs}


def builtin(port: int, id: str, socket_type: str = "stream") -> dict[str, object]:
    return {"type": "INTERNAL UNLISTED", "id": id, "socket_type": socket_type,
            "protocol": "tcp" if socket_type == "stream" else "udp", "port": port,
            "bind": "127.0.0.1", "wait": "no" if socket_type == "stream" else "yes"}


def configuration(tmp_path: Path, p: Ports, *, with_daytime: bool = True,
                  extra: str = "") -> str:
    py = sys.executable
    parts = [f"""defaults
{{
    log_type = FILE {tmp_path / "services.log"}
    log_on_success = HOST PID EXIT
    log_on_failure = HOST
    instances = 60
    cps = 10000 1
}}
""",
        service("exec", **stream(p.exec, server="/bin/echo", server_args="exec-ok")),
        service("waitstream", **stream(p.waitstream, wait="yes", server=py,
                                       server_args=HELPERS / "wait_stream_server.py")),
        service("echo", **builtin(p.echo, "echo-stream")),
        service("echo", **builtin(p.echo_dgram, "echo-dgram", "dgram")),
        service("chargen", **builtin(p.chargen, "chargen-stream")),
        service("tcpmux", **builtin(p.tcpmux, "tcpmux")),
        service("muxed", type="TCPMUX UNLISTED", socket_type="stream", protocol="tcp",
                wait="no", user="root", server="/bin/echo", server_args="mux-ok"),
        service("relay", **stream(p.relay, redirect=f"127.0.0.1 {p.echo}")),
        service("udpwait", type="UNLISTED", socket_type="dgram", protocol="udp",
                port=p.udpwait, bind="127.0.0.1", wait="yes", user="root", server=py,
                server_args=HELPERS / "udp_wait_server.py"),
        service("servers", **builtin(p.servers, "servers")),
        # Every client of its wait = yes server passes through the master's relay.
        service("intercepted", **stream(p.intercepted, wait="yes", server=py,
                                        server_args=HELPERS / "wait_stream_server.py",
                                        flags="INTERCEPT", no_access="127.0.0.3")),
        # Its address never appears: it waits through every reload (the address watch
        # is closed and opened again around each one).
        service("late", **stream(p.exec, bind="203.0.113.1", server="/bin/echo")),
    ]
    if with_daytime:
        parts.append(service("daytime", **builtin(p.daytime, "daytime-stream")))
    return "\n".join(parts) + extra


# -- clients -------------------------------------------------------------------------

def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)


def read_all(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    chunks = []
    total = 0
    while total < limit:
        data = conn.recv(65536)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


def ask(port: int, send: bytes = b"", shut: bool = True) -> bytes:
    with connect(port) as c:
        if send:
            c.sendall(send)
        if shut:
            c.shutdown(socket.SHUT_WR)
        return read_all(c)


def ask_dgram(port: int, data: bytes) -> bytes:
    """Send until answered, as a UDP client does: a dgram wait = yes service discards
    the datagrams that arrive while its server runs (xinetd's drain on reap)."""
    deadline = time.monotonic() + DEADLINE
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        while True:
            s.sendto(data, ("127.0.0.1", port))
            try:
                return s.recv(65536)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


CHARGEN_LINE = re.compile(rb"^[!-}]{72}\r\n")
DAYTIME = re.compile(rb"^\d\d [A-Z]{3} \d{4} \d\d:\d\d:\d\d \S+\r\n$")


def replace_config(conf: Path, text: str) -> None:
    """Swap the configuration in one rename, as an administrator's tools should: a
    reload that reads a half-written file sees only part of it (xinetd and pyxinetd
    alike), and a truncated file drops the services it no longer shows."""
    tmp = conf.with_name(conf.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, conf)


def probes(p: Ports, *, with_daytime: bool = True) -> dict[str, Callable[[], None]]:
    """One correct request per service, each asserting the exact answer."""
    def exec_() -> None:
        assert ask(p.exec) == b"exec-ok\n"

    def waitstream() -> None:
        with connect(p.waitstream) as c:
            c.sendall(b"hello\n")
            reply = read_all(c)
        assert re.fullmatch(rb"pid=\d+\nhello\n", reply), reply

    def echo() -> None:
        assert ask(p.echo, b"ping\0\xff") == b"ping\0\xff"

    def echo_dgram() -> None:
        assert ask_dgram(p.echo_dgram, b"dgram") == b"dgram"

    def chargen() -> None:
        with connect(p.chargen) as c:
            data = b""
            while len(data) < 74:
                chunk = c.recv(4096)
                assert chunk
                data += chunk
        assert CHARGEN_LINE.match(data), data[:80]

    def daytime() -> None:
        assert DAYTIME.match(ask(p.daytime))

    def tcpmux() -> None:
        assert ask(p.tcpmux, b"MUXED\r\n") == b"mux-ok\n"

    def relay() -> None:
        assert ask(p.relay, b"relayed") == b"relayed"

    def udpwait() -> None:
        assert re.fullmatch(rb"pid=\d+ got=u", ask_dgram(p.udpwait, b"u"))

    def intercepted() -> None:
        with connect(p.intercepted) as c:
            c.sendall(b"hello\n")
            reply = read_all(c)
        assert re.fullmatch(rb"pid=\d+\nhello\n", reply), reply

    found = {"exec": exec_, "waitstream": waitstream, "echo": echo,
             "echo_dgram": echo_dgram, "chargen": chargen, "tcpmux": tcpmux,
             "relay": relay, "udpwait": udpwait, "intercepted": intercepted}
    if with_daytime:
        found["daytime"] = daytime
    return found


# -- invariants ----------------------------------------------------------------------

def program_problems(daemon: Daemon, tmp_path: Path) -> list[str]:
    texts = [daemon.log()] + [f.read_text(errors="replace") for f in tmp_path.glob("*.err")]
    texts.append(service_log(tmp_path))
    return [line for text in texts for line in text.splitlines()
            if "Traceback" in line or "internal error" in line or "unexpected error" in line]


def service_log(tmp_path: Path) -> str:
    return read_log(tmp_path / "services.log")


def external_children(daemon: Daemon) -> list[int]:
    return daemon.children()


def reloads_in_progress(log: str) -> int:
    """Loads started and not yet ended (applied, or failed and the old kept)."""
    return log.count("Starting reconfiguration") - log.count("Reconfigured:") \
        - log.count("reconfiguration failed")


def check_healthy(daemon: Daemon, tmp_path: Path, baseline: dict[int, str],
                  checks: dict[str, Callable[[], None]]) -> None:
    assert daemon.proc.poll() is None, daemon.log()
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            raise AssertionError(f"service {name} no longer answers: {exc!r}") from exc
    # Every server has ended (the probes' own ones too) and was reaped: no zombies, and
    # no descriptor is left over. Both settle once the last EXIT was handled.
    wait_until(lambda: not external_children(daemon), what="servers to end")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
    # A reload may reopen a log file or bind a socket again, so descriptor numbers and
    # socket inodes may change; what is open, counted by kind, must be exactly the same.
    deadline = time.monotonic() + 5.0
    while kinds(now := open_fds(daemon.pid)) != kinds(baseline) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kinds(now) == kinds(baseline), (now, baseline)
    assert program_problems(daemon, tmp_path) == []


def kinds(fds: dict[int, str]) -> list[str]:
    """What the descriptors point at, sorted, with socket and pipe inodes left out."""
    return sorted(re.sub(r":\[\d+\]", ":[]", link) for link in fds.values())


def settle_baseline(daemon: Daemon, checks: dict[str, Callable[[], None]]) -> dict[int, str]:
    """Serve every service once (lazy opens happen now), then record the descriptors
    once they hold still: the probes' last sockets (an intercepted client's relay, its
    server's private socket) close a few loop turns after the probe is done, later still
    on a loaded machine, and a baseline taken before would count them."""
    for check in checks.values():
        check()
    wait_until(lambda: not external_children(daemon), what="servers to end")
    deadline = time.monotonic() + 5.0
    previous = open_fds(daemon.pid)
    while True:
        time.sleep(0.2)
        current = open_fds(daemon.pid)
        if kinds(current) == kinds(previous) or time.monotonic() > deadline:
            return current
        previous = current


def servers_reply(port: int) -> bytes:
    return ask(port, shut=False)


# -- the daemon ----------------------------------------------------------------------

@pytest.fixture
def dump_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(path))
    return path


class Hammer:
    """Client threads sending correct requests, round robin, until stopped."""

    def __init__(self, checks: dict[str, Callable[[], None]], threads: int,
                 rng: random.Random) -> None:
        self.checks = checks
        self.stop = threading.Event()
        self.done = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(rng.randrange(2**32),),
                                          daemon=True) for _ in range(threads)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        names = sorted(self.checks)
        while not self.stop.is_set():
            name = rng.choice(names)
            try:
                self.checks[name]()
            except Exception as exc:
                with self._lock:
                    self.failures.append(f"{name}: {exc!r}")
            with self._lock:
                self.done += 1

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(DEADLINE * 3)
        assert not any(t.is_alive() for t in self._threads)


# -- 1. signals at odd moments ---------------------------------------------------------

CHAOS_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD,
                 signal.SIGPIPE, signal.SIGALRM, signal.SIGWINCH, signal.SIGABRT)


def test_signals_while_clients_hammer(daemons: DaemonFactory, tmp_path: Path,
                                      dump_file: Path, rng: random.Random) -> None:
    p, (broken_port,) = make_ports(1)
    full = configuration(tmp_path, p)
    without_daytime = configuration(tmp_path, p, with_daytime=False)
    # A third version with one bad line: only that service is left out, with file:line.
    broken = configuration(tmp_path, p, extra=service("broken", **stream(
        broken_port, server="/bin/echo", instances="many")))
    bad_line = broken.splitlines().index("    instances = many") + 1
    daemon = daemons.start_config(full)
    conf = tmp_path / "daemon1.conf"
    all_checks = probes(p)
    baseline = settle_baseline(daemon, all_checks)
    # daytime comes and goes with the reloads: only the others must never fail.
    stable = {k: v for k, v in all_checks.items() if k != "daytime"}
    sent: dict[str, int] = {}
    with Hammer(stable, threads=4, rng=rng) as hammer:
        end = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < end:
            signum = rng.choice(CHAOS_SIGNALS)
            if signum == signal.SIGHUP:
                replace_config(conf, rng.choice([full, without_daytime, broken]))
            daemon.signal(signum)
            sent[signal.Signals(signum).name] = sent.get(signal.Signals(signum).name, 0) + 1
            time.sleep(rng.uniform(0.0, 0.05))
    print(f"signals sent: {sent}; requests served: {hammer.done}")
    assert hammer.failures == []
    assert hammer.done > 0
    # Back to the full configuration, and make sure the daemon has read it.
    replace_config(conf, full)
    count = daemon.log().count("Reconfigured:")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("Reconfigured:", count=count + 1)
    # That line may end a load the storm started, with this SIGHUP's load run after it
    # (a request during a load is run once it ends): wait until every load has ended.
    wait_until(lambda: reloads_in_progress(daemon.log()) == 0, what="the last reload")
    daemon.signal(signal.SIGABRT)
    daemon.wait_for_log("Consistency check passed")
    assert "Consistency check detected" not in daemon.log()
    assert dump_file.exists() == ("SIGUSR1" in sent)
    for line in daemon.log().splitlines():
        if "broken" in line and "ERROR" in line:
            assert f"[file={conf}] [line={bad_line}]" in line, line
    check_healthy(daemon, tmp_path, baseline, all_checks)


# -- 2. hostile clients ----------------------------------------------------------------

def rst(conn: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0) instead of a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def hostile_tcp(rng: random.Random, port: int, held: list[socket.socket]) -> str:
    """One hostile connection; returns what it did (for the failure message)."""
    kind = rng.choice(["long", "binary", "nuls", "halfopen", "reset", "reset-after-send",
                       "noread", "burst-reset"])
    if kind == "burst-reset":
        # Reset before the daemon even accepts: its accept() hands it a dead socket.
        burst = []
        try:
            for _ in range(10):
                burst.append(connect(port))
        except OSError:
            pass
        for c in burst:
            rst(c)
        return kind
    try:
        c = connect(port)
    except OSError as exc:
        return f"{kind}: connect failed {exc!r}"
    c.settimeout(HOSTILE_WAIT)
    try:
        if kind == "long":
            c.sendall(b"A" * rng.randrange(10_000, 200_000))
        elif kind == "binary":
            c.sendall(random_bytes(rng, rng.randrange(1, 4096)))
        elif kind == "nuls":
            c.sendall(b"\0" * rng.randrange(1, 4096))
        elif kind == "halfopen":
            held.append(c)      # never sends; closed at the end of the test
            return kind
        elif kind == "reset":
            c.recv(1)
        elif kind == "reset-after-send":
            c.sendall(random_bytes(rng, 512))
        elif kind == "noread":
            held.append(c)      # sends a line, never reads what comes back
            c.sendall(b"x" * 100 + b"\r\n")
            return kind
    except OSError:
        pass                    # the service may close first: that is its right
    if kind.startswith("reset"):
        rst(c)
    elif rng.random() < 0.5:
        rst(c)
    else:
        c.close()
    return kind


TCPMUX_GARBAGE = [b"\r\n", b"no-such-service\r\n", b"x" * 5000, b"\0\0\0\r\n",
                  b"muxed", b"MUXED\n", b"\xff\xfe\r\n", b"help\r\n", b"muxed\0\r\n",
                  b"a" * 1023 + b"\r\n"]


def hostile_tcpmux(rng: random.Random, port: int) -> None:
    with connect(port) as c:
        c.settimeout(HOSTILE_WAIT)
        try:
            c.sendall(rng.choice(TCPMUX_GARBAGE))
            if rng.random() < 0.5:
                c.shutdown(socket.SHUT_WR)
            read_all(c)
        except OSError:
            pass


def hostile_udp(rng: random.Random, port: int, sockets: list[socket.socket]) -> None:
    s = rng.choice(sockets)
    size = rng.choice([0, 1, 2048, 65507, rng.randrange(0, 9000)])
    data = b"\0" * size if rng.random() < 0.3 else random_bytes(rng, min(size, 9000)) \
        + b"z" * max(0, size - 9000)
    try:
        s.sendto(data, ("127.0.0.1", port))
    except OSError:
        pass


def test_hostile_clients(daemons: DaemonFactory, tmp_path: Path, dump_file: Path,
                         rng: random.Random) -> None:
    p, _ = make_ports()
    daemon = daemons.start_config(configuration(tmp_path, p))
    checks = probes(p)
    baseline = settle_baseline(daemon, checks)
    tcp_ports = {"exec": p.exec, "waitstream": p.waitstream, "echo": p.echo,
                 "chargen": p.chargen, "daytime": p.daytime, "relay": p.relay,
                 "servers": p.servers, "tcpmux": p.tcpmux}
    udp_ports = [p.echo_dgram, p.udpwait]
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for s in senders:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    held: list[socket.socket] = []
    done: list[str] = []
    hit: set[str] = set()
    try:
        # A half-open client holds the single server of a wait = yes service (by design,
        # as with xinetd): that one is checked after the hostile clients have gone.
        others = {k: v for k, v in checks.items() if k != "waitstream"}
        with Hammer(others, threads=2, rng=rng) as hammer:
            end = time.monotonic() + CHAOS_SECONDS
            while time.monotonic() < end:
                what = rng.choice([*tcp_ports, "tcpmux-garbage", "udp", "signal"])
                if what == "signal":
                    # The same configuration again: in-loop sessions and held servers
                    # of unchanged services must survive it.
                    daemon.signal(rng.choice(CHAOS_SIGNALS))
                elif what == "udp":
                    hostile_udp(rng, rng.choice(udp_ports), senders)
                elif what == "tcpmux-garbage":
                    hostile_tcpmux(rng, p.tcpmux)
                else:
                    done.append(f"{what}:{hostile_tcp(rng, tcp_ports[what], held)}")
                    hit.add(what)
                # Half-open and non-reading clients cost the daemon a descriptor each;
                # keep their number bounded.
                while len(held) > 20:
                    rst(held.pop(rng.randrange(len(held))))
        print(f"hostile actions: {len(done)}; requests served meanwhile: {hammer.done}")
        assert hammer.failures == []
    finally:
        for c in held:
            rst(c)
        for s in senders:
            s.close()
    # Connections still queued for waitstream are served one server at a time, each a
    # Python start (dead ones included): on a busy machine a long queue outlasts a
    # probe's deadline, so it is left to drain first, as are the datagrams queued for
    # udpwait before the descriptor table is compared with where it was.
    wait_until(lambda: accept_queue(p.waitstream) == 0, 60.0,
               what="the connections queued for waitstream served")
    check_healthy(daemon, tmp_path, baseline, checks)
    # Every hostile connection was logged with its peer, as xinetd logs it: a wait = yes
    # stream service is accepted by its server, so the master knows no peer there.
    log = service_log(tmp_path)
    for line in log.splitlines():
        if re.search(r"(START|FAIL): waitstream ", line):
            assert "from=<no address>" in line, line
        elif re.search(r"(START|FAIL): ", line):
            assert "from=127.0.0.1" in line, line
    logged_as = {"exec": "exec", "waitstream": "waitstream", "echo": "echo-stream",
                 "chargen": "chargen-stream", "relay": "relay", "daytime": "daytime-stream",
                 "tcpmux": "tcpmux"}
    for name, service_id in logged_as.items():
        if name in hit:
            assert re.search(rf"START: {service_id} pid=\d+ from=", log), name


# -- 3. servers that misbehave ---------------------------------------------------------

MODES = ("exit", "kill", "hang", "stubborn", "closeout", "grandchild")
REMOVED = ("hang", "stubborn")      # taken out by a reload while their servers run


def misbehaving(piddir: Path, ports: dict[str, int]) -> str:
    return "\n".join(service(f"bad-{mode}", **stream(
        port, server=sys.executable,
        server_args=f"{HELPERS / 'misbehaving_server.py'} {mode} {piddir}"))
        for mode, port in ports.items())


def recorded_pids(piddir: Path) -> list[int]:
    return [int(f.name.rsplit(".", 1)[1]) for f in piddir.iterdir()]


def kill_recorded(piddir: Path) -> None:
    """SIGKILL the misbehaving servers (and grandchildren) of `piddir` still running:
    most recorded pids are of servers long gone, maybe given to other processes since."""
    for pid in recorded_pids(piddir):
        kill_if_running(pid, str(piddir))


@pytest.fixture
def piddir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    path.mkdir()
    try:
        yield path
    finally:
        kill_recorded(path)


def test_misbehaving_servers(daemons: DaemonFactory, tmp_path: Path, dump_file: Path,
                             piddir: Path, rng: random.Random,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "0.3")
    p, more = make_ports(len(MODES))
    bad_ports = dict(zip(MODES, more))
    daemon = daemons.start_config(configuration(tmp_path, p,
                                                extra=misbehaving(piddir, bad_ports)))
    conf = tmp_path / "daemon1.conf"
    checks = probes(p)
    baseline = settle_baseline(daemon, checks)
    held: list[socket.socket] = []
    with Hammer(checks, threads=3, rng=rng) as hammer:
        end = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < end:
            mode = rng.choice(MODES)
            try:
                c = connect(bad_ports[mode])
            except OSError as exc:
                raise AssertionError(f"bad-{mode} refused a connection: {exc!r}") from exc
            if mode in ("hang", "stubborn", "closeout") and len(held) < 12:
                held.append(c)
            else:
                c.close()
            time.sleep(rng.uniform(0.0, 0.05))
    print(f"requests served meanwhile: {hammer.done}")
    assert hammer.failures == []
    for c in held:
        c.close()
    # A reload removes the services whose servers hang: SIGTERM, then SIGKILL for the
    # one that ignores SIGTERM, both from the daemon.
    removed_pids = [pid for pid in recorded_pids(piddir)
                    if any((piddir / f"{m}.{pid}").exists() for m in REMOVED)]
    gone = listener_inodes([bad_ports[m] for m in REMOVED])
    assert len(gone) == len(REMOVED)
    baseline = {fd: link for fd, link in baseline.items()
                if link.removeprefix("socket:[").rstrip("]") not in gone}
    replace_config(conf, configuration(tmp_path, p, extra=misbehaving(
        piddir, {m: port for m, port in bad_ports.items() if m not in REMOVED})))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("Reconfigured:")
    wait_until(lambda: not set(removed_pids) & set(external_children(daemon)),
               what="the servers of the removed services to be terminated and reaped")
    for mode in REMOVED:
        with pytest.raises(ConnectionRefusedError):
            connect(bad_ports[mode]).close()
    # The other hung servers never end on their own: kill them by the pids they recorded.
    kill_recorded(piddir)
    wait_until(lambda: not external_children(daemon), what="misbehaving servers to be reaped")
    # No running instance is left: in the servers list and in the dump's counters.
    assert servers_reply(p.servers) == b""
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("generated state dump in file")
    dump = dump_file.read_text()
    counters = re.findall(r"running servers = (\d+)", dump)
    assert counters and set(counters) == {"0"}, counters
    daemon.signal(signal.SIGABRT)
    daemon.wait_for_log("Consistency check passed")
    # Each kind of ending was logged with its status, naming the peer at START.
    log = service_log(tmp_path)
    assert re.search(r"EXIT: bad-kill signal=9", log) or "bad-kill" not in log, log[-2000:]
    for line in log.splitlines():
        if line.startswith("START: bad-"):
            assert "from=127.0.0.1" in line, line
    check_healthy(daemon, tmp_path, baseline, checks)
