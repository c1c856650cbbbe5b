"""A reload keeps the running intercepted server (flags = INTERCEPT) of a kept service
served: the daemon goes on reading the service socket for it.

Real daemon, real servers (tests/helpers/intercept_server.py, as in test_intercept.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon import DaemonFactory, free_port
from tests.integration.test_intercept import config, exchange, tcp_from
from tests.integration.test_reload import reload


def test_the_running_server_keeps_its_clients_when_only_the_ids_case_changes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(config(tmp_path, port, "id = Icept"))
    pid = exchange(tcp_from("127.0.0.2", port))["pid"]
    reload(daemon, config(tmp_path, port, "id = icept"), 1)
    # The same service: its running server is handed the next client.
    assert exchange(tcp_from("127.0.0.2", port))["pid"] == pid


def test_two_services_sharing_an_id_each_keep_their_own_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    second = config(tmp_path, two, "id = shared").split("service icept", 1)[1]
    text = config(tmp_path, one, "id = shared") + "service icept" + second
    daemon = daemons.start_config(text)
    first_pid = exchange(tcp_from("127.0.0.2", one))["pid"]
    second_pid = exchange(tcp_from("127.0.0.2", two))["pid"]
    assert first_pid != second_pid
    reload(daemon, None, 1)
    # Each server goes on being handed its own service's clients.
    assert exchange(tcp_from("127.0.0.2", one))["pid"] == first_pid
    assert exchange(tcp_from("127.0.0.2", two))["pid"] == second_pid
