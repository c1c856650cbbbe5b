"""Banner files that cannot be sent, against the real daemon: a missing file, a FIFO,
a directory, a file the daemon may not read. Each is skipped, the client is served (or
refused) as if no banner were configured, and the program log names the file, why it
was skipped and the client it was meant for; the daemon keeps serving."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from tests.daemon import DaemonFactory, free_port, wait_until

DEADLINE = 10.0


def service(name: str, port: int, banner_line: str, extra: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = nobody\n\tport = {port}\n\tbind = 127.0.0.1\n"
            f"\tserver = /bin/echo\n\tserver_args = served\n\t{banner_line}\n{extra}}}\n")


def fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
        data = b""
        while chunk := c.recv(4096):
            data += chunk
        return data


def test_unusable_banner_files_are_named_with_the_reason_and_the_client(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    ports = [free_port() for _ in range(3)]
    conf = "".join([
        service("bmissing", ports[0], f"banner = {missing}"),
        service("bfifo", ports[1], f"banner_success = {fifo}"),
        service("bfolder", ports[2], f"banner_fail = {folder}", "\tonly_from = 192.0.2.1\n"),
    ])
    daemon = daemons.start_config(conf)
    assert fetch(ports[0]) == b"served\n"
    assert fetch(ports[1]) == b"served\n"
    assert fetch(ports[2]) == b""           # refused: no banner, closed
    daemon.wait_for_log("open of banner", count=3)
    lines = re.findall(r"ERROR: (service = .*)", daemon.log())
    # xinetd's text first, then why and for whom.
    assert lines == [
        f"service = bmissing, open of banner {missing} failed: "
        "No such file or directory (errno = 2) (client 127.0.0.1)",
        f"service = bfifo, open of banner {fifo} failed: not a regular file "
        "(client 127.0.0.1)",
        f"service = bfolder, open of banner {folder} failed: not a regular file "
        "(client 127.0.0.1)",
    ]
    assert fetch(ports[0]) == b"served\n"     # still serving


def test_the_client_of_a_dual_stack_service_is_named_as_its_from_field(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # An IPv4 client of a service without `bind` is ::ffff:a.b.c.d in every line of
    # its request, the banner's included, although its accepted socket is IPv4.
    missing = tmp_path / "missing"
    ports = [free_port() for _ in range(3)]
    conf = "".join(
        service(name, port, f"{moment} = {missing}", extra).replace("\tbind = 127.0.0.1\n", "")
        for name, port, moment, extra in (
            ("dbanner", ports[0], "banner", ""),
            ("dsuccess", ports[1], "banner_success", ""),
            ("dfail", ports[2], "banner_fail", "\tonly_from = 192.0.2.1\n")))
    daemon = daemons.start_config(conf)
    assert fetch(ports[0]) == b"served\n"
    assert fetch(ports[1]) == b"served\n"
    assert fetch(ports[2]) == b""
    daemon.wait_for_log("open of banner", count=3)
    clients = re.findall(r"open of banner .* failed: .* \(client (\S+)\)$", daemon.log(), re.M)
    assert clients == ["::ffff:127.0.0.1"] * 3


def test_a_banner_that_cannot_be_opened(daemons: DaemonFactory, tmp_path: Path) -> None:
    # Root reads any file whatever its mode: a symlink to itself cannot be opened.
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    port = free_port()
    daemon = daemons.start_config(service("bloop", port, f"banner = {loop}"))
    assert fetch(port) == b"served\n"
    line = daemon.wait_for_log("open of banner")
    assert (f"service = bloop, open of banner {loop} failed: Too many levels of "
            "symbolic links (errno = 40) (client 127.0.0.1)") in line


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_clients_that_never_read_a_large_banner_share_one_copy(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # An in-loop service queues its whole banner_success for each client; clients that
    # never read it must not cost the daemon one copy each (40 x 8 MB).
    banner = tmp_path / "banner"
    banner.write_bytes(b"b" * 8_000_000)
    port, log = free_port(), tmp_path / "services.log"
    daemon = daemons.start_config(
        f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        f"\twait = no\n\tport = {port}\n\tbind = 127.0.0.1\n\tcps = 0 0\n"
        f"\tbanner_success = {banner}\n\tlog_type = FILE {log}\n"
        f"\tlog_on_success = HOST\n}}\n")
    before = resident_kib(daemon.pid)
    clients = []
    try:
        for _ in range(40):
            client = socket.socket()
            clients.append(client)
            # A small window: the kernel takes little of the banner off the daemon.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", port))
        wait_until(lambda: log.exists() and log.read_text().count("START: echo") == 40,
                   DEADLINE, what="40 sessions")
        grown = resident_kib(daemon.pid) - before
        assert grown < 80_000, f"the daemon grew by {grown} KiB"
        # A client that reads gets the whole banner, then its echo.
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
            c.sendall(b"ping")
            c.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := c.recv(1 << 20):
                data += chunk
        assert data == b"b" * 8_000_000 + b"ping"
    finally:
        for client in clients:
            client.close()
    assert daemon.proc.poll() is None
