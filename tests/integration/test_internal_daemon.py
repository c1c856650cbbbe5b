"""Builtins, tcpmux, banners and redirect through a running daemon."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import struct
import sys
from pathlib import Path

import pytest

from pyxinetd.config.model import AddressEntry, SocketType
from tests.daemon import HELPERS, DaemonFactory, free_port
from tests.factories import make_service
from tests.integration.test_dispatch import connect, logged, read_all, wait_service_log


def builtin(name: str, port: int | None, **overrides: object):  # type: ignore[no-untyped-def]
    return make_service(name=name, port=port, types={"INTERNAL"}, server=None,
                        server_argv=(), environment=None, **overrides)


def banner_files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for attr, text in (("banner", "first\r\n"), ("banner_success", "welcome\r\n"),
                       ("banner_fail", "go away\r\n")):
        path = tmp_path / attr
        path.write_text(text)
        paths[attr] = str(path)
    return paths


def test_banners_at_their_moments(daemons: DaemonFactory, tmp_path: Path) -> None:
    ok_port, refused_port, external_port = free_port(), free_port(), free_port()
    nobody = (AddressEntry("10.9.9.9", "numeric", ipaddress.ip_network("10.9.9.9/32")),)
    daemons.start_services([
        builtin("echo", ok_port, id="echo-ok", **banner_files(tmp_path)),
        builtin("echo", refused_port, id="echo-refused", only_from=nobody,
                **banner_files(tmp_path)),
        make_service(name="cat", port=external_port, server="/bin/cat",
                     server_argv=("cat",), **banner_files(tmp_path)),
    ])
    with connect(ok_port) as c:
        c.sendall(b"ping")
        c.shutdown(socket.SHUT_WR)
        assert read_all(c) == b"first\r\nwelcome\r\nping"
    with connect(refused_port) as c:
        assert read_all(c) == b"first\r\ngo away\r\n"
    with connect(external_port) as c:
        c.sendall(b"pong")
        c.shutdown(socket.SHUT_WR)
        assert read_all(c) == b"first\r\nwelcome\r\npong"


def test_missing_banner_is_logged(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    missing = tmp_path / "nothing-here"
    daemon = daemons.start_services([builtin("daytime", port, id="dt", banner=str(missing))])
    with connect(port) as c:
        assert re.match(rb"\d\d [A-Z]{3} ", read_all(c))
    daemon.wait_for_log(re.escape(f"service = dt, open of banner {missing} failed"))


def test_tcpmux_hands_the_connection_and_following_bytes_to_the_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_services([
        builtin("tcpmux", port, **logged(tmp_path)),
        make_service(name="plus", port=None, types={"TCPMUXPLUS", "UNLISTED"},
                     server="/bin/cat", server_argv=("cat",), **logged(tmp_path)),
        make_service(name="plain", port=None, types={"TCPMUX", "UNLISTED"},
                     server="/bin/cat", server_argv=("cat",)),
    ])
    # As xinetd counts them: the TCPMUX services have no socket of their own.
    assert "Started working: 1 available service\n" in daemon.log()
    with connect(port) as c:
        c.sendall(b"PLUS\r\nsent with the name")
        c.shutdown(socket.SHUT_WR)
        assert read_all(c) == b"+Go\r\nsent with the name"
    wait_service_log(tmp_path, r"START: plus pid=[1-9]\d* from=127\.0\.0\.1")
    with connect(port) as c:
        c.sendall(b"plain\r\nx")
        c.shutdown(socket.SHUT_WR)
        assert read_all(c) == b"x"
    with connect(port) as c:
        c.sendall(b"help\r\n")
        assert sorted(read_all(c).split(b"\r\n")) == [b"", b"plain", b"plus"]
    with connect(port) as c:
        c.sendall(b"other\r\n")
        assert read_all(c) == b"-Service name not found\r\n"


def test_tcpmux_help_leaves_out_the_services_the_client_may_not_use(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Their names are nobody's business there: `help` lists what the client's address
    # may reach (a service whose verdict needs the client's name is listed).
    port = free_port()
    conf = (f"service tcpmux\n{{\n\ttype = INTERNAL UNLISTED\n\tport = {port}\n"
            f"\tbind = 127.0.0.1\n\tsocket_type = stream\n\twait = no\n}}\n")
    for name, lists in (("public", ""), ("secret-admin", "\tonly_from = 10.9.9.9\n"),
                        ("blocked", "\tno_access = 127.0.0.0/8\n"),
                        ("by-name", "\tonly_from = .example.test\n")):
        conf += (f"service {name}\n{{\n\ttype = TCPMUX UNLISTED\n\tsocket_type = stream\n"
                 f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = /bin/cat\n"
                 f"{lists}}}\n")
    daemons.start_config(conf)
    with connect(port) as c:
        c.sendall(b"help\r\n")
        assert sorted(read_all(c).split(b"\r\n")) == [b"", b"by-name", b"public"]


def test_a_tcpmuxplus_service_served_in_the_loop_sends_go(daemons: DaemonFactory,
                                                            tmp_path: Path) -> None:
    """A TCPMUXPLUS service that is a redirect or a builtin is served in the loop, not
    by a launched server: its client gets `+Go` all the same, before the service's
    banner_success and its first byte."""
    port = free_port()
    (tmp_path / "welcome").write_text("welcome\r\n")
    with socket.create_server(("127.0.0.1", 0)) as target:
        daemons.start_services([
            builtin("tcpmux", port),
            make_service(name="plusr", port=None, types={"TCPMUXPLUS", "UNLISTED"},
                         server=None, server_argv=(), environment=None,
                         redirect=("127.0.0.1", target.getsockname()[1])),
            make_service(name="echo", port=None, types={"TCPMUXPLUS", "UNLISTED", "INTERNAL"},
                         server=None, server_argv=(), environment=None,
                         banner_success=str(tmp_path / "welcome")),
        ])
        with connect(port) as c:
            c.sendall(b"plusr\r\n")
            served, _ = target.accept()
            with served:
                served.sendall(b"from the target")
            assert read_all(c) == b"+Go\r\nfrom the target"
    with connect(port) as c:
        c.sendall(b"echo\r\nping")
        c.shutdown(socket.SHUT_WR)
        assert read_all(c) == b"+Go\r\nwelcome\r\nping"


def test_servers_and_services(daemons: DaemonFactory, tmp_path: Path) -> None:
    servers_port, services_port, cat_port = free_port(), free_port(), free_port()
    daemons.start_services([
        builtin("servers", servers_port),
        builtin("services", services_port),
        make_service(name="cat", port=cat_port, server="/bin/cat", server_argv=("cat",)),
    ])
    with connect(services_port) as c:
        listing = read_all(c)
    assert listing == (f"servers tcp {servers_port}\r\nservices tcp {services_port}\r\n"
                       f"cat tcp {cat_port}\r\n").encode()
    with connect(cat_port) as running:
        running.sendall(b"x")
        assert running.recv(1) == b"x"      # the server is up
        with connect(servers_port) as c:
            text = read_all(c).decode()
        assert re.fullmatch(r"[1-9]\d* cat 127\.0\.0\.1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
                            r"[+-]\d{4}\r\n", text), text


def test_servers_shows_a_wait_server_without_a_peer_and_names_as_written(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # A wait = yes stream server has no peer (it accepts its clients itself): `-`,
    # keeping the four fields (it read `<no address>`, five); a name that is not UTF-8
    # is the configuration's bytes, as in the logs (it read `caf?`).
    servers_port, services_port, wait_port = free_port(), free_port(), free_port()
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    daemons.start_services([
        builtin("servers", servers_port),
        builtin("services", services_port),
        make_service(name=name, port=wait_port, wait=True, server=sys.executable,
                     server_argv=("python3", str(HELPERS / "wait_stream_server.py"), "hold")),
    ])
    with connect(services_port) as c:
        assert f"{wait_port}\r\n".encode() in read_all(c)
    with connect(services_port) as c:
        assert b"caf\xe9 tcp " in read_all(c)
    with connect(wait_port) as held:
        assert held.recv(100).startswith(b"pid=")     # the server runs
        with connect(servers_port) as c:
            text = read_all(c)
    assert re.fullmatch(rb"[1-9]\d* caf\xe9 - \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}\r\n",
                        text), text


def test_unreachable_redirect_target_frees_its_instance(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    daemon = daemons.start_services([
        make_service(name="redir", port=port, server=None, server_argv=(),
                     environment=None, redirect=("127.0.0.1", dead), instances=1,
                     **logged(tmp_path, log_on_success={"PID", "HOST", "EXIT", "TRAFFIC"}))])
    for _ in range(3):
        with connect(port) as c:
            assert read_all(c) == b""
    daemon.wait_for_log(re.escape("can't connect to remote host 127.0.0.1: "
                                  "Connection refused (errno = 111)"), count=3)
    log = wait_service_log(tmp_path, r"EXIT: redir", count=3)
    assert "service_limit" not in log
    assert "TRAFFIC" not in log


def test_unreachable_redirect_target_is_logged_before_the_client_is_closed(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # As xinetd's redirect child, which logs and then exits: a client that sees the
    # end of its connection finds the reason already in the program log.
    port, dead = free_port(), free_port()
    daemon = daemons.start_services([
        make_service(name="redir", port=port, server=None, server_argv=(),
                     environment=None, redirect=("127.0.0.1", dead),
                     **logged(tmp_path))])
    with connect(port) as c:
        assert read_all(c) == b""
        assert "can't connect to remote host 127.0.0.1: Connection refused" in daemon.log()


def forge_udp(source_port: int, port: int, payload: bytes) -> None:
    """Send a loopback UDP datagram whose source port is `source_port` (a raw socket:
    root only), as a spoofing attacker would."""
    header = struct.pack("!HHHH", source_port, port, 8 + len(payload), 0)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
        # Checksum 0: none, which IPv4 UDP allows.
        raw.sendto(header + payload, ("127.0.0.1", 0))


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a source port needs a raw socket")
def test_forged_datagram_from_a_builtin_port_is_not_answered(daemons: DaemonFactory,
                                                              tmp_path: Path) -> None:
    # Ports of our own choosing, not 7 or 13: a datagram forged from the echo port to
    # itself, or to daytime, would bounce between the builtins for ever.
    echo_port, daytime_port = free_port(), free_port()
    daemon = daemons.start_services([
        builtin("echo", echo_port, id="echo-d", socket_type=SocketType.DGRAM, wait=True,
                **logged(tmp_path)),
        builtin("daytime", daytime_port, id="daytime-d", socket_type=SocketType.DGRAM,
                wait=True, **logged(tmp_path)),
    ])
    forge_udp(echo_port, echo_port, b"loop")
    forge_udp(echo_port, daytime_port, b"loop")
    daemon.wait_for_log(re.escape(f"no reply to 127.0.0.1 port {echo_port}: the port "
                                  "of a datagram builtin (possible loop)"), count=2)
    # Both still answer ordinary clients, and the forged datagrams started nothing: a
    # loop would log a START line for every bounce.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"ping", ("127.0.0.1", echo_port))
        assert client.recv(100) == b"ping"
        client.sendto(b"", ("127.0.0.1", daytime_port))
        assert re.match(rb"\d\d [A-Z]{3} ", client.recv(100))
    log = wait_service_log(tmp_path, r"START: daytime-d ")
    assert len(re.findall(r"START: echo-d ", log)) == 1, log
    assert len(re.findall(r"START: daytime-d ", log)) == 1, log


def dgram_builtins_conf(tmp_path: Path, builtins: dict[str, int]) -> str:
    """Datagram builtins (name: port) whose starts are logged to tmp_path/svc.log."""
    return "".join(f"""
service {name}
{{
\tid             = {name}-d
\ttype           = INTERNAL UNLISTED
\tsocket_type    = dgram
\tprotocol       = udp
\twait           = yes
\tbind           = 127.0.0.1
\tport           = {port}
\tlog_type       = FILE {tmp_path / 'svc.log'}
\tlog_on_success = PID HOST
}}
""" for name, port in builtins.items())


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a source port needs a raw socket")
def test_the_loop_check_follows_the_builtins_a_reload_adds_and_removes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    echo_port, daytime_port, later_port = free_port(), free_port(), free_port()
    daemon = daemons.start_config(dgram_builtins_conf(
        tmp_path, {"echo": echo_port, "daytime": daytime_port}))
    conf = tmp_path / "daemon1.conf"

    def starts() -> int:
        text = (tmp_path / "svc.log").read_text() if (tmp_path / "svc.log").exists() else ""
        return len(re.findall(r"START: echo-d ", text))

    def echo_answers_a_client() -> None:
        # Datagrams are read in order: once this one is answered, the ones sent before
        # it were handled.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"ping", ("127.0.0.1", echo_port))
            assert client.recv(100) == b"ping"

    forge_udp(daytime_port, echo_port, b"loop")
    daemon.wait_for_log(re.escape(f"echo-d: no reply to 127.0.0.1 port {daytime_port}: "))

    # daytime removed: its port is an ordinary client's again, and is answered.
    conf.write_text(dgram_builtins_conf(tmp_path, {"echo": echo_port}))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: ")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as former:
        former.bind(("127.0.0.1", daytime_port))
        former.settimeout(10)
        forge_udp(daytime_port, echo_port, b"back")
        assert former.recv(100) == b"back"

    # daytime added on another port: that port is not answered (echo-d warned within
    # the minute already, so its START lines tell: none for the forged datagram).
    conf.write_text(dgram_builtins_conf(tmp_path, {"echo": echo_port, "daytime": later_port}))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: ", count=2)
    echo_answers_a_client()
    before = starts()
    forge_udp(later_port, echo_port, b"loop")
    echo_answers_a_client()
    assert starts() == before + 1
    assert f"no reply to 127.0.0.1 port {echo_port}" not in daemon.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a source port needs a raw socket")
def test_discard_takes_datagrams_from_builtin_ports(daemons: DaemonFactory,
                                                    tmp_path: Path) -> None:
    # discard never answers, so no datagram to it can start a loop: one from a
    # builtin's port is consumed and logged like any other (as xinetd logs it),
    # without a loop warning.
    echo_port, discard_port = free_port(), free_port()
    daemon = daemons.start_services([
        builtin("echo", echo_port, id="echo-d", socket_type=SocketType.DGRAM, wait=True),
        builtin("discard", discard_port, id="discard-d", socket_type=SocketType.DGRAM,
                wait=True, **logged(tmp_path)),
    ])
    forge_udp(19, discard_port, b"from chargen's port")
    forge_udp(echo_port, discard_port, b"from echo's port")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"ordinary", ("127.0.0.1", discard_port))
    log = wait_service_log(tmp_path, r"START: discard-d ", count=3)
    assert len(re.findall(r"START: discard-d ", log)) == 3, log
    assert "possible loop" not in daemon.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a source port needs a raw socket")
def test_a_flood_of_forged_datagrams_is_warned_about_once(daemons: DaemonFactory,
                                                          tmp_path: Path) -> None:
    echo_port, other_port = free_port(), free_port()
    daemon = daemons.start_services([
        builtin("echo", echo_port, id="echo-d", socket_type=SocketType.DGRAM, wait=True),
        builtin("discard", other_port, id="discard-d", socket_type=SocketType.DGRAM,
                wait=True),
    ])
    # Forged sources vary: the builtins' own ports and the well-known ones.
    for i in range(40):
        forge_udp((echo_port, other_port, 7, 19)[i % 4], echo_port, b"loop")
    # Datagrams are read in order: once an ordinary request sent after the flood is
    # answered, every forged one has been dropped.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"ping", ("127.0.0.1", echo_port))
        assert client.recv(100) == b"ping"
    warnings = re.findall(r"echo-d: no reply to .*\(possible loop\)", daemon.log())
    assert len(warnings) == 1, warnings


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root can change user")
@pytest.mark.parametrize("kind", ["TCPMUX", "TCPMUXPLUS"])
def test_a_tcpmux_server_runs_as_its_services_user_and_group(daemons: DaemonFactory,
                                                            kind: str) -> None:
    # CVE-2013-4342: xinetd before 2.3.15 ran TCPMUX servers as root whatever their
    # service's `user` and `group` said (xinetd-org/xinetd PR 10).
    port = free_port()
    daemons.start_config(
        f"service tcpmux\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        f"\twait = no\n\tuser = root\n\tport = {port}\n\tbind = 127.0.0.1\n}}\n"
        f"service whoami\n{{\n\ttype = {kind} UNLISTED\n\tsocket_type = stream\n"
        f"\twait = no\n\tuser = nobody\n\tgroup = daemon\n\tserver = /usr/bin/id\n}}\n")
    with connect(port) as c:
        c.sendall(b"whoami\r\n")
        c.shutdown(socket.SHUT_WR)
        answer = read_all(c).decode()
    go = "+Go\r\n" if kind == "TCPMUXPLUS" else ""
    assert re.fullmatch(rf"{re.escape(go)}uid=65534\(nobody\) gid=1\(daemon\) "
                        rf"groups=1\(daemon\)\n", answer), answer
