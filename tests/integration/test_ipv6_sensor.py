"""The SENSOR deny list across the address families, through the real daemon in a
private network namespace: a client caught on an IPv4 socket (listed as `a.b.c.d`) is
refused on a dual-stack one, where it arrives as `::ffff:a.b.c.d`, as in xinetd, and
one caught on a dual-stack socket is refused on an IPv4 one too (xinetd lets it in
there: docs/compatibility.md)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.ipv6_support import needs_namespace, run_plan, service

pytestmark = needs_namespace

LINKS = [["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
         ["link", "set", "d0", "up"], ["link", "set", "d1", "up"],
         ["addr", "add", "192.0.2.1/24", "dev", "d0"]]


def echo_server(name: str, port: int, flags: str = "") -> str:
    body = ("    socket_type = stream\n    wait = no\n    user = root\n"
            f"    server = /bin/echo\n    server_args = {name}\n")
    return service(name, port, body + (f"    flags = {flags}\n" if flags else ""))


def test_a_caught_client_is_refused_in_both_of_its_forms(tmp_path: Path) -> None:
    conf = (echo_server("trap6", 7501, "SENSOR\n    deny_time = 5")
            + echo_server("trap4", 7504, "SENSOR IPv4\n    deny_time = 5")
            + echo_server("four", 7502, "IPv4") + echo_server("dual", 7503))
    probes = [{"proto": "tcp", "dst": "192.0.2.1", "port": 7504},
              {"proto": "tcp", "dst": "192.0.2.1", "port": 7503},
              {"proto": "tcp", "dst": "192.0.2.1", "port": 7502},
              {"proto": "tcp", "dst": "127.0.0.1", "port": 7501},
              {"proto": "tcp", "dst": "127.0.0.1", "port": 7502},
              {"proto": "tcp", "dst": "127.0.0.1", "port": 7503},
              {"proto": "tcp", "dst": "::1", "port": 7503}]
    result = run_plan(tmp_path, {"links": LINKS, "conf": conf, "exits": 1, "probes": probes})
    assert [r["reply"] for r in result["replies"]] == ["", "", "", "", "", "", "dual\n"], result
    log = result["service_log"]
    assert "FAIL: dual address from=::ffff:192.0.2.1" in log
    assert "FAIL: four address from=127.0.0.1" in log
    added = [line.split("} ", 1)[1] for line in result["program_log"] if "Adding" in line]
    assert added == ["Adding 192.0.2.1 to the global_no_access list for 5 minutes",
                     "Adding ::ffff:127.0.0.1 to the global_no_access list for 5 minutes"], \
        result["program_log"]
