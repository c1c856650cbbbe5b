"""A bug met while handling one client costs that client alone.

A listener's connections are accepted in batches, and a datagram socket's datagrams read
in batches (pyxinetd.dispatch, dgram, dgramrelay). An exception raised while one of them
was handled reached the loop, which then stopped watching the socket (the service
served nobody after it) and, for a stream batch, reset the rest with no line naming
them. Now that connection is reset (that datagram dropped), one internal-error line
names the service and the peer, and the rest of the batch and every later client are
served. No real input is known to raise there, so the failure is injected for one client
address (tests/helpers/faulty_master.py); the stream connections reach the daemon in one
batch because it is stopped (SIGSTOP) while they queue. A request that waited (for its
client's name, an aclexec verdict, an ident reply) goes on from another descriptor's
handler: a failure there resets that client alone too, and that descriptor (the name
resolver's socket, read for every later name and verdict) stays watched. A client
whose connection something else has by the time its handling fails (its in-loop session,
its forked server, a fork retry, the intercepted server's registry or relay) is let go
of by that holder, and its line says what became of it (an ident lookup or an access
check that has it keeps it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.config.model import AddressEntry, FileTarget, ServiceConfig, SocketType
from pyxinetd.master import MasterOptions
from pyxinetd.service import MAX_PARKED_BYTES
from tests.daemon import (HELPERS, Daemon, DaemonFactory, free_port, wait_log_lines,
                          wait_until)
from tests.factories import make_service
from tests.integration.test_intercept import config as intercept_config
from tests.integration.test_intercept import (exchange, gated_aclexec, release, tcp_from,
                                              udp_from, verdict_awaited)
from tests.integration.test_reload import reload
from tests.integration.test_reload_pending_verdicts import config

TIMEOUT = 10.0
FAULTY = "127.0.0.3"
GOOD = ("127.0.0.1", "127.0.0.2", "127.0.0.4")


def start_faulty(daemons: DaemonFactory, svc: ServiceConfig | str) -> Daemon:
    """The faulty daemon serving `svc`, or the configuration text `svc` (in the file
    test_reload.reload rewrites)."""
    log_path = daemons.tmp_path / "faulty.log"
    spec = daemons.tmp_path / "faulty.pickle"
    served: list[ServiceConfig] | str = [svc] if isinstance(svc, ServiceConfig) else str(
        log_path.with_suffix(".conf"))
    if isinstance(svc, str):
        log_path.with_suffix(".conf").write_text(svc)
    spec.write_bytes(pickle.dumps((served, replace(MasterOptions(dontfork=True),
                                                   filelog=str(log_path)))))
    return daemons._spawn([sys.executable, str(HELPERS / "faulty_master.py"), str(spec),
                           FAULTY], log_path, daemons.tmp_path / "faulty.err", True)


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        # A reset that reaches connect() must not leave the socket to the collector.
        sock.close()
        raise
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


def datagram_from(source: str, port: int, data: bytes, *, expect_reply: bool) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(data, ("127.0.0.1", port))
        if not expect_reply:
            return None
        sock.settimeout(TIMEOUT)
        return sock.recv(65536)


@pytest.fixture
def echo_stream(daemons: DaemonFactory) -> tuple[Daemon, int]:
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"))
    return start_faulty(daemons, svc), port


def test_one_clients_failure_resets_it_and_names_it(echo_stream: tuple[Daemon, int]) -> None:
    daemon, port = echo_stream
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


def served(source: str, port: int) -> bytes | str:
    """`answer()` of a new connection from `source`; a reset that reaches the client
    before its connect() returned (a loaded machine) is a reset all the same."""
    try:
        sock = connect_from(source, port)
    except ConnectionResetError:
        return "reset"
    return answer(sock)


def test_the_service_serves_every_later_client(echo_stream: tuple[Daemon, int]) -> None:
    daemon, port = echo_stream
    assert served(FAULTY, port) == "reset"
    for src in GOOD:
        assert served(src, port) == b"hello\n"
    assert served(FAULTY, port) == "reset"
    assert served(GOOD[0], port) == b"hello\n"
    # The line follows the reset the client saw: wait for it.
    text = daemon.wait_for_log(rf"connection from {FAULTY} \(reset\)", count=2)
    assert text.count(f"connection from {FAULTY} (reset)") == 2, text
    assert "no longer watched" not in text


def dgram_service(port: int, **overrides: Any) -> ServiceConfig:
    return make_service(port=port, socket_type=SocketType.DGRAM, **overrides)


@pytest.mark.parametrize("kind", ["internal echo", "dgram nowait server"])
def test_one_senders_failure_drops_its_datagram_and_the_service_goes_on(
        daemons: DaemonFactory, kind: str) -> None:
    port = free_port()
    if kind == "internal echo":
        svc = dgram_service(port, name="echo", types={"INTERNAL"}, server=None,
                            server_argv=(), environment=None)
    else:
        server = str(HELPERS / "dgram_nowait_server.py")
        svc = dgram_service(port, name="relay", wait=False, server=sys.executable,
                            server_argv=("python3", server))
    daemon = start_faulty(daemons, svc)
    datagram_from(FAULTY, port, b"first", expect_reply=False)
    daemon.wait_for_log(rf"internal error in handling {svc.id}'s datagram from {FAULTY} "
                        rf"\(dropped\): RuntimeError: injected failure for {FAULTY}")
    for src in GOOD:
        reply = datagram_from(src, port, src.encode(), expect_reply=True)
        assert reply is not None and reply.endswith(src.encode()), reply
    datagram_from(FAULTY, port, b"second", expect_reply=False)
    daemon.wait_for_log(rf"{svc.id}'s datagram from {FAULTY} \(dropped\)", count=2)
    reply = datagram_from(GOOD[0], port, b"last", expect_reply=True)
    assert reply is not None and reply.endswith(b"last")
    assert "no longer watched" not in daemon.log()


def test_a_failure_while_waiting_for_a_name_gives_the_instance_slot_back(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # only_from = localhost: each request takes its instance slot, then waits for its
    # client's name; the failure is raised as the wait starts. The slot must not stay
    # taken by a client that was reset: with instances = 1, nobody would be served.
    monkeypatch.setenv("FAULT_AT", "access_wait")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"), instances=1,
                       only_from=(AddressEntry("localhost", "host", name="localhost"),))
    daemon = start_faulty(daemons, svc)
    assert served(FAULTY, port) == "reset"
    daemon.wait_for_log(rf"connection from {FAULTY} \(reset\)")
    assert served(GOOD[0], port) == b"hello\n"


def probe_wait_service(port: int, **overrides: Any) -> ServiceConfig:
    """A dgram wait = yes service whose server answers one datagram, then exits."""
    return dgram_service(port, name="probe", wait=True, server=sys.executable,
                         server_argv=("python3", str(HELPERS / "listener_probe.py"),
                                      "dgram"), **overrides)


def test_a_wait_services_datagram_that_fails_is_dropped_and_the_socket_stays_watched(
        daemons: DaemonFactory) -> None:
    # The datagram is only peeked at before its server is started: left queued, it
    # would be met again at once; raised to the loop, the service ended.
    port = free_port()
    daemon = start_faulty(daemons, probe_wait_service(port))
    datagram_from(FAULTY, port, b"first", expect_reply=False)
    daemon.wait_for_log(rf"internal error in handling probe's datagram from {FAULTY} "
                        rf"\(dropped\): RuntimeError: injected failure for {FAULTY}")
    assert datagram_from(GOOD[0], port, b"x", expect_reply=True)
    assert "no longer watched" not in daemon.log()


def test_a_wait_services_failure_while_waiting_for_a_name_frees_slot_and_socket(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_AT", "access_wait")
    port = free_port()
    svc = probe_wait_service(port, instances=1, only_from=(
        AddressEntry("localhost", "host", name="localhost"),))
    daemon = start_faulty(daemons, svc)
    datagram_from(FAULTY, port, b"first", expect_reply=False)
    daemon.wait_for_log(rf"probe's datagram from {FAULTY} \(dropped\)")
    assert datagram_from(GOOD[0], port, b"x", expect_reply=True)
    assert "no longer watched" not in daemon.log()


@pytest.mark.parametrize("kind", ["internal echo", "dgram nowait server"])
def test_a_failure_while_waiting_for_a_name_gives_the_parked_budget_back(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    # Each datagram is parked (counted against the service's bounds on parked datagrams
    # and bytes) while its sender's name is looked up; the failure is raised as the
    # wait starts. Counted for good, the largest datagrams would fill the bytes bound
    # within 65 and the socket would be read no more: nobody served after them.
    monkeypatch.setenv("FAULT_AT", "access_wait")
    port = free_port()
    # cps: more datagrams come within a second than its default lets in.
    limits: dict[str, Any] = {"only_from": (AddressEntry("localhost", "host",
                                                          name="localhost"),),
                              "cps": (100_000, 1)}
    if kind == "internal echo":
        svc = dgram_service(port, name="echo", types={"INTERNAL"}, server=None,
                            server_argv=(), environment=None, **limits)
    else:
        server = str(HELPERS / "dgram_nowait_server.py")
        svc = dgram_service(port, name="relay", wait=False, server=sys.executable,
                            server_argv=("python3", server), **limits)
    daemon = start_faulty(daemons, svc)
    largest = b"x" * 65507
    over = MAX_PARKED_BYTES // len(largest) + 1
    for sent in range(1, over + 1):
        # One at a time: a burst of them would overflow the socket's receive buffer.
        datagram_from(FAULTY, port, largest, expect_reply=False)
        daemon.wait_for_log(rf"{svc.id}'s datagram from {FAULTY} \(dropped\)", count=sent)
    reply = datagram_from(GOOD[0], port, b"after", expect_reply=True)
    assert reply is not None and reply.endswith(b"after"), reply


def test_a_failure_after_the_client_was_identified_gives_its_slot_back(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # USERID: the server starts once the ident lookup is over, from the loop (not while
    # the connection is accepted); PEERENV then asks for the client's name, and that
    # fails. That client's connection is reset and named (the failure is contained in
    # the ident socket's handler), and its instance slot is given back exactly once:
    # with instances = 2 and one server running, the next client is served and the
    # one after it refused (given back twice, the running server's slot would be free).
    monkeypatch.setenv("FAULT_AT", "name_lookup")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/sh",
                       server_argv=("sh", "-c", "echo hello; exec cat >/dev/null"),
                       flags=frozenset({"PEERENV"}),
                       log_type=FileTarget(str(daemons.tmp_path / "services.log")),
                       log_on_success=frozenset({"USERID", "HOST", "PID"}),
                       log_on_failure=frozenset({"HOST"}), instances=2)
    daemon = start_faulty(daemons, svc)
    held = [connect_from(GOOD[0], port)]
    try:
        assert held[0].recv(100) == b"hello\n"
        assert served(FAULTY, port) == "reset"
        daemon.wait_for_log(rf"internal error in handling hello's connection from {FAULTY} "
                            rf"\(reset\): RuntimeError: injected failure for {FAULTY}")
        held.append(connect_from(GOOD[1], port))
        assert held[1].recv(100) == b"hello\n"
        held.append(connect_from(GOOD[2], port))
        assert held[2].recv(100) == b""     # refused: 2 servers run
        wait_log_lines(daemons.tmp_path / "services.log",
                       rf"FAIL: hello service_limit from={GOOD[2]}")
    finally:
        for conn in held:
            conn.close()
    assert "no longer watched" not in daemon.log()


def test_a_failure_once_the_clients_name_came_resets_it_and_later_names_are_read(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # only_from names a host: the client's name is looked up before the verdict, from
    # the name resolver's socket's handler, and PEERENV asks for it again there, which
    # fails. Raised to the loop, the resolver's socket was no longer watched, the
    # client's connection left to close as its object went: every later client's name
    # waited for its deadline (here, never).
    monkeypatch.setenv("FAULT_AT", "peerenv_lookup")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"), flags=frozenset({"PEERENV"}),
                       only_from=(AddressEntry("127.0.0.0/8", "net",
                                               ipaddress.ip_network("127.0.0.0/8")),
                                  AddressEntry("localhost", "host", name="localhost")))
    daemon = start_faulty(daemons, svc)
    assert served(FAULTY, port) == "reset"
    daemon.wait_for_log(rf"internal error in handling hello's connection from {FAULTY} "
                        rf"\(reset\): RuntimeError: injected failure for {FAULTY}")
    for src in GOOD:
        assert served(src, port) == b"hello\n"
    assert "no longer watched" not in daemon.log()


def test_a_failure_while_the_new_rules_judge_a_request_resets_it_and_verdicts_are_read(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client's aclexec verdict is awaited at a reload that replaces the rules; when
    # it comes (from the name resolver's socket's handler), the new rules judge the
    # client, and their own aclexec check fails to start. Every later client's verdict
    # comes through the same socket.
    monkeypatch.setenv("FAULT_AT", "judge_again_wait")
    gate = gated_aclexec(tmp_path, monkeypatch, FAULTY)
    with open(tmp_path / "hosts.allow", "a") as allow:
        allow.write("in.icept: ALL: aclexec /bin/true\n")
    port = free_port()
    daemon = start_faulty(daemons, config(tmp_path, port))
    with tcp_from(FAULTY, port) as late:
        with verdict_awaited(gate):
            reload(daemon, config(tmp_path, port, "no_access = 127.0.0.9"), 1)
        assert answer(late) == "reset"
    daemon.wait_for_log(rf"internal error in handling plain's connection from {FAULTY} "
                        rf"\(reset\): RuntimeError: injected failure for {FAULTY}")
    for src in GOOD:
        assert served(src, port) == b"old\n"
    assert "no longer watched" not in daemon.log()


@pytest.mark.parametrize("kind", ["internal echo", "dgram nowait server", "dgram wait server"])
def test_a_failure_once_a_senders_verdict_came_drops_its_datagram_and_names_are_read(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    # only_from names a host: the sender's name is looked up before the verdict, which
    # comes from the name resolver's socket's handler and refuses the faulty sender
    # (no name); that refusal fails. Raised to the loop, the resolver's socket was no
    # longer watched (every later sender's name waited for its deadline: here, never)
    # and a wait service's socket, paused while the name was looked up, stayed so.
    monkeypatch.setenv("FAULT_AT", "verdict_refuse")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    limits: dict[str, Any] = {"only_from": (AddressEntry("localhost", "host",
                                                          name="localhost"),),
                              "instances": 1}
    if kind == "internal echo":
        svc = dgram_service(port, name="echo", types={"INTERNAL"}, server=None,
                            server_argv=(), environment=None, **limits)
    elif kind == "dgram nowait server":
        server = str(HELPERS / "dgram_nowait_server.py")
        svc = dgram_service(port, name="relay", wait=False, server=sys.executable,
                            server_argv=("python3", server), **limits)
    else:
        svc = probe_wait_service(port, **limits)
    daemon = start_faulty(daemons, svc)
    datagram_from(FAULTY, port, b"first", expect_reply=False)
    daemon.wait_for_log(rf"internal error in handling {svc.id}'s datagram from {FAULTY} "
                        rf"\(dropped\): RuntimeError: injected failure for {FAULTY}")
    # Its name read, its slot free (instances = 1), its datagram read (the socket
    # watched again): a good sender is served.
    reply = datagram_from(GOOD[0], port, b"after", expect_reply=True)
    assert reply
    if kind != "dgram wait server":
        assert reply.endswith(b"after"), reply
    assert "no longer watched" not in daemon.log()


def intercepted(tmp_path: Path, port: int, socket_type: str) -> str:
    """An INTERCEPT wait = yes service whose clients are checked by the master while its
    server runs; only_from names a host: each client's name is looked up first."""
    return intercept_config(tmp_path, port, "only_from = localhost",
                            socket_type=socket_type, count=2)


def test_a_failure_once_an_intercepted_clients_verdict_came_resets_it_and_names_are_read(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The master accepts each client of the running server and checks it: its name is
    # looked up, and the verdict (from the name resolver's socket's handler) refuses
    # the faulty client; that refusal fails. Raised to the loop, the resolver's socket
    # was no longer watched: every later client waited for its name (here, never).
    monkeypatch.setenv("FAULT_AT", "intercept_refuse")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    daemon = start_faulty(daemons, intercepted(tmp_path, port, "stream"))
    assert served(FAULTY, port) == "reset"
    daemon.wait_for_log(rf"internal error in handling icept's connection from {FAULTY} "
                        rf"\(reset\): RuntimeError: injected failure for {FAULTY}")
    for _ in range(2):
        assert exchange(tcp_from(GOOD[0], port))["peer"] == "127.0.0.1"
    assert "no longer watched" not in daemon.log()


def test_a_failure_once_an_intercepted_senders_verdict_came_drops_its_datagrams(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A good sender starts the server; the faulty one's datagrams wait for its name
    # while the master reads the service socket; its refusal fails. Its datagrams
    # must go (not counted as waiting for ever), its name read, later senders served.
    monkeypatch.setenv("FAULT_AT", "intercept_refuse")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    daemon = start_faulty(daemons, intercepted(tmp_path, port, "dgram"))
    with udp_from(GOOD[0]) as good, udp_from(FAULTY) as faulty:
        good.sendto(b"g1", ("127.0.0.1", port))
        pid = good.recv(1000).decode().split()[0]
        faulty.sendto(b"f1", ("127.0.0.1", port))
        daemon.wait_for_log(rf"internal error in handling icept's datagrams from {FAULTY} "
                            rf"\(dropped\): RuntimeError: injected failure for {FAULTY}")
        # Refused, not left waiting: its next datagram is refused at once, and logged.
        faulty.sendto(b"f2", ("127.0.0.1", port))
        wait_log_lines(tmp_path / "services.log", rf"FAIL: icept address from={FAULTY}")
        with udp_from(GOOD[0]) as later:
            later.sendto(b"l1", ("127.0.0.1", port))
            assert later.recv(1000).decode() == f"{pid} peer=127.0.0.1 got=l1"
    assert "no longer watched" not in daemon.log()


def dgram_probe(port: int, *lines: str) -> str:
    """A dgram wait = yes service whose server answers one datagram with its peer."""
    body = "".join(f"\t{line}\n" for line in lines)
    return (f"service probe\n{{\n\ttype = UNLISTED\n\tsocket_type = dgram\n"
            f"\tprotocol = udp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = yes\n"
            f"\tuser = root\n\tserver = {sys.executable}\n"
            f"\tserver_args = {HELPERS / 'listener_probe.py'} dgram\n{body}}}\n")


def test_a_failure_while_a_fork_retry_is_judged_again_frees_a_wait_services_socket(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dgram wait = yes request whose fork failed stays queued, the socket not watched
    # until its retry. A reload replaces the rules meanwhile: at the retry the new ones
    # judge its sender, and that fails. The socket stayed paused for good: nobody was
    # served after it.
    monkeypatch.setenv("FAULT_AT", "retry_judge")
    monkeypatch.setenv("PYXINETD_FORK_RETRY_INTERVAL", "0.1")
    port = free_port()
    daemon = start_faulty(daemons, dgram_probe(port))
    datagram_from(FAULTY, port, b"first", expect_reply=False)
    daemon.wait_for_log(r"probe: fork failed: Resource temporarily unavailable")
    reload(daemon, dgram_probe(port, "no_access = 127.0.0.9"), 1)
    daemon.wait_for_log(rf"internal error in handling probe's datagram from {FAULTY} "
                        rf"\(dropped\) at its fork retry: RuntimeError: "
                        rf"injected failure for {FAULTY}")
    # The socket watched again, the faulty datagram gone: the next server reads the
    # good sender's.
    reply = datagram_from(GOOD[0], port, b"x", expect_reply=True)
    assert reply is not None and json.loads(reply)["peer"][0] == GOOD[0], reply


def _resolver_of(daemon: Daemon) -> int:
    """The pid of the daemon's name resolver helper."""
    def found() -> int | None:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and \
                        b"resolverstart.py" in (entry / "cmdline").read_bytes() and \
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == \
                        str(daemon.pid):
                    return int(entry.name)
            except OSError:
                continue
        return None
    pid: int = wait_until(found, TIMEOUT, what="the name resolver")
    return pid


def _resolver_socket(pid: int) -> tuple[int, str] | None:
    """Process `pid`'s SOCK_SEQPACKET socket (the name resolver's): how many bytes wait
    unread on it, and its peer's inode ("0" once the helper's end is closed)."""
    listing = subprocess.run(["ss", "-xpn"], capture_output=True, text=True, check=True,
                             timeout=TIMEOUT).stdout
    for line in listing.splitlines():
        fields = line.split()
        if fields[0] == "u_seq" and f"pid={pid}," in line:
            return int(fields[2]), fields[7]
    return None


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_answers_unread_when_the_name_resolver_is_found_gone_still_reach_their_clients(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The helper answered a lookup and exited; before the master read the answer, it
    # sent the helper the next client's lookup, which failed (EPIPE). The answer
    # unread was dropped with the socket: its client was refused as one whose name
    # is unknown. Each request gets its own answer: the first client its name, the
    # next one (never looked up) none.
    monkeypatch.setenv("FAULT_AT", "resolver_unread")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"),
                       only_from=(AddressEntry("localhost", "host", name="localhost"),))
    daemon = start_faulty(daemons, svc)
    with connect_from(GOOD[0], port) as first:
        helper = _resolver_of(daemon)
        wait_until(lambda: (_resolver_socket(daemon.pid) or (0, ""))[0] > 0, TIMEOUT,
                   what="the answer, unread")
        os.kill(helper, signal.SIGKILL)
        wait_until(lambda: (_resolver_socket(daemon.pid) or (0, ""))[1] == "0", TIMEOUT,
                   what="the name resolver's end closed")
        assert served(GOOD[1], port) in (b"", "reset")
        assert answer(first) == b"hello\n"
    daemon.wait_for_log(r"name resolver: .*the name of 127\.0\.0\.2 is not looked up")


def test_a_failure_once_an_intercepted_clients_relay_is_set_up_ends_that_relay(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The faulty client is admitted and its relay to the server set up; then its
    # handling fails. Reset by the containment, its connection was closed under the
    # relay, which still counted it and watched its descriptor number (the next
    # accept's): the relay is ended instead, the client reset once, the server and
    # later clients unharmed.
    monkeypatch.setenv("FAULT_AT", "intercept_relayed")
    port = free_port()
    daemon = start_faulty(daemons, intercept_config(tmp_path, port, count=3))
    assert exchange(tcp_from(GOOD[0], port))["peer"] == "127.0.0.1"
    assert served(FAULTY, port) in ("reset", b"")
    daemon.wait_for_log(rf"internal error in handling icept's connection from {FAULTY} "
                        rf"\(reset\): RuntimeError: injected failure for {FAULTY}")
    for _ in range(2):
        # The server sees the relay's end.
        assert exchange(tcp_from(GOOD[1], port))["peer"] == "127.0.0.1"
    assert "no longer watched" not in daemon.log()
    assert "internal error" not in daemon.log().split("injected failure")[1]


def test_a_failure_after_a_fork_retry_is_admitted_and_held_again_keeps_the_socket_paused(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # At the retry the new rules admit the request and its new fork fails: it is held
    # again, the socket paused until that fork's retry. A failure met after that
    # un-paused the socket anyway: the datagram still queued was read as a second
    # request, held for a second fork retry (two servers for one request, the forks
    # succeeding). The one request stays held, once.
    dump_file = tmp_path / "state.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    monkeypatch.setenv("FAULT_AT", "retry_judge_held")
    monkeypatch.setenv("PYXINETD_FORK_RETRY_INTERVAL", "0.1")
    port = free_port()
    daemon = start_faulty(daemons, dgram_probe(port))
    datagram_from(FAULTY, port, b"first", expect_reply=False)
    daemon.wait_for_log(r"probe: fork failed: Resource temporarily unavailable")
    reload(daemon, dgram_probe(port, "no_access = 127.0.0.9"), 1)
    daemon.wait_for_log(rf"internal error in handling probe's datagram from {FAULTY} "
                        rf"\(kept for its new start\) at its fork retry: RuntimeError: "
                        rf"injected failure for {FAULTY}")
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("generated state dump")
    block = dump_file.read_text().split("Service = probe\n", 1)[1].split("\n\n", 1)[0]
    assert "\tretry servers = 1\n" in block, block


def named_hosts() -> dict[str, tuple[AddressEntry, ...]]:
    """only_from admitting every loopback client, and no_access naming a host, which
    would outrank the network: each client's name is looked up first (it could change
    the verdict), its verdict coming from the name resolver's socket's handler."""
    return {"only_from": (AddressEntry("127.0.0.0/8", "net",
                                       ipaddress.ip_network("127.0.0.0/8")),),
            "no_access": (AddressEntry("blocked.invalid", "host", name="blocked.invalid"),)}


@pytest.mark.parametrize("waits", [False, True], ids=["accepted", "after its name"])
def test_a_failure_once_a_redirects_session_has_the_client_ends_that_session(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch, waits: bool) -> None:
    # The faulty client's redirect session is started (its instance slot taken, its
    # connection watched by the session), then its handling fails. Reset by the
    # containment, the connection was closed under the session: the slot was never
    # given back (instances = 1: nobody served after it) and the session still
    # watched the descriptor number, the next accept's. The session ends instead.
    monkeypatch.setenv("FAULT_AT", "session_started")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    with socket.create_server(("127.0.0.1", 0)) as target:
        port = free_port()
        svc = make_service(name="redir", port=port, server=None, server_argv=(),
                           environment=None, redirect=("127.0.0.1", target.getsockname()[1]),
                           instances=1, **(named_hosts() if waits else {}))
        daemon = start_faulty(daemons, svc)
        assert served(FAULTY, port) == "reset"
        daemon.wait_for_log(rf"internal error in handling redir's connection from {FAULTY} "
                            rf"\(reset\): RuntimeError: injected failure for {FAULTY}")
        for src in GOOD:
            with connect_from(src, port) as conn:
                conn.sendall(b"hi")
                target.settimeout(TIMEOUT)
                while True:
                    inner, _ = target.accept()
                    with inner:
                        inner.settimeout(TIMEOUT)
                        # The faulty client's session may have reached the target too:
                        # its relay ended, that connection reads its end at once.
                        if inner.recv(100, socket.MSG_PEEK) == b"":
                            continue
                        assert inner.recv(100) == b"hi"
                        inner.sendall(b"there")
                        assert conn.recv(100) == b"there"
                        break
    assert "no longer watched" not in daemon.log()
    assert "internal error" not in daemon.log().split("injected failure")[1]


@pytest.mark.parametrize("waits", [False, True], ids=["accepted", "after its name"])
def test_a_failure_once_the_clients_server_is_forked_leaves_the_client_to_it(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch, waits: bool) -> None:
    # The faulty client's server is forked (it shares the connection), then its handling
    # fails. A reset (SO_LINGER 0 on the shared socket) would end the server's own
    # closing with a reset too: the master only closes its copy, and the server
    # answers its client in full.
    monkeypatch.setenv("FAULT_AT", "server_started")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/sh",
                       server_argv=("sh", "-c", "read line; echo \"got $line\""),
                       **(named_hosts() if waits else {}))
    daemon = start_faulty(daemons, svc)
    with connect_from(FAULTY, port) as conn:
        daemon.wait_for_log(rf"internal error in handling hello's connection from {FAULTY} "
                            rf"\(closed\): RuntimeError: injected failure for "
                            rf"{FAULTY}")
        conn.sendall(b"x\n")
        assert answer(conn) == b"got x\n"
    with connect_from(GOOD[0], port) as conn:
        conn.sendall(b"y\n")
        assert answer(conn) == b"got y\n"
    assert "no longer watched" not in daemon.log()


def test_a_failure_once_an_intercepted_client_is_handed_to_the_registry_leaves_it_there(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The faulty client's verdict comes after its server exited: it is handed to the
    # registry, which keeps it for the next server; then its handling fails. The
    # registry has it: it reaches the next server, and its line says so.
    monkeypatch.setenv("FAULT_AT", "intercept_handed")
    gate = gated_aclexec(tmp_path, monkeypatch, FAULTY)
    port = free_port()
    daemon = start_faulty(daemons, intercept_config(tmp_path, port, "libwrap = in.icept",
                                                    count=1))
    with tcp_from(FAULTY, port) as late:
        first = exchange(tcp_from(GOOD[0], port))["pid"]
        wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 pid={first}")
        release(gate)
        daemon.wait_for_log(rf"internal error in handling icept's connection from {FAULTY} "
                            rf"\(kept for its server\): RuntimeError: injected failure for "
                            rf"{FAULTY}")
        assert exchange(late)["pid"] != first
    assert "no longer watched" not in daemon.log()


def test_a_failure_reading_an_intercepted_services_socket_again_names_it_and_names_are_read(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Once a client's verdict came (from the name resolver's socket's handler), the
    # service socket is read again if the clients in hand had stopped it; that fails.
    # Raised to the loop, the resolver's socket was no longer watched: every later
    # client waited for its name (here, never). The line names the service.
    monkeypatch.setenv("FAULT_AT", "intercept_unsaturate")
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "3600")
    port = free_port()
    daemon = start_faulty(daemons, intercepted(tmp_path, port, "stream"))
    assert served(FAULTY, port) in ("reset", b"")
    daemon.wait_for_log(r"internal error in reading icept's service socket again: "
                        rf"RuntimeError: injected failure for {FAULTY}")
    for _ in range(2):
        assert exchange(tcp_from(GOOD[0], port))["peer"] == "127.0.0.1"
    assert "no longer watched" not in daemon.log()


@pytest.mark.parametrize("running", [True, False], ids=["server running", "server exited"])
def test_a_failure_once_an_intercepted_sender_is_handed_on_keeps_its_reply_source(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        running: bool) -> None:
    # On a wildcard bind, replies leave from the address the sender's first datagram
    # was sent to (here 127.0.0.2). The faulty sender's verdict comes (while its server
    # runs, or after it exited: the registry has it) and it is handed on; then its
    # handling fails, and its waiting datagrams are let go of. What it was handed on
    # with, its reply source too, stays its: its replies come from 127.0.0.2, and its
    # line says where it went (not that its datagrams were dropped).
    monkeypatch.setenv("FAULT_AT", "intercept_sender_admitted")
    gate = gated_aclexec(tmp_path, monkeypatch, FAULTY)
    port = free_port()
    daemon = start_faulty(daemons, intercept_config(
        tmp_path, port, "libwrap = in.icept", socket_type="dgram", bind="0.0.0.0",
        count=3 if running else 2))
    with udp_from(GOOD[0]) as a, udp_from(FAULTY) as late:
        a.sendto(b"a1", ("127.0.0.1", port))
        first = a.recv(1000).decode().split()[0]
        late.sendto(b"l1", ("127.0.0.2", port))
        if not running:
            a.sendto(b"a2", ("127.0.0.1", port))
            assert a.recv(1000).decode() == f"{first} peer=127.0.0.1 got=a2"
            wait_log_lines(tmp_path / "services.log", rf"EXIT: icept status=0 {first}")
        release(gate)
        fate = "relayed" if running else "kept for its server"
        daemon.wait_for_log(rf"internal error in handling icept's datagrams from {FAULTY} "
                            rf"\({fate}\): RuntimeError: injected failure for {FAULTY}")
        reply, source = late.recvfrom(1000)
    assert source == ("127.0.0.2", port)
    assert reply.decode().endswith(" peer=127.0.0.1 got=l1"), reply
    assert (reply.decode().split()[0] == first) is running


def test_a_failure_once_the_clients_request_is_held_for_a_fork_retry_leaves_it_held(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The faulty client's fork fails (no process): its connection is held for a retry;
    # then its handling fails. Reset then, the connection was closed under the retry,
    # which forked for a closed socket. The retry keeps it, and serves it.
    monkeypatch.setenv("FAULT_AT", "fork_held")
    monkeypatch.setenv("PYXINETD_FORK_RETRY_INTERVAL", "0.1")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"))
    daemon = start_faulty(daemons, svc)
    with connect_from(FAULTY, port) as conn:
        daemon.wait_for_log(rf"internal error in handling hello's connection from {FAULTY} "
                            rf"\(kept for its fork retry\): RuntimeError: injected failure "
                            rf"for {FAULTY}")
        assert answer(conn) == b"hello\n"
    assert served(GOOD[0], port) == b"hello\n"
    assert "no longer watched" not in daemon.log()


def served_by_its_holder(daemon: Daemon, port: int, kept: str) -> None:
    """The faulty client's handling failed once `kept` held it: one line says so, the
    holder goes on and its server serves it, and so is the next client; no server was
    started on a closed socket and no descriptor stopped being watched."""
    with connect_from(FAULTY, port) as conn:
        daemon.wait_for_log(rf"internal error in handling hello's connection from {FAULTY} "
                            rf"\({re.escape('kept for ' + kept)}\): RuntimeError: "
                            rf"injected failure for {FAULTY}")
        assert answer(conn) == b"hello\n"
    assert served(GOOD[0], port) == b"hello\n"
    log = daemon.log()
    assert "cannot start" not in log and "no longer watched" not in log
    assert log.count("internal error") == 1, log


def test_a_failure_once_the_client_is_handed_to_its_ident_lookup_leaves_it_there(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # USERID: the faulty client is handed to its ident lookup (its server starts once
    # the lookup is over), then its handling fails. Reset then, the connection was
    # closed under the lookup, which went on to start a server for it. The lookup
    # keeps it, and its server serves it.
    monkeypatch.setenv("FAULT_AT", "ident_held")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"),
                       log_type=FileTarget(str(daemons.tmp_path / "services.log")),
                       log_on_success=frozenset({"USERID", "HOST", "PID"}),
                       log_on_failure=frozenset({"HOST"}))
    served_by_its_holder(start_faulty(daemons, svc), port, "its ident lookup")


def test_a_failure_once_a_peerenv_client_waits_for_its_name_leaves_it_to_the_lookup(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # PEERENV: the admitted client's server starts once its name (TCPREMOTEHOST) is
    # known; its handling fails once the lookup has it. Reset then, the connection was
    # closed under the lookup, which went on to start a server on the closed socket.
    # The lookup keeps it, and its server serves it.
    monkeypatch.setenv("FAULT_AT", "peerenv_named")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"), flags=frozenset({"PEERENV"}))
    served_by_its_holder(start_faulty(daemons, svc), port, "its name lookup")


def test_a_failure_once_the_client_is_parked_for_its_access_checks_leaves_it_there(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # only_from names a host: the faulty client is parked while its name is looked up,
    # then its handling fails. Reset then, the connection was closed under the wait
    # and its instance slot given back while the wait still had it. The wait keeps it:
    # its verdict comes, and its server serves it.
    monkeypatch.setenv("FAULT_AT", "access_parked")
    port = free_port()
    svc = make_service(name="hello", port=port, server="/bin/echo",
                       server_argv=("echo", "hello"), **named_hosts())
    served_by_its_holder(start_faulty(daemons, svc), port, "its access check")
