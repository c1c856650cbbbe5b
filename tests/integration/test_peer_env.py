"""flags = PEERENV: the client's and the service's addresses in the server's environment.

Real daemon, real servers (tests/helpers/env_probe.py sends back the environment it was
exec'd with, in order), real TCP and UDP clients on loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.daemon import HELPERS, DaemonFactory, free_port

TIMEOUT = 10.0
PROBE = HELPERS / "env_probe.py"
PEER_NAMES = ("PROTO", "TCPLOCALIP", "TCPLOCALPORT", "TCPREMOTEIP", "TCPREMOTEPORT",
              "REMOTE_ADDR", "REMOTE_PORT")


def service(port: int, mode: str, *, socket_type: str = "stream", wait: str = "no",
            flags: str = "PEERENV", extra: str = "") -> str:
    return (f"service probe-{mode}\n{{\n\ttype = UNLISTED\n\tsocket_type = {socket_type}\n"
            f"\twait = {wait}\n\tuser = root\n\tserver = {sys.executable}\n"
            f"\tserver_args = -I -S {PROBE} {mode}\n\tport = {port}\n"
            + (f"\tflags = {flags}\n" if flags else "") + extra + "}\n")


def variables(entries: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in entries)


def tcp_environment(host: str, port: int) -> tuple[list[str], tuple[str, int]]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect((host, port))
        mine = conn.getsockname()
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return json.loads(data), (mine[0], mine[1])


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-spawn", "fallback-spawn"])
def test_stream_connection_gets_both_ends(daemons: DaemonFactory, native: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_NATIVE_SPAWN", native)
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tbind = 127.0.0.1\n"))
    entries, (ip, client_port) = tcp_environment("127.0.0.1", port)
    env = variables(entries)
    assert {k: env[k] for k in PEER_NAMES} == {
        "PROTO": "TCP", "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": str(port),
        "TCPREMOTEIP": ip, "TCPREMOTEPORT": str(client_port),
        "REMOTE_ADDR": ip, "REMOTE_PORT": str(client_port)}
    # xinetd's REMOTE_HOST is still there, and still last.
    assert entries[-1] == "REMOTE_HOST=127.0.0.1"


def tcp_environment_from(source: str, port: int) -> dict[str, str]:
    with socket.socket() as conn:
        conn.settimeout(TIMEOUT)
        conn.bind((source, 0))
        conn.connect(("127.0.0.1", port))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return variables(json.loads(data))


def test_a_client_with_a_confirmed_name_gets_tcpremotehost(daemons: DaemonFactory) -> None:
    # /etc/hosts maps 127.0.0.1 to localhost and back (checked here, not assumed).
    try:
        reverse = socket.gethostbyaddr("127.0.0.1")[0]
        forward = socket.gethostbyname_ex(reverse)[2]
    except OSError as err:
        pytest.skip(f"127.0.0.1 has no name here: {err}")
    if "127.0.0.1" not in forward:
        pytest.skip(f"{reverse} does not map back to 127.0.0.1 here")
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tbind = 127.0.0.1\n"))
    assert tcp_environment_from("127.0.0.1", port)["TCPREMOTEHOST"] == reverse


def test_a_client_without_a_name_gets_no_tcpremotehost(daemons: DaemonFactory) -> None:
    try:
        name = socket.gethostbyaddr("127.0.0.2")[0]
        pytest.skip(f"127.0.0.2 has a name here: {name}")
    except OSError:
        pass
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tbind = 127.0.0.1\n"))
    env = tcp_environment_from("127.0.0.2", port)
    assert env["TCPREMOTEIP"] == "127.0.0.2" and "TCPREMOTEHOST" not in env


def test_ipv4_client_of_a_dual_stack_service_is_plain_ipv4(daemons: DaemonFactory) -> None:
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tflags += IPv6\n"))
    entries, (ip, client_port) = tcp_environment("127.0.0.1", port)
    env = variables(entries)
    assert env["TCPREMOTEIP"] == env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["TCPLOCALIP"] == "127.0.0.1"
    # REMOTE_HOST keeps the form xinetd gives it.
    assert env["REMOTE_HOST"] == "::ffff:127.0.0.1"


def test_ipv6_client(daemons: DaemonFactory) -> None:
    # Probed apart: a daemon that fails to start must fail the test, not skip it.
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as err:  # pragma: no cover - depends on the machine
        pytest.skip(f"no IPv6 loopback here: {err}")
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tbind = ::1\n"))
    entries, (ip, client_port) = tcp_environment("::1", port)
    env = variables(entries)
    assert (env["TCPREMOTEIP"], env["TCPLOCALIP"], env["REMOTE_ADDR"]) == ("::1",) * 3
    assert env["TCPREMOTEPORT"] == env["REMOTE_PORT"] == str(client_port)


def test_with_env_only_those_and_the_addresses(daemons: DaemonFactory) -> None:
    # passenv/env make the whole environment, as in xinetd; the addresses come on
    # top, like REMOTE_HOST.
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tpassenv = PATH\n"
                                 "\tenv = ONLY=this\n\tbind = 127.0.0.1\n"))
    entries, (ip, client_port) = tcp_environment("127.0.0.1", port)
    names = [e.split("=", 1)[0] for e in entries]
    # 127.0.0.1 is `localhost` both ways in /etc/hosts: TCPREMOTEHOST is set too.
    assert names == ["PATH", "ONLY", *PEER_NAMES[:5], "TCPREMOTEHOST", *PEER_NAMES[5:],
                     "REMOTE_HOST"]


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-spawn", "fallback-spawn"])
def test_the_addresses_replace_earlier_values(daemons: DaemonFactory, native: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Like REMOTE_HOST, a variable the flag sets replaces an earlier one (from `env`,
    # `passenv` or the daemon's environment): a name given twice leaves the first,
    # stale value to getenv(). One the socket cannot tell is not set, so `env` keeps it.
    monkeypatch.setenv("PYXINETD_NATIVE_SPAWN", native)
    monkeypatch.setenv("REMOTE_ADDR", "192.0.2.1")
    port = free_port()
    daemons.start_config(service(port, "stream", extra="\tpassenv = PATH REMOTE_ADDR\n"
                                 "\tenv = PROTO=stale REMOTE_PORT=1 KEPT=yes\n"
                                 "\tbind = 127.0.0.1\n"))
    entries, (ip, client_port) = tcp_environment("127.0.0.1", port)
    names = [e.split("=", 1)[0] for e in entries]
    assert len(names) == len(set(names)), entries
    env = variables(entries)
    assert (env["PROTO"], env["REMOTE_ADDR"], env["REMOTE_PORT"], env["KEPT"]) == (
        "TCP", ip, str(client_port), "yes")

    wait_port = free_port()
    daemons.start_config(service(wait_port, "wait-stream", wait="yes",
                                 extra="\tpassenv = PATH\n\tenv = TCPREMOTEIP=configured "
                                       "PROTO=stale\n\tbind = 127.0.0.1\n"))
    entries, _ = tcp_environment("127.0.0.1", wait_port)
    names = [e.split("=", 1)[0] for e in entries]
    assert len(names) == len(set(names)), entries
    env = variables(entries)
    assert (env["PROTO"], env["TCPREMOTEIP"]) == ("TCP", "configured")


def test_without_the_flag_nothing_is_added(daemons: DaemonFactory) -> None:
    port = free_port()
    daemons.start_config(service(port, "stream", flags="",
                                 extra="\tpassenv = PATH\n\tenv = ONLY=this\n"
                                       "\tbind = 127.0.0.1\n"))
    entries, _ = tcp_environment("127.0.0.1", port)
    assert [e.split("=", 1)[0] for e in entries] == ["PATH", "ONLY", "REMOTE_HOST"]


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-spawn", "fallback-spawn"])
def test_a_daemon_started_in_the_c_locale_passes_no_lc_ctype(
        daemons: DaemonFactory, native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Started in the C locale (an init system's empty environment), CPython coerces
    # its locale and sets LC_CTYPE=C.UTF-8 in its own environment (PEP 538). The
    # servers get the environment the daemon was started with, as in xinetd: without it.
    monkeypatch.setenv("PYXINETD_NATIVE_SPAWN", native)
    for name in ("LC_ALL", "LC_CTYPE", "LANG", "PYTHONCOERCECLOCALE", "PYTHONUTF8"):
        monkeypatch.delenv(name, raising=False)
    coerced = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get("
                              "'LC_CTYPE'))"], capture_output=True, text=True, check=True)
    if coerced.stdout.strip() in ("", "None"):
        pytest.skip("this Python does not coerce the C locale")
    port = free_port()
    daemons.start_config(service(port, "stream", flags="", extra="\tbind = 127.0.0.1\n"))
    entries, _ = tcp_environment("127.0.0.1", port)
    names = [e.split("=", 1)[0] for e in entries]
    assert "LC_CTYPE" not in names, entries
    assert "PYXINETD_NATIVE_SPAWN" in names     # the rest of its environment is there


def test_stream_wait_server_gets_the_local_end_only(daemons: DaemonFactory) -> None:
    port = free_port()
    daemons.start_config(service(port, "wait-stream", wait="yes",
                                 extra="\tbind = 127.0.0.1\n"))
    entries, _ = tcp_environment("127.0.0.1", port)
    env = variables(entries)
    assert {k: env.get(k) for k in PEER_NAMES} == {
        "PROTO": "TCP", "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": str(port),
        "TCPREMOTEIP": None, "TCPREMOTEPORT": None, "REMOTE_ADDR": None,
        "REMOTE_PORT": None}


def udp_environment(port: int) -> tuple[dict[str, str], tuple[str, int]]:
    """Ask a datagram service's server for its environment (sent again until it
    answers): the variables, and the client's own address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(1.0)
        deadline = time.monotonic() + TIMEOUT
        reply = None
        while reply is None and time.monotonic() < deadline:
            client.sendto(b"env?", ("127.0.0.1", port))
            try:
                reply = client.recv(65536)
            except socket.timeout:
                continue
        assert reply is not None
        mine = client.getsockname()
    return variables(json.loads(reply)), (mine[0], mine[1])


def test_datagram_wait_server_gets_the_sender(daemons: DaemonFactory) -> None:
    port = free_port()
    daemons.start_config(service(port, "dgram", socket_type="dgram", wait="yes",
                                 extra="\tbind = 127.0.0.1\n"))
    env, mine = udp_environment(port)
    assert {k: env.get(k) for k in PEER_NAMES} == {
        "PROTO": "UDP", "TCPLOCALIP": None, "TCPLOCALPORT": None, "TCPREMOTEIP": None,
        "TCPREMOTEPORT": None, "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(mine[1])}


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-spawn", "fallback-spawn"])
def test_datagram_nowait_server_gets_the_sender(daemons: DaemonFactory, native: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The server talks through a socket pair the master relays, which cannot tell who
    # sent the datagram: the master, which received it, says so.
    monkeypatch.setenv("PYXINETD_NATIVE_SPAWN", native)
    port = free_port()
    daemons.start_config(service(port, "relay", socket_type="dgram", wait="no",
                                 extra="\tbind = 127.0.0.1\n"))
    env, mine = udp_environment(port)
    assert {k: env.get(k) for k in PEER_NAMES} == {
        "PROTO": "UDP", "TCPLOCALIP": None, "TCPLOCALPORT": None, "TCPREMOTEIP": None,
        "TCPREMOTEPORT": None, "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(mine[1])}


def test_tcpmux_client_service_gets_the_peer_and_its_name(daemons: DaemonFactory) -> None:
    # A TCPMUX service is started by the tcpmux builtin once the client named it; its
    # server sees the connection to tcpmux's port, and the client's name like any other.
    try:
        reverse = socket.gethostbyaddr("127.0.0.1")[0]
        confirmed = "127.0.0.1" in socket.gethostbyname_ex(reverse)[2]
    except OSError:
        confirmed = False
    port = free_port()
    daemons.start_config(
        f"service tcpmux\n{{\n\ttype = INTERNAL UNLISTED\n\tid = tcpmux\n"
        f"\tsocket_type = stream\n\twait = no\n\tuser = root\n\tport = {port}\n"
        f"\tbind = 127.0.0.1\n}}\n"
        f"service probe\n{{\n\ttype = TCPMUX UNLISTED\n\tprotocol = tcp\n"
        f"\tsocket_type = stream\n\twait = no\n\tuser = root\n"
        f"\tserver = {sys.executable}\n\tserver_args = -I -S {PROBE} stream\n"
        f"\tflags = PEERENV\n}}\n")
    with socket.socket() as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(("127.0.0.1", port))
        mine = conn.getsockname()
        conn.sendall(b"probe\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    env = variables(json.loads(data))
    assert {k: env[k] for k in PEER_NAMES} == {
        "PROTO": "TCP", "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": str(port),
        "TCPREMOTEIP": "127.0.0.1", "TCPREMOTEPORT": str(mine[1]),
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(mine[1])}
    if confirmed:
        assert env["TCPREMOTEHOST"] == reverse
    else:
        assert "TCPREMOTEHOST" not in env
