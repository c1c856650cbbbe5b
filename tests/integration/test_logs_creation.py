"""A service whose `log_type = FILE` cannot be created is not activated, as in xinetd
(reference §5.1): `creation of ID log failed`, then `Service ID failed to start and is
deactivated.`; the other services serve. A reload tries again."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

from tests.daemon import DaemonFactory, free_port
from tests.integration.test_dispatch import connect, read_all


def service(name: str, port: int, log: Path) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tlog_type = FILE {log}\n}}\n")


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def test_a_service_whose_log_cannot_be_created_is_deactivated(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    bad_port, good_port = free_port(), free_port()
    missing = tmp_path / "no-such-folder" / "bad.log"
    good_log = tmp_path / "good.log"
    daemon = daemons.start_config(service("bad", bad_port, missing)
                                  + service("good", good_port, good_log))
    text = daemon.log()
    lines = re.findall(r"ERROR: .*", text)
    assert lines[-2:] == ["ERROR: creation of bad log failed",
                          "ERROR: Service bad failed to start and is deactivated."]
    # The reason comes first, naming the file.
    assert f"Cannot open {missing}: No such file or directory (errno = 2)" in text
    assert "Started working: 1 available service\n" in text
    assert refused(bad_port)
    with connect(good_port) as conn:
        assert read_all(conn) == b"hi\n"
    # The log of a service that starts exists before its first entry, as in xinetd.
    assert good_log.exists()

    # Once the folder exists, a reload activates the service.
    missing.parent.mkdir()
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured")
    with connect(bad_port) as conn:
        assert read_all(conn) == b"hi\n"
    daemon.wait_for_log(r"Reconfigured")
    assert daemon.log().count("creation of bad log failed") == 1


def test_a_defaults_log_that_cannot_be_created_is_reported_once(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    missing = tmp_path / "no-such-folder" / "common.log"
    services = "".join(
        f"service s{n}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n"
        f"\tbind = 127.0.0.1\n\tport = {port}\n"
        + ("\tlog_type = SYSLOG daemon\n" if n == 2 else "") + "}\n"
        for n, port in enumerate(ports))
    daemon = daemons.start_config(f"defaults\n{{\n\tlog_type = FILE {missing}\n}}\n"
                                  + services)
    assert re.findall(r"ERROR: (?!Cannot open).*", daemon.log()) == [
        "ERROR: creation of default log failed",
        "ERROR: Service s0 failed to start and is deactivated.",
        "ERROR: Service s1 failed to start and is deactivated."]
    assert refused(ports[0]) and refused(ports[1])
    with connect(ports[2]) as conn:
        assert read_all(conn) == b"hi\n"


def test_the_log_is_opened_once_the_socket_is_bound(daemons: DaemonFactory,
                                                    tmp_path: Path) -> None:
    # As xinetd's svc_activate(): bind first, then the log. A service whose port is
    # taken leaves no empty log file behind, and one that can have neither its port nor
    # its log says that its port is taken (the log would be the next thing to fix).
    taken = [socket.socket(), socket.socket()]
    for sock in taken:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
    try:
        ports = [sock.getsockname()[1] for sock in taken]
        created = tmp_path / "created.log"
        unreachable = tmp_path / "no-such-folder" / "svc.log"
        good_port = free_port()
        daemon = daemons.start_config(service("busy", ports[0], created)
                                      + service("both", ports[1], unreachable)
                                      + service("good", good_port, tmp_path / "good.log"))
        text = daemon.wait_for_log(r"Started working: 1 available service\n")
    finally:
        for sock in taken:
            sock.close()
    for name in ("busy", "both"):
        assert (f"bind failed (Address already in use (errno = 98)). service = {name}"
                in text), text
        assert f"Service {name} failed to start and is deactivated." in text
    assert not created.exists()
    assert "creation of both log failed" not in text and "Cannot open" not in text
    assert (tmp_path / "good.log").exists()
