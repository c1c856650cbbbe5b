"""Failed forks (reference §4.15), for real: the daemon runs as nobody, and its
RLIMIT_NPROC soft limit is lowered while it runs, so the kernel refuses its forks with
EAGAIN until the limit is raised again.

The daemon is started through setpriv (uid and gid of nobody, no supplementary
groups). It keeps CAP_DAC_READ_SEARCH as an ambient capability only so that an
interpreter installed under a private home (here /root) can still be read; that
capability has no bearing on the process limit (only CAP_SYS_RESOURCE/CAP_SYS_ADMIN
bypass it). The limit is changed by a process of the same user (prlimit(2) needs
matching ids, or CAP_SYS_RESOURCE, which a container's root may lack); only the soft
limit moves, so it can always be put back.

RLIMIT_NPROC counts every process of the user, so a limit of 1 makes every fork of the
daemon fail, whatever else runs as nobody. $PYXINETD_FORK_RETRY_INTERVAL shortens the
5 s retry interval, so the give-up path (5 failures) runs in about a second.
"""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.daemon import Daemon, HELPERS, READY_TIMEOUT, free_port, read_log, wait_until
from tests.integration.test_intercept import release, udp_from

SETPRIV = shutil.which("setpriv")
PRLIMIT = shutil.which("prlimit")
# The helper server runs as nobody, whose access(2) checks see no capability: an
# interpreter under a private home would not count as executable.
SERVER_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the daemon as nobody"),
    pytest.mark.skipif(SETPRIV is None or PRLIMIT is None, reason="needs util-linux"),
]


def _nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def _as_nobody(*argv: str) -> list[str]:
    user = _nobody()
    assert SETPRIV is not None
    return [SETPRIV, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            *argv]


class Box:
    """A directory nobody can write to, with a daemon running as nobody in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.daemons: list[Daemon] = []

    def service_log(self) -> str:
        return read_log(self.path / "services.log")

    def wait_service_log(self, pattern: str) -> None:
        wait_until(lambda: re.search(pattern, self.service_log()),
                   what=f"service log {pattern!r}")

    def start(self, services: str, interval: str) -> Daemon:
        conf = self.path / f"daemon{len(self.daemons)}.conf"
        log = self.path / f"daemon{len(self.daemons)}.log"
        conf.write_text(f"defaults\n{{\n\tlog_type = FILE {self.path / 'services.log'}\n"
                        "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}\n"
                        + services)
        conf.chmod(0o644)
        env = dict(os.environ, PYXINETD_FORK_RETRY_INTERVAL=interval)
        argv = _as_nobody("--inh-caps", "+dac_read_search", "--ambient-caps",
                          "+dac_read_search", sys.executable, "-m", "pyxinetd", "-f",
                          str(conf), "-dontfork", "-filelog", str(log))
        with open(self.path / "daemon.err", "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    start_new_session=True, cwd=self.path, env=env)
        daemon = Daemon(proc, log)
        self.daemons.append(daemon)
        daemon.wait_for_log(r"Started working: \d+ available service", READY_TIMEOUT)
        return daemon


def set_process_limit(daemon: Daemon, soft: int) -> None:
    """Set the running daemon's RLIMIT_NPROC soft limit (the hard one is kept)."""
    assert PRLIMIT is not None
    value = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    subprocess.run(_as_nobody(PRLIMIT, f"--pid={daemon.pid}", f"--nproc={value}:"),
                   check=True, timeout=10, capture_output=True)


def restore_process_limit(daemon: Daemon) -> None:
    # The daemon inherited this process's limits; its hard limit is ours.
    set_process_limit(daemon, resource.getrlimit(resource.RLIMIT_NPROC)[1])


@pytest.fixture
def box() -> Iterator[Box]:
    path = Path(tempfile.mkdtemp(prefix="pyxinetd-forkretry-", dir="/tmp"))
    path.chmod(0o777)
    b = Box(path)
    try:
        yield b
    finally:
        for daemon in b.daemons:
            daemon.stop()
        shutil.rmtree(path, ignore_errors=True)


def service(name: str, port: int, *extra: str, **attrs: str) -> str:
    lines = {"type": "UNLISTED", "socket_type": "stream", "protocol": "tcp",
             "port": str(port), "bind": "127.0.0.1", "wait": "no", "user": "nobody",
             "server": "/bin/echo", "server_args": f"hello from {name}", **attrs}
    body = "".join(f"\t{key} = {value}\n" for key, value in lines.items())
    body += "".join(f"\t{line}\n" for line in extra)
    return f"service {name}\n{{\n{body}}}\n"


def held_by_a_failed_fork(daemon: Daemon, port: int, service_id: str) -> socket.socket:
    """A client of `service_id` whose server's fork failed (the process limit), held for
    its retry. Forks work again afterwards: a reload loads the configuration in a child
    process."""
    set_process_limit(daemon, 1)
    try:
        client = connect(port)
        daemon.wait_for_log(rf"{service_id}: fork failed: Resource temporarily unavailable")
    finally:
        restore_process_limit(daemon)
    return client


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def nothing_yet(sock: socket.socket) -> bool:
    """True when the connection is open and nothing has arrived on it."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(timeout)
    return False


def test_held_connection_and_datagram_are_served_once_fork_works(box: Box) -> None:
    held, noretry, udp = free_port(), free_port(), free_port()
    daemon = box.start(
        service("held", held, instances="1")
        + service("noretry", noretry, "flags = NORETRY")
        + service("udpwait", udp, socket_type="dgram", protocol="udp", wait="yes",
                  server=SERVER_PYTHON,
                  server_args=str(HELPERS / "udp_wait_server.py")),
        interval="1")
    set_process_limit(daemon, 1)
    try:
        # NORETRY: one failed fork and the request is given up at once.
        with connect(noretry) as c:
            assert read_all(c) == b""
        box.wait_service_log(r"FAIL: noretry fork from=127\.0\.0\.1")
        # xinetd's `%m`: the errno follows the text.
        assert ("ERROR: noretry: fork failed: Resource temporarily unavailable "
                "(errno = 11)\n") in daemon.log()

        # Retried: the connection stays open, and holds its instance slot.
        client = connect(held)
        daemon.wait_for_log(r"held: fork failed: Resource temporarily unavailable")
        assert nothing_yet(client)
        with connect(held) as second:
            assert read_all(second) == b""
        box.wait_service_log(r"FAIL: held service_limit from=127\.0\.0\.1")

        # dgram/wait: the datagram stays queued for the retry.
        udp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_client.settimeout(10)
        udp_client.sendto(b"ping", ("127.0.0.1", udp))
        daemon.wait_for_log(r"udpwait: fork failed: Resource temporarily unavailable")
    finally:
        restore_process_limit(daemon)
    with client, udp_client:
        assert read_all(client) == b"hello from held\n"
        reply = udp_client.recv(1000).decode()
        assert reply.startswith("pid=") and reply.endswith("got=ping")
    box.wait_service_log(r"START: held pid=\d+ from=127\.0\.0\.1")
    box.wait_service_log(r"START: udpwait pid=\d+ from=127\.0\.0\.1")
    log = daemon.log()
    assert "too many consecutive fork failures" not in log
    assert "FAIL: held fork" not in box.service_log()
    # Nothing is left held: a new client is served at once.
    with connect(held) as c:
        assert read_all(c) == b"hello from held\n"


def test_five_consecutive_failures_give_up(box: Box) -> None:
    port = free_port()
    daemon = box.start(service("gives", port), interval="0.1")
    set_process_limit(daemon, 1)
    try:
        with connect(port) as c:
            daemon.wait_for_log(r"service gives: too many consecutive fork failures")
            # Given up: the held connection is closed.
            assert read_all(c) == b""
        box.wait_service_log(r"FAIL: gives fork from=127\.0\.0\.1")
        failures = re.findall(r"gives: fork failed: Resource temporarily unavailable",
                              daemon.log())
        assert len(failures) == 5
        # Still failing: the next request is not held (the count resets only when a
        # fork succeeds).
        with connect(port) as c:
            assert read_all(c) == b""
        box.wait_service_log(r"(?s)FAIL: gives fork.*FAIL: gives fork")
    finally:
        restore_process_limit(daemon)
    with connect(port) as c:
        assert read_all(c) == b"hello from gives\n"
    box.wait_service_log(r"START: gives pid=\d+")


def test_reload_removing_the_service_releases_held_connections(box: Box) -> None:
    gone, kept = free_port(), free_port()
    daemon = box.start(service("gone", gone) + service("kept", kept), interval="60")
    client = held_by_a_failed_fork(daemon, gone, "gone")
    with client:
        assert nothing_yet(client)
        conf = daemon.log_path.with_suffix(".conf")
        new = conf.with_suffix(".new")
        text = conf.read_text()
        new.write_text(text[:text.index("service gone")] + service("kept", kept))
        new.chmod(0o644)
        new.replace(conf)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"Reconfigured: new=0 old=1 dropped=1")
        # Released without a server and without a FAIL line.
        assert read_all(client) == b""
    log = box.service_log()
    assert "START: gone" not in log and "FAIL: gone" not in log
    # One WARNING, naming the peer, as for every other client a removal closes.
    assert re.search(r"WARNING: .*service gone: 1 request from 127\.0\.0\.1 held for a "
                     r"fork retry dropped: a reload removed the service", daemon.log())
    with connect(kept) as c:
        assert read_all(c) == b"hello from kept\n"


def test_reload_changing_the_bind_gives_up_held_connections_with_a_fail_line(
        box: Box) -> None:
    port = free_port()
    daemon = box.start(service("moved", port), interval="60")
    client = held_by_a_failed_fork(daemon, port, "moved")
    with client:
        assert nothing_yet(client)
        conf = daemon.log_path.with_suffix(".conf")
        new = conf.with_suffix(".new")
        text = conf.read_text()
        new.write_text(text.replace("bind = 127.0.0.1", "bind = 127.0.0.2"))
        new.chmod(0o644)
        new.replace(conf)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"Reconfigured: new=0 old=1 dropped=0")
        # The request cannot be retried on the old socket: it ends at the reload, as a
        # request given up after its last failed fork does (not at its retry, 60 s on).
        assert read_all(client) == b""
    box.wait_service_log(r"FAIL: moved fork from=127\.0\.0\.1")
    assert "START: moved" not in box.service_log()
    # Its slot is free again: the service, on its new address, serves at once.
    with socket.create_connection(("127.0.0.2", port), timeout=10) as c:
        c.settimeout(10)
        assert read_all(c) == b"hello from moved\n"
    box.wait_service_log(r"START: moved pid=\d+")


def test_stream_wait_request_stays_queued_until_fork_works(box: Box) -> None:
    port = free_port()
    daemon = box.start(service("swait", port, wait="yes", server=SERVER_PYTHON,
                               server_args=str(HELPERS / "wait_stream_server.py")),
                       interval="1")
    set_process_limit(daemon, 1)
    try:
        client = connect(port)
        # Held across a retry that fails too: the connection stays in the listen
        # queue (the server is to accept it), nobody accepts or closes it.
        daemon.wait_for_log(r"swait: fork failed: Resource temporarily unavailable",
                            count=2)
        assert nothing_yet(client)
    finally:
        restore_process_limit(daemon)
    with client:
        # The retry starts the server, which accepts the queued connection itself.
        assert client.recv(100).startswith(b"pid=")
        client.sendall(b"still here\n")
        assert read_all(client) == b"still here\n"
    box.wait_service_log(r"START: swait pid=\d+ from=<no address>")
    assert "too many consecutive fork failures" not in daemon.log()
    assert "FAIL: swait" not in box.service_log()
    # The socket is watched again after the server's exit: the next client is served.
    with connect(port) as c:
        assert c.recv(100).startswith(b"pid=")


def test_stream_wait_request_given_up_is_accepted_and_closed(box: Box) -> None:
    port = free_port()
    daemon = box.start(service("swaitgone", port, wait="yes", server=SERVER_PYTHON,
                               server_args=str(HELPERS / "wait_stream_server.py")),
                       interval="0.1")
    set_process_limit(daemon, 1)
    try:
        with connect(port) as c, connect(port) as behind:
            daemon.wait_for_log(r"service swaitgone: too many consecutive fork failures")
            # Given up: the daemon accepts the queued connection and closes it.
            assert read_all(c) == b""
            # The one queued behind it fails at once (the failures are not reset)
            # and goes the same way.
            assert read_all(behind) == b""
        box.wait_service_log(r"(?s)FAIL: swaitgone fork from=<no address>.*"
                             r"FAIL: swaitgone fork from=<no address>")
    finally:
        restore_process_limit(daemon)
    # The socket is watched again: a new client gets a server.
    with connect(port) as c:
        assert c.recv(100).startswith(b"pid=")
    box.wait_service_log(r"START: swaitgone pid=\d+")


def test_dgram_nowait_relay_queues_the_peers_datagrams_while_held(box: Box) -> None:
    port = free_port()
    daemon = box.start(service("dnowait", port, socket_type="dgram", protocol="udp",
                               server=SERVER_PYTHON,
                               server_args=f"{HELPERS / 'dgram_nowait_server.py'} 1"),
                       interval="1")
    set_process_limit(daemon, 1)
    udp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_client.settimeout(10)
    with udp_client:
        try:
            udp_client.sendto(b"one", ("127.0.0.1", port))
            daemon.wait_for_log(r"dnowait: fork failed: Resource temporarily unavailable")
            # A later datagram of the same peer joins the held relay instead of
            # starting (or failing) a server of its own.
            udp_client.sendto(b"two", ("127.0.0.1", port))
            daemon.wait_for_log(r"dnowait: fork failed: Resource temporarily unavailable",
                                count=2)
        finally:
            restore_process_limit(daemon)
        first = udp_client.recv(1000).decode()
        second = udp_client.recv(1000).decode()
    assert re.fullmatch(r"pid=\d+ got=one", first)
    # Delivered to the same server, once it started.
    assert second == first.replace("got=one", "got=two")
    box.wait_service_log(r"START: dnowait pid=\d+ from=127\.0\.0\.1")
    log = box.service_log()
    assert len(re.findall(r"START: dnowait", log)) == 1
    assert "FAIL: dnowait" not in log


class HeldSenders:
    """An intercepted dgram service (libwrap in.icept, a two-datagram server) whose
    senders 127.0.0.6, then 127.0.0.5, are admitted (their aclexec checks gated) after
    its first server exited; the next server's fork fails for 127.0.0.6, so both stay
    held for the retry (5 s away)."""

    def __init__(self, box: Box) -> None:
        gates = {source: box.path / f"gate{source[-1]}"
                 for source in ("127.0.0.5", "127.0.0.6")}
        rules = ""
        for source, gate in gates.items():
            os.mkfifo(gate, 0o666)
            gate.chmod(0o666)
            rules += f"in.icept: {source}: aclexec /bin/sh -c 'head -c 1 {gate} >/dev/null'\n"
        (box.path / "hosts.allow").write_text(rules)
        (box.path / "hosts.deny").write_text("")
        self.port = port = free_port()
        conf = service("icept", port, "flags = INTERCEPT", "libwrap = in.icept",
                       socket_type="dgram", protocol="udp", wait="yes", server=SERVER_PYTHON,
                       server_args=f"-I -S {HELPERS / 'intercept_server.py'} 2")
        environ = {"PYXINETD_HOSTS_ALLOW": str(box.path / "hosts.allow"),
                   "PYXINETD_HOSTS_DENY": str(box.path / "hosts.deny")}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            self.daemon = daemon = box.start(conf, interval="5")
        self.conf_file = box.path / "daemon0.conf"
        self.senders = {source: udp_from(source)
                        for source in ("127.0.0.2", "127.0.0.5", "127.0.0.6")}
        try:
            self.a, self.second, self.first = self.senders.values()
            self.a.sendto(b"a1", ("127.0.0.1", port))
            self.server = self.a.recv(1000).decode().split()[0]
            self.first.sendto(b"r1", ("127.0.0.1", port))
            self.second.sendto(b"k1", ("127.0.0.1", port))
            self.a.sendto(b"a2", ("127.0.0.1", port))
            assert self.a.recv(1000).decode() == f"{self.server} peer=127.0.0.1 got=a2"
            box.wait_service_log(rf"EXIT: icept status=0 {self.server}")
            set_process_limit(daemon, 1)
            try:
                release(gates["127.0.0.6"])
                daemon.wait_for_log(r"icept: fork failed: Resource temporarily unavailable")
            finally:
                # A reload loads the configuration in a child process: forks must
                # work again.
                restore_process_limit(daemon)
            release(gates["127.0.0.5"])
        except BaseException:
            self.close()
            raise

    def reload(self, *lines: str) -> None:
        """Add `lines` to the service and reload, before the retry."""
        self.conf_file.write_text(self.conf_file.read_text().replace(
            "\tflags = INTERCEPT\n",
            "\tflags = INTERCEPT\n" + "".join(f"\t{line}\n" for line in lines)))
        self.daemon.signal(signal.SIGHUP)

    def close(self) -> None:
        for sock in self.senders.values():
            sock.close()


def test_a_reload_during_a_fork_retry_judges_the_held_datagram_senders_again(
        box: Box) -> None:
    # A reload refuses the sender the fork failed for: the retry serves the other, and
    # never the refused one (before: the retry started the server for the sender its
    # fork had failed for, refused or not).
    held = HeldSenders(box)
    try:
        held.reload("no_access = 127.0.0.6")
        held.daemon.wait_for_log(r"WARNING: .*service icept client 127\.0\.0\.6 of the "
                                 r"next server no longer allowed \(reason=address\); "
                                 r"disconnecting")
        reply = held.second.recv(1000).decode()
        second = reply.split()[0]
        assert reply == f"{second} peer=127.0.0.1 got=k1" and second != held.server
        box.wait_service_log(rf"START: icept {second} from=127\.0\.0\.5")
        held.first.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.first.recv(1000)
    finally:
        held.close()
    assert "from=127.0.0.6" not in box.service_log()
    assert "too many consecutive fork failures" not in held.daemon.log()


def test_a_fork_retry_runs_the_parent_checks_for_a_held_sender_it_was_not_for(
        box: Box) -> None:
    # The reload refuses the sender the fork failed for, and sets per_source = 0: the
    # other held sender, which the retry would serve instead, never passed the checks
    # before a fork (its verdict came while the fork was held). They run at the retry,
    # and refuse it (before: the retry served it unchecked).
    held = HeldSenders(box)
    try:
        held.reload("no_access = 127.0.0.6", "per_source = 0")
        box.wait_service_log(r"FAIL: icept per_source_limit from=127\.0\.0\.5")
        held.second.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.second.recv(1000)
    finally:
        held.close()
    log = box.service_log()
    assert "START: icept" not in log.split(f"EXIT: icept status=0 {held.server}")[1]
    assert "from=127.0.0.6" not in log


def _reload_with(daemon: Daemon, edit: Callable[[str], str]) -> None:
    """Rewrite the daemon's configuration with `edit` and apply it (SIGHUP)."""
    conf = daemon.log_path.with_suffix(".conf")
    new = conf.with_suffix(".new")
    new.write_text(edit(conf.read_text()))
    new.chmod(0o644)
    new.replace(conf)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: ")


def _fail_forks_for(daemon: Daemon, *ids: str) -> None:
    """Forks fail until each of `ids` logged its failed fork, then work again (the
    reload loads its configuration in a child process)."""
    try:
        for service_id in ids:
            daemon.wait_for_log(rf"{service_id}: fork failed: Resource temporarily "
                                r"unavailable")
    finally:
        restore_process_limit(daemon)


@contextmanager
def _refused_and_changed_at_retry(box: Box, *extra: str
                                  ) -> Iterator[tuple[Daemon, socket.socket, socket.socket]]:
    """Services `refused` and `changed` (with `extra` lines), each with a connection
    whose fork failed; then a reload refuses the first one's client and changes the
    other's server_args. The daemon and the two connections, closed after the block."""
    refused, changed = free_port(), free_port()
    daemon = box.start(service("refused", refused, *extra)
                       + service("changed", changed, *extra), interval="4")
    set_process_limit(daemon, 1)
    first, second = connect(refused), connect(changed)
    with first, second:
        _fail_forks_for(daemon, "refused", "changed")
        _reload_with(daemon, lambda text: text.replace(
            "\tserver_args = hello from refused\n",
            "\tserver_args = hello from refused\n\tno_access = 127.0.0.1\n").replace(
            "hello from changed", "hello again from changed"))
        yield daemon, first, second


def test_a_reload_during_a_fork_retry_judges_held_connections_by_the_new_rules(
        box: Box) -> None:
    # Both connections' forks failed before the reload, which refuses the first one's
    # client and changes the other's server_args: at the retry, the first gets the
    # new rules' FAIL line and no server, the second its server with the new
    # arguments (before: both started the old configuration's server).
    with _refused_and_changed_at_retry(box) as (daemon, first, second):
        assert nothing_yet(first) and nothing_yet(second)
        assert read_all(second) == b"hello again from changed\n"
        assert read_all(first) == b""
    box.wait_service_log(r"FAIL: refused address from=127\.0\.0\.1")
    log = box.service_log()
    assert "START: refused" not in log
    assert len(re.findall(r"START: changed pid=\d+", log)) == 1
    assert "too many consecutive fork failures" not in daemon.log()


def test_a_reload_during_a_fork_retry_starts_the_new_stream_wait_server(box: Box) -> None:
    # A stream wait = yes request is retried with the server the reload configured.
    port = free_port()
    new_server = box.path / "new_wait_server.py"
    new_server.write_text((HELPERS / "wait_stream_server.py").read_text().replace(
        'f"pid={os.getpid()}\\n"', 'f"new pid={os.getpid()}\\n"'))
    new_server.chmod(0o644)
    daemon = box.start(service("swait", port, wait="yes", server=SERVER_PYTHON,
                               server_args=str(HELPERS / "wait_stream_server.py")),
                       interval="4")
    set_process_limit(daemon, 1)
    with connect(port) as client:
        _fail_forks_for(daemon, "swait")
        _reload_with(daemon, lambda text: text.replace(
            str(HELPERS / "wait_stream_server.py"), str(new_server)))
        assert client.recv(100).startswith(b"new pid=")
        client.sendall(b"still here\n")
        assert read_all(client) == b"still here\n"
    box.wait_service_log(r"START: swait pid=\d+ from=<no address>")


def test_a_reload_during_a_fork_retry_judges_held_datagrams_by_the_new_rules(
        box: Box) -> None:
    # dgram wait = yes (its datagram queued on the service socket) and wait = no (its
    # datagram in its server's channel): a reload refuses their sender before the
    # retry, which then logs the new rules' FAIL line and starts no server; the
    # datagrams are discarded, and the socket serves the next sender.
    dwait, dnowait = free_port(), free_port()
    daemon = box.start(
        service("dwait", dwait, socket_type="dgram", protocol="udp", wait="yes",
                server=SERVER_PYTHON, server_args=str(HELPERS / "udp_wait_server.py"))
        + service("dnowait", dnowait, socket_type="dgram", protocol="udp",
                  server=SERVER_PYTHON, server_args=str(HELPERS / "dgram_nowait_server.py")),
        interval="4")
    set_process_limit(daemon, 1)
    with udp_from("127.0.0.5") as refused, udp_from("127.0.0.6") as other:
        refused.sendto(b"one", ("127.0.0.1", dwait))
        refused.sendto(b"two", ("127.0.0.1", dnowait))
        _fail_forks_for(daemon, "dwait", "dnowait")
        _reload_with(daemon, lambda text: text.replace(
            "\twait = ", "\tno_access = 127.0.0.5\n\twait = "))
        box.wait_service_log(r"FAIL: dwait address from=127\.0\.0\.5")
        box.wait_service_log(r"FAIL: dnowait address from=127\.0\.0\.5")
        for port in (dwait, dnowait):
            other.sendto(b"next", ("127.0.0.1", port))
            assert re.fullmatch(r"pid=\d+ got=next", other.recv(1000).decode())
        refused.setblocking(False)
        with pytest.raises(BlockingIOError):
            refused.recv(1000)
    assert "from=127.0.0.5" not in "".join(
        line for line in box.service_log().splitlines(True) if "START" in line)


def test_a_fork_retry_refused_by_a_reload_sends_no_banner_fail_after_banner_success(
        box: Box) -> None:
    # banner_success went out before the fork that failed; the new rules refuse the
    # held client at its retry: it gets the FAIL line, and no banner_fail contradicting
    # the banner it already has (xinetd writes one of the two, never both). One the
    # new rules admit gets no second banner_success.
    (box.path / "success").write_text("welcome\n")
    (box.path / "fail").write_text("go away\n")
    banners = (f"banner_success = {box.path / 'success'}",
               f"banner_fail = {box.path / 'fail'}")
    for name in ("success", "fail"):
        (box.path / name).chmod(0o644)
    with _refused_and_changed_at_retry(box, *banners) as (_, first, second):
        assert read_all(second) == b"welcome\nhello again from changed\n"
        assert read_all(first) == b"welcome\n"
    box.wait_service_log(r"FAIL: refused address from=127\.0\.0\.1")
    assert "START: refused" not in box.service_log()


def test_the_state_dump_lists_the_requests_held_for_a_fork_retry(
        box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    # xinetd's dump has a retry table and counts each service's retry servers and
    # failed attempts; they were printed empty and 0 while a request was held.
    dump_file = box.path / "state.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    port = free_port()
    daemon = box.start(service("held", port), interval="60")
    client = held_by_a_failed_fork(daemon, port, "held")
    with client:
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log("generated state dump")
        dump = dump_file.read_text()
        block = dump.split("Service = held\n", 1)[1].split("\n\n", 1)[0]
        assert "\trunning servers = 0\n\tretry servers = 1\n\tattempts = 1\n" in block, block
        table = dump.split("Retry table dump:\n", 1)[1].split("\nSocket mask:", 1)[0]
        # xinetd's server_dump: the pid fork() returned, then fork_failures,
        # log_remote_user and writes_to_log after the connection (before, `pid = 0`
        # and neither of the three).
        assert re.fullmatch(r"held server\npid = -1\nstart_time = .+\nConnection info:\n"
                            r"\tservice = held\n\tremote_address = 127\.0\.0\.1\n"
                            r"fork_failures = 1\nlog_remote_user = NO\nwrites_to_log = NO\n\n",
                            table), table
        assert nothing_yet(client)
    # Serving goes on: the held client is served at its retry (60 s away), or closed
    # with the daemon; a new client is served now.
    with connect(port) as other:
        assert read_all(other) == b"hello from held\n"
