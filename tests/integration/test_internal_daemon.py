"""Builtins, tcpmux, banners and redirect through a running daemon."""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

from pyxinetd.config.model import AddressEntry
from tests.daemon import DaemonFactory, free_port
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
