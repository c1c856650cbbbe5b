"""The running-server counts a reload carries over: `per_source` counts a client by its
address, however the service's socket sees it.

Real daemon, real servers that hold their connection (tests/helpers/reload_server.py).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, read_log, wait_until
from tests.integration.test_reload import defaults, read_line, reload, service

needs_ipv6 = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")


@needs_ipv6
def test_per_source_still_counts_a_client_after_its_socket_changes_family(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    # Dual stack: the client is seen as ::ffff:127.0.0.1.
    daemon = daemons.start_config(defaults(tmp_path) + service(
        "limited", port, "A", "hold", bind="::", per_source="1"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
        assert read_line(first).startswith("A pid=")
        # IPv4 only: the same client is seen as 127.0.0.1, its server still runs.
        log = reload(daemon, defaults(tmp_path) + service(
            "limited", port, "A", "hold", bind="127.0.0.1", per_source="1"), 1)
        assert "readjusting service limited" in log
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert second.recv(100) == b""
        wait_until(lambda: "FAIL: limited per_source_limit from=127.0.0.1"
                   in read_log(tmp_path / "services.log"), what="the per_source refusal")
