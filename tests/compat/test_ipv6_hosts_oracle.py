"""Hosts of one family, and mapped entries on dual-stack ones, side by side with the real
xinetd 2.3.15.3 (tests/helpers/ipv6_scenario.py: one namespace per daemon, the same plan).

- An IPv6-only host (127.0.0.1 taken off `lo`, ::1 kept): services without flags,
  `flags = IPv6`/`IPv4`, `bind = ::`, `::1` and `127.0.0.1` (not there: bind retries,
  deactivated), builtins on stream and dgram, redirects to ::1 and to an unreachable
  IPv4 target, tcpmux, only_from with IPv4 and IPv6 entries.
- An IPv4-only host (`disable_ipv6` before `lo` comes up): the dual-stack default still
  serves IPv4 clients as `::ffff:a.b.c.d`, `bind = ::1` and `v6only = yes` serve
  nobody, IPv6 and mapped entries in only_from/no_access and hosts.allow, redirects to
  ::1, to a mapped target and by name.
- A dual-stack host: the same host must get the same decision through either family.
  xinetd (and libwrap) let an IPv4 client through entries that name it in mapped form
  (`no_access = ::ffff:127.0.0.1` on a `flags = IPv4` service, hosts.deny
  `[::ffff:127.0.0.1]` on any); pyxinetd refuses it (docs/compatibility.md).

Replies and FAIL lines are compared; xinetd's START/EXIT for refused clients and its
IPV6_V6ONLY line for redirects are known differences (docs/compatibility.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.compat.test_ipv6_oracle import builtin, comparable, echo_server, tcp
from tests.integration.ipv6_support import needs_namespace, run_plan, service
from tests.oracle import require_xinetd

pytestmark = needs_namespace

HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
NO_IPV6 = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]


def redirect(name: str, port: int, target: str) -> str:
    return service(name, port, "    socket_type = stream\n    wait = no\n    user = root\n"
                               f"    redirect = {target}\n")


def udp(dst: str, port: int, send: str) -> dict[str, Any]:
    return {"proto": "udp", "dst": dst, "port": port, "send": send}


def both(tmp_path: Path, plan: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    xinetd = require_xinetd()
    return (comparable(run_plan(tmp_path / "xinetd", plan, xinetd)),
            comparable(run_plan(tmp_path / "pyxinetd", plan)))


def assert_same(plan: dict[str, Any], theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    for probe, a, b in zip(plan["probes"], theirs["replies"], ours["replies"]):
        assert a == b, (probe, a, b)
    assert ours == theirs


TCPMUX = "".join(
    f"service {name}\n{{\n    type = {kind} UNLISTED\n    socket_type = stream\n"
    f"    protocol = tcp\n    wait = no\n    user = root\n    server = /bin/echo\n"
    f"    server_args = from {name}\n    log_type = FILE {{LOG}}\n"
    f"    log_on_success = HOST\n    log_on_failure = HOST\n}}\n"
    for name, kind in (("mux", "TCPMUX"), ("plus", "TCPMUXPLUS")))

IPV6_ONLY_CONF = "".join([
    echo_server("plain", 7001), echo_server("six", 7002, "    flags = IPv6\n"),
    echo_server("four", 7003, "    flags = IPv4\n"),
    echo_server("anyv6", 7004, "    bind = ::\n"), echo_server("loop6", 7005, "    bind = ::1\n"),
    echo_server("loop4", 7006, "    bind = 127.0.0.1\n"),
    builtin("echo", "echo-stream", 7010, "stream"), builtin("echo", "echo-dgram", 7011, "dgram"),
    builtin("echo", "echo-dgram4", 7013, "dgram", "    flags = IPv4\n"),
    redirect("to6", 7020, "::1 7010"), redirect("to4", 7021, "127.0.0.1 7010"),
    redirect("to4name", 7022, "localhost 7010"),
    builtin("tcpmux", "tcpmux", 1, "stream"), TCPMUX,
    echo_server("only4", 7030, "    only_from = 127.0.0.1\n"),
    echo_server("only6", 7031, "    only_from = ::1\n"),
])

IPV6_ONLY_PROBES = [
    *(tcp(host, port) for port in range(7001, 7007) for host in ("::1", "127.0.0.1")),
    tcp("::1", 7010, send="hi\n", until="\n"), udp("::1", 7011, "a\n"), udp("::1", 7013, "b\n"),
    udp("127.0.0.1", 7011, "c\n"),
    tcp("::1", 7020, send="six\n", until="\n"), tcp("::1", 7021, send="four\n", until="\n"),
    tcp("::1", 7022, send="name\n", until="\n"), tcp("::1", 1, send="mux\r\n"),
    tcp("::1", 7030), tcp("::1", 7031),
]


def test_an_ipv6_only_host_is_served_as_by_xinetd(tmp_path: Path) -> None:
    plan = {"links": [["addr", "del", "127.0.0.1/8", "dev", "lo"]], "hosts": HOSTS,
            "conf": IPV6_ONLY_CONF, "probes": IPV6_ONLY_PROBES}
    theirs, ours = both(tmp_path, plan)
    assert_same(plan, theirs, ours)
    served = [r["reply"] for r in ours["replies"]]
    # No flags, IPv6, `::` and `::1` serve ::1; nothing reaches 127.0.0.1.
    assert served[:12:2] == ["plain\n", "six\n", "refused", "anyv6\n", "loop6\n", "refused"]
    assert set(served[1:12:2]) == {"error: Network is unreachable"}
    assert served[12:] == ["hi\n", "a\n", "timeout", "error: Network is unreachable",
                           "six\n", "", "", "from mux\n", "", "only6\n"]


IPV4_ONLY_CONF = "".join([
    echo_server("plain", 7001), echo_server("six", 7002, "    flags = IPv6\n"),
    echo_server("four", 7003, "    flags = IPv4\n"),
    echo_server("loop6", 7005, "    bind = ::1\n"),
    echo_server("sixonly", 7006, "    v6only = yes\n"),
    echo_server("mapped", 7007, "    bind = ::ffff:127.0.0.1\n"),
    echo_server("of128", 7010, "    only_from = ::1/128\n"),
    echo_server("ofmapped", 7011, "    only_from = ::ffff:127.0.0.1\n"),
    echo_server("of4", 7012, "    only_from = 127.0.0.1\n"),
    echo_server("na4", 7013, "    no_access = 127.0.0.0/8\n"),
    echo_server("wrapa", 7015, "    libwrap = wrapa\n"),
    echo_server("wrapc", 7017, "    libwrap = wrapc\n"),
    builtin("echo", "echo-stream", 7031, "stream"),
    builtin("echo", "echo-dgram6", 7033, "dgram", "    flags = IPv6\n"),
    redirect("to6", 7040, "::1 7031"), redirect("to4", 7041, "127.0.0.1 7031"),
    redirect("tomapped", 7042, "::ffff:127.0.0.1 7031"),
    redirect("toname", 7043, "localhost 7031"),
])

IPV4_ONLY_PROBES = [
    *(tcp("127.0.0.1", port) for port in (7001, 7002, 7003, 7005, 7006, 7007, 7010, 7011,
                                          7012, 7013, 7015, 7017)),
    udp("127.0.0.1", 7033, "b\n"),
    *(tcp("127.0.0.1", port, send=f"{port}\n", until="\n") for port in range(7040, 7044)),
    tcp("::1", 7001),
]


def test_an_ipv4_only_host_is_served_as_by_xinetd(tmp_path: Path) -> None:
    plan = {"sysctl": NO_IPV6, "hosts": HOSTS, "conf": IPV4_ONLY_CONF,
            "probes": IPV4_ONLY_PROBES,
            "etc": {"hosts.allow": "wrapa: [::1]/128\nwrapc: 127.0.0.1\n",
                    "hosts.deny": "wrapa wrapc: ALL\n"}}
    theirs, ours = both(tmp_path, plan)
    assert_same(plan, theirs, ours)
    assert [r["reply"] for r in ours["replies"]] == [
        "plain\n", "six\n", "four\n", "refused", "refused", "mapped\n", "", "ofmapped\n",
        "of4\n", "", "", "wrapc\n", "b\n", "", "7041\n", "7042\n", "7043\n",
        "error: Cannot assign requested address"]


# (service, attribute lines, hosts.deny line or ""); ports from 7100 in order.
F4 = "    flags = IPv4\n"
MAPPED_RULES = (
    ("na_m4", F4 + "    no_access = ::ffff:127.0.0.1\n", ""),
    ("na_m104", F4 + "    no_access = ::ffff:127.0.0.0/104\n", ""),
    ("rank_4", F4 + "    only_from = 127.0.0.0/8\n    no_access = ::ffff:127.0.0.1\n", ""),
    ("of_m4", F4 + "    only_from = ::ffff:127.0.0.1\n", ""),
    ("na_m4d", "    no_access = ::ffff:127.0.0.1\n", ""),
    ("na_4d", "    no_access = 127.0.0.1\n", ""),
    ("wd_m", "    libwrap = wd_m\n", "wd_m: [::ffff:127.0.0.1]\n"),
    ("wd_m4", F4 + "    libwrap = wd_m\n", ""),
    ("wd_m104", "    libwrap = wd_m104\n", "wd_m104: [::ffff:127.0.0.0]/104\n"),
    ("wd_4", "    libwrap = wd_4\n", "wd_4: 127.0.0.1\n"),
)


def test_mapped_entries_refuse_the_ipv4_host_they_name(tmp_path: Path) -> None:
    conf = "".join(echo_server(name, port, extra)
                   for port, (name, extra, _) in enumerate(MAPPED_RULES, 7100))
    probes = [tcp("127.0.0.1", port) for port in range(7100, 7100 + len(MAPPED_RULES))]
    plan = {"hosts": HOSTS, "conf": conf, "probes": probes,
            "etc": {"hosts.allow": "", "hosts.deny": "".join(r[2] for r in MAPPED_RULES)}}
    theirs, ours = both(tmp_path, plan)
    served = {name: r["reply"] == f"{name}\n"
              for (name, _, _), r in zip(MAPPED_RULES, ours["replies"])}
    assert served == {"na_m4": False, "na_m104": False, "rank_4": False, "of_m4": True,
                      "na_m4d": False, "na_4d": False, "wd_m": False, "wd_m4": False,
                      "wd_m104": False, "wd_4": False}
    # xinetd: the mapped entries match nobody on an IPv4 socket, libwrap's nobody at all.
    escaped = {name for (name, _, _), r in zip(MAPPED_RULES, theirs["replies"])
               if r["reply"] == f"{name}\n"}
    assert escaped == {"na_m4", "na_m104", "rank_4", "wd_m", "wd_m4", "wd_m104"}
