"""The address family of a service's socket through the real daemon, in a private network
namespace: both family flags (IPv6, with xinetd's INFO line), and an IPv4-mapped bind
address, which only a dual-stack socket can take (reference §4.2)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.ipv6_support import needs_namespace, run_plan, service

pytestmark = needs_namespace


def echo_server(name: str, port: int, extra: str) -> str:
    return service(name, port, "    socket_type = stream\n    wait = no\n    user = root\n"
                   f"    server = /bin/echo\n    server_args = {name}\n{extra}")


def test_both_family_flags_give_ipv6_with_xinetds_line(tmp_path: Path) -> None:
    conf = echo_server("both", 7701, "    flags = IPv4 IPv6\n")
    result = run_plan(tmp_path, {"conf": conf, "exits": 2, "probes": [
        {"proto": "tcp", "dst": "127.0.0.1", "port": 7701},
        {"proto": "tcp", "dst": "::1", "port": 7701}]})
    assert [r["reply"] for r in result["replies"]] == ["both\n", "both\n"], result
    assert any(line.startswith("xinetd[N]: INFO: Service both will use IPv6 or fallback to "
                               "IPv4") for line in result["program_log"]), result["program_log"]


def test_an_ipv4_mapped_bind_address_is_always_bound(tmp_path: Path) -> None:
    # `v6only = yes` in defaults would make the socket v6-only, on which Linux refuses
    # a mapped address (EINVAL); with the IPv4 flag the address is the IPv4 one it maps.
    conf = ("defaults\n{\n    v6only = yes\n}\n"
            + echo_server("mapped", 7702, "    bind = ::ffff:127.0.0.1\n")
            + echo_server("mapped4", 7703, "    bind = ::ffff:127.0.0.1\n    flags = IPv4\n"))
    result = run_plan(tmp_path, {"conf": conf, "exits": 2, "probes": [
        {"proto": "tcp", "dst": "127.0.0.1", "port": 7702},
        {"proto": "tcp", "dst": "127.0.0.1", "port": 7703}]})
    assert [r["reply"] for r in result["replies"]] == ["mapped\n", "mapped4\n"], result
    assert "START: mapped pid=N from=::ffff:127.0.0.1" in result["service_log"]
    assert "START: mapped4 pid=N from=127.0.0.1" in result["service_log"]
    assert not [line for line in result["program_log"]
                if "bind failed" in line or "has no IPv4 address" in line], result
    assert any("service mapped: v6only = yes ignored: bind address ::ffff:127.0.0.1 needs "
               "a dual-stack socket" in line for line in result["program_log"]), result
