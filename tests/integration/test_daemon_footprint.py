"""The serving daemon maps no library it has no use for.

Its resident memory is a benchmark target (bench/serve.py, docs/performance.md): an
import that maps a large shared library stays resident for the daemon's whole life.
hashlib maps OpenSSL's libcrypto (3.7 MiB resident here), and came in once through the
installation check's digests; ssl would bring libssl too. Checked after start-up, a
reload (its loader child does the parsing) and a name lookup (its helper is another
process), from the daemon's own /proc/PID/maps.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.daemon import DaemonFactory, free_port

UNNEEDED = ("libcrypto", "libssl", "_hashlib", "_ssl")


def mapped_libraries(pid: int) -> set[str]:
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and ".so" in fields[5]:
            names.add(Path(fields[5]).name)
    return names


def test_no_crypto_library_is_mapped_while_serving(daemons: DaemonFactory) -> None:
    port = free_port()
    daemon = daemons.start_config(
        f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        f"\twait = no\n\tbind = 127.0.0.1\n\tport = {port}\n\tonly_from = localhost\n}}\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"ping\n")
        assert client.recv(10) == b"ping\n"
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: new=0 old=1 dropped=0")
    mapped = mapped_libraries(daemon.pid)
    assert mapped and not {name for name in mapped if name.startswith(UNNEEDED)}, mapped
