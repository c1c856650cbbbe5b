"""`bind`/`interface` with IPv6 addresses through the real daemon, in a private network
namespace (a veth pair d0/d1 with 2001:db8::1 and fe80::1 on d0): a link-local address
with its zone (`fe80::1%d0`) is bound on that interface, as xinetd binds it; a zone
naming no interface disables the service at load, as xinetd's `bad address` does.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.ipv6_support import VETH, env_server, needs_namespace, run_plan, service

pytestmark = needs_namespace


def test_link_local_bind_with_zone_serves_on_that_interface(tmp_path: Path) -> None:
    conf = (service("zoned", 7010, "    socket_type = stream\n    wait = no\n"
                    "    interface = fe80::1%d0\n" + env_server())
            + service("unknownzone", 7011, "    socket_type = stream\n    wait = no\n"
                      "    bind = fe80::1%nosuch\n" + env_server()))
    result = run_plan(tmp_path, {"links": VETH, "conf": conf, "exits": 1, "probes": [
        {"proto": "tcp", "dst": "fe80::1", "port": 7010, "scope": "d0"}]})
    assert "REMOTE_HOST" in result["replies"][0]["reply"], result
    assert "START: zoned pid=N from=fe80::1%d0" in result["service_log"]
    problems = [line for line in result["program_log"] if "unknownzone" in line]
    assert any("fe80::1%nosuch" in line and "DISABLING" not in line
               for line in problems), result["program_log"]
    assert not any("bind failed" in line for line in result["program_log"]), \
        result["program_log"]
