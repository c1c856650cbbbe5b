"""`redirect` between the address families through the real daemon, in a private network
and mount namespace (its own /etc/hosts): an IPv6 client relayed to an IPv4 target and
back, and a target given by a host name with both an IPv4 and an IPv6 address, which
xinetd resolves for IPv4 only (reference §4.12)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.ipv6_support import VETH, needs_namespace, run_plan, service

pytestmark = needs_namespace

HOSTS = "127.0.0.1 localhost\n127.0.0.1 both\n::1 both\n2001:db8::2 onlysix\n"


def echo(name: str, port: int, bind: str) -> str:
    return (f"service echo\n{{\n    type = INTERNAL UNLISTED\n    id = {name}\n"
            f"    port = {port}\n    socket_type = stream\n    wait = no\n"
            f"    bind = {bind}\n}}\n")


def redirect(name: str, port: int, target: str) -> str:
    return service(name, port, "    socket_type = stream\n    wait = no\n    user = root\n"
                   f"    redirect = {target}\n    log_on_success += TRAFFIC\n")


def test_a_host_name_target_is_reached_over_ipv4(tmp_path: Path) -> None:
    # `both` has 127.0.0.1 and ::1; only the IPv4 echo listens: xinetd connects to
    # 127.0.0.1 (its getaddrinfo asks for IPv4 unless the target holds a colon).
    conf = (echo("echo4", 7302, "127.0.0.1") + redirect("byname", 7303, "both 7302")
            + redirect("tofour", 7304, "127.0.0.1 7302"))
    result = run_plan(tmp_path, {"hosts": HOSTS, "conf": conf, "exits": 2, "probes": [
        {"proto": "tcp", "dst": "::1", "port": 7303, "send": "by name\n", "until": "\n"},
        {"proto": "tcp", "dst": "::1", "port": 7304, "send": "six to four\n",
         "until": "\n"}]})
    assert [r["reply"] for r in result["replies"]] == ["by name\n", "six to four\n"], result
    assert "TRAFFIC: byname in=8(bytes) out=8(bytes)" in result["service_log"], result
    assert not any("can't connect" in line for line in result["program_log"]), result


def test_a_link_local_target_and_source_keep_their_zone(tmp_path: Path) -> None:
    conf = (echo("echoll", 7305, "fe80::1%d0")
            + redirect("toll", 7306, "fe80::1%d0 7305").replace(
                "    redirect =", "    redirect_source = fe80::1%d0\n    redirect =")
            + redirect("nobody", 7307, "fe80::1%d0 7308"))
    result = run_plan(tmp_path, {"links": VETH, "conf": conf, "exits": 2, "probes": [
        {"proto": "tcp", "dst": "::1", "port": 7306, "send": "zoned\n", "until": "\n"},
        {"proto": "tcp", "dst": "::1", "port": 7307}]})
    assert [r["reply"] for r in result["replies"]] == ["zoned\n", ""], result
    assert "xinetd[N]: ERROR: can't connect to remote host fe80::1%d0: Connection refused " \
           "(errno = 111) (client ::1)" in result["program_log"], result["program_log"]


def test_a_source_zone_whose_interface_is_gone_is_named_in_the_resolvers_words(
        tmp_path: Path) -> None:
    # redirect_source's zone is resolved for each connection; once its interface is
    # deleted the resolver fails, and its negative code is not an errno: the line once
    # read `Unknown error -2 (errno = -2)`.
    conf = (echo("echoll", 7309, "fe80::1%d0")
            + redirect("fromll", 7310, "fe80::1%d0 7309").replace(
                "    redirect =", "    redirect_source = fe80::1%d0\n    redirect ="))
    result = run_plan(tmp_path, {"links": VETH, "conf": conf, "exits": 2, "probes": [
        {"proto": "tcp", "dst": "::1", "port": 7310, "send": "zoned\n", "until": "\n"},
        {"proto": "ip", "args": ["link", "del", "d0"]},
        {"proto": "tcp", "dst": "::1", "port": 7310, "send": "gone\n", "until": "\n"}]})
    assert [r["reply"] for r in result["replies"]] == ["zoned\n", ""], result
    failures = [line for line in result["program_log"] if "can't connect" in line]
    assert len(failures) == 1 and failures[0].startswith(
        "xinetd[N]: ERROR: can't connect to remote host fe80::1%"), result["program_log"]
    assert failures[0].endswith(" from fe80::1%d0: Name or service not known (client ::1)"), \
        failures
