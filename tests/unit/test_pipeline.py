"""The post-parse pipeline: inference, look-ups, required attributes, special cases."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.config.loader import load_configuration
from pyxinetd.config.lookups import Lookups
from pyxinetd.config.model import SocketType
from pyxinetd.rpc import versions
from tests.unit.config_kit import (
    ENV, dropped_reasons, errors, load_text, messages, service_block, warnings,
)


def block(name: str, *lines: str) -> str:
    return service_block(name, *lines, base=False)


def only(tmp_path: Path, text: str) -> Any:
    config = load_text(tmp_path, text)
    assert len(config.services) == 1, (dropped_reasons(config), errors(config))
    return config.services[0]


def test_protocol_inferred_from_socket_type_and_back(tmp_path: Path) -> None:
    s = only(tmp_path, block("echo", "type = INTERNAL", "socket_type = dgram", "wait = yes"))
    assert (s.protocol, s.protocol_number, s.port) == ("udp", 17, 7)
    s = only(tmp_path, block("echo", "type = INTERNAL", "protocol = tcp", "wait = no"))
    assert (s.socket_type, s.port, s.server, s.server_argv, s.environment) == (
        SocketType.STREAM, 7, None, (), None)


@pytest.mark.parametrize("protocol, socket_type, takes", [
    ("tcp", "dgram", "stream"), ("tcp", "seqpacket", "stream"), ("udp", "stream", "dgram"),
])
def test_protocol_that_cannot_carry_the_socket_type(tmp_path: Path, protocol: str,
                                                    socket_type: str, takes: str) -> None:
    # xinetd takes the pair and fails at start: "socket creation failed (Protocol not
    # supported)"; rejected here with the service's file and line instead.
    config = load_text(tmp_path, block("time", "type = UNLISTED", "port = 3737",
                                       f"protocol = {protocol}", f"socket_type = {socket_type}",
                                       "wait = no", "user = nobody", "server = /bin/cat"))
    assert dropped_reasons(config) == [
        f"service time: protocol {protocol} does not carry socket_type {socket_type} "
        f"(it takes {takes} or raw)"]


def test_raw_sockets_take_any_protocol(tmp_path: Path) -> None:
    s = only(tmp_path, block("rawtcp", "type = UNLISTED", "port = 3737", "protocol = tcp",
                             "socket_type = raw", "wait = yes", "user = root",
                             "server = /bin/cat"))
    assert (s.protocol, s.socket_type) == ("tcp", SocketType.RAW)


def test_listed_service_port_from_etc_services(tmp_path: Path) -> None:
    s = only(tmp_path, block("ftp", "socket_type = stream", "wait = no", "user = root",
                             "server = /bin/cat", "server_args = -u"))
    assert (s.port, s.server_argv) == (21, ("cat", "-u"))


def test_listed_service_expects_its_port(tmp_path: Path) -> None:
    config = load_text(tmp_path, block("ftp", "socket_type = stream", "wait = no",
                                       "user = root", "server = /bin/cat", "port = 2121"))
    assert dropped_reasons(config) == ["Service ftp expects port 21, not 2121"]


def test_listed_service_must_be_in_etc_services(tmp_path: Path) -> None:
    config = load_text(tmp_path, block("nosuchsvc", "socket_type = stream", "wait = no",
                                       "user = root", "server = /bin/cat"))
    assert dropped_reasons(config)[0].startswith(
        "Port not specified and can't find service: nosuchsvc with getservbyname (")
    assert "nosuchsvc/tcp is not in /etc/services" in dropped_reasons(config)[0]


@pytest.mark.parametrize("extra, words", [
    ((), "Port not specified for service: ftp and no protocol given"),
    (("port = 21",), "A protocol or a socket_type must be specified for service: ftp."),
    (("type = UNLISTED",), "Unlisted service: ftp must have a port entry"),
])
def test_no_socket_type_nor_protocol_fails_the_port_first(
        tmp_path: Path, extra: tuple[str, ...], words: str) -> None:
    config = load_text(tmp_path, block("ftp", "wait = no", "user = nobody",
                                       "server = /bin/cat", *extra))
    assert config.services == () and dropped_reasons(config)[0].startswith(words)


@pytest.mark.parametrize("missing, words", [
    ("socket_type", "Service svc missing attribute socket_type - DISABLING"),
    ("wait", "Service svc missing attribute wait - DISABLING"),
    ("user", "Service svc missing attribute user - DISABLING"),
    ("server", "Must specify a server in svc - service disabled"),
    ("port", "Unlisted service: svc must have a port entry - service disabled"),
])
def test_required_attributes(tmp_path: Path, missing: str, words: str) -> None:
    lines = [l for l in ("type = UNLISTED", "socket_type = raw", "protocol = tcp", "wait = no",
                         "user = nobody", "server = /bin/cat", "port = 20001")
             if not l.startswith(missing)]
    if missing == "socket_type":
        lines = [l.replace("protocol = tcp", "protocol = icmp") for l in lines]
    config = load_text(tmp_path, block("svc", *lines))
    assert config.services == () and words.split(" - ")[0] in dropped_reasons(config)[0]
    assert any(e.endswith(f"error: {words}") for e in errors(config))


def test_internal_builtins_by_name_and_socket_type(tmp_path: Path) -> None:
    text = (block("daytime", "type = INTERNAL", "id = daytime-dgram", "socket_type = dgram",
                  "wait = yes")
            + block("tcpmux", "type = INTERNAL", "socket_type = stream", "wait = no")
            + block("servers", "type = INTERNAL UNLISTED", "socket_type = stream",
                    "wait = no", "port = 9099")
            + block("tcpmux", "id = tcpmux-dgram", "type = INTERNAL UNLISTED",
                    "socket_type = dgram", "wait = yes", "port = 9098")
            + block("bogus", "type = INTERNAL UNLISTED", "socket_type = stream", "wait = no",
                    "port = 9")
            + block("services", "id = services-dgram", "type = INTERNAL UNLISTED",
                    "socket_type = dgram", "wait = yes", "port = 9097"))
    config = load_text(tmp_path, text)
    assert [s.id for s in config.services] == ["daytime-dgram", "tcpmux", "servers"]
    reasons = dropped_reasons(config)
    assert reasons[0] == ("No such internal service: tcpmux/dgram - DISABLING "
                          "(tcpmux is served on stream only)")
    assert reasons[1].startswith("No such internal service: bogus/stream - DISABLING "
                                 "(builtins: chargen, daytime, ")
    # A forged datagram would get the whole list sent to its forged source.
    assert reasons[2] == ("No such internal service: services/dgram - DISABLING "
                          "(services is served on stream only)")


def test_tcpmux_clients(tmp_path: Path) -> None:
    ok = block("helper", "type = TCPMUX UNLISTED", "socket_type = stream", "wait = no",
               "user = nobody", "server = /bin/cat")
    bad = block("helper2", "type = TCPMUXPLUS", "socket_type = stream", "wait = no",
                "user = nobody", "server = /bin/cat")
    config = load_text(tmp_path, ok + bad)
    assert [(s.name, s.port, s.is_tcpmux_client) for s in config.services] == [
        ("helper", None, True)]
    assert "must be UNLISTED" in dropped_reasons(config)[0]


def test_tcpmux_client_port_is_ignored_with_a_warning(tmp_path: Path) -> None:
    # xinetd keeps the value in its dump but listens on no such port either.
    config = load_text(tmp_path, block("helper", "type = TCPMUX UNLISTED", "port = 5900",
                                       "socket_type = stream", "wait = no", "user = nobody",
                                       "server = /bin/cat"))
    assert [(s.port, s.is_tcpmux_client) for s in config.services] == [(None, True)]
    assert any("service helper: port 5900 ignored: a TCPMUX service has no socket of its "
               "own" in w for w in warnings(config))


_TCPMUX_CLIENTS = (
    block("helper", "type = TCPMUX UNLISTED", "socket_type = stream", "wait = no",
          "user = nobody", "server = /bin/cat")
    + block("plus", "type = TCPMUXPLUS UNLISTED", "socket_type = stream", "wait = no",
            "user = nobody", "server = /bin/cat"))


def _tcpmux(*lines: str) -> str:
    return block("tcpmux", "type = INTERNAL", "socket_type = stream", "wait = no", *lines)


@pytest.mark.parametrize("dispatcher", ["", _tcpmux("disable = yes")], ids=["absent", "disabled"])
def test_tcpmux_clients_without_the_tcpmux_service_are_warned(
        tmp_path: Path, dispatcher: str) -> None:
    # They load (as in xinetd, which says nothing) but only tcpmux reaches them.
    config = load_text(tmp_path, dispatcher + _TCPMUX_CLIENTS)
    assert [s.name for s in config.services] == ["helper", "plus"]
    lines = dispatcher.count("\n")
    assert [w.partition(" (add")[0] for w in warnings(config)] == [
        f"{tmp_path}/xinetd.conf:{lines + 1}: warning: service helper: type TCPMUX, but no "
        "tcpmux service is enabled, so no client can reach it",
        f"{tmp_path}/xinetd.conf:{lines + 9}: warning: service plus: type TCPMUXPLUS, but "
        "no tcpmux service is enabled, so no client can reach it"]


def test_tcpmux_clients_with_the_tcpmux_service_are_not_warned(tmp_path: Path) -> None:
    config = load_text(tmp_path, _TCPMUX_CLIENTS + _tcpmux())
    assert len(config.services) == 3 and not warnings(config)


def test_rpc_services(tmp_path: Path) -> None:
    text = (block("rstatd", "type = RPC", "socket_type = dgram", "wait = yes",
                  "user = nobody", "server = /bin/cat", "rpc_version = 2-4")
            + block("mine", "type = RPC UNLISTED", "socket_type = stream", "wait = no",
                    "user = nobody", "server = /bin/cat", "rpc_version = 1",
                    "rpc_number = 300000")
            + block("fixed", "type = RPC UNLISTED", "socket_type = stream", "wait = no",
                    "user = nobody", "server = /bin/cat", "rpc_version = 1",
                    "rpc_number = 300002", "port = 4711")
            + block("nosuchrpc", "type = RPC", "socket_type = stream", "wait = no",
                    "user = nobody", "server = /bin/cat", "rpc_version = 1")
            + block("noversion", "type = RPC UNLISTED", "socket_type = stream", "wait = no",
                    "user = nobody", "server = /bin/cat", "rpc_number = 300001"))
    config = load_text(tmp_path, text)
    assert [(s.name, s.rpc_number, s.rpc_version, s.port) for s in config.services] == [
        ("rstatd", 100001, (2, 4), None), ("mine", 300000, (1, 1), None),
        ("fixed", 300002, (1, 1), 4711)]
    reasons = dropped_reasons(config)
    assert "unknown RPC service: nosuchrpc" in reasons[0]
    assert "missing attribute rpc_version" in reasons[1]


def test_a_range_ending_at_the_highest_version_registers_its_versions_once(
        tmp_path: Path) -> None:
    # xinetd's registration loop never ends there (its counter wraps to 0), so it never
    # starts serving; the manual's range is its versions (docs/compatibility.md).
    text = block("top", "type = RPC UNLISTED", "socket_type = stream", "wait = no",
                 "user = nobody", "server = /bin/cat", "rpc_number = 300000",
                 "rpc_version = 4294967294-4294967295")
    config = load_text(tmp_path, text)
    (svc,) = config.services
    assert list(versions(svc)) == [4294967294, 4294967295] and not warnings(config)

def test_redirect_source_only_with_redirect(tmp_path: Path) -> None:
    relay = service_block("relay", "redirect = 127.0.0.1 8080",
                          "redirect_source = 2001:DB8::9").replace("\tserver = /bin/cat\n", "")
    plain = service_block("plain", "redirect_source = 127.0.0.9", port=20003)
    config = load_text(tmp_path, relay + plain)
    by_name = {s.name: s for s in config.services}
    assert by_name["relay"].redirect_source == "2001:db8::9"   # normalised
    assert by_name["plain"].redirect_source is None
    said = [w for w in warnings(config) if "redirect_source has no effect" in w]
    assert len(said) == 1 and "service plain" in said[0]


def test_redirect_rules(tmp_path: Path) -> None:
    s = only(tmp_path, service_block("redir", "redirect = 127.0.0.1 8080").replace(
        "\tserver = /bin/cat\n", ""))
    assert (s.redirect, s.server, s.server_argv, s.environment) == (
        ("127.0.0.1", 8080), None, (), None)
    config = load_text(tmp_path, service_block("r", "redirect = ::1 smtp", "wait = yes"))
    assert "redirect needs socket_type = stream and wait = no" in dropped_reasons(config)[0]
    config = load_text(tmp_path, service_block("r", "redirect = ::1 25").replace(
        "\tuser = nobody\n", ""))
    assert "missing attribute user" in dropped_reasons(config)[0]


def test_nameinargs(tmp_path: Path) -> None:
    s = only(tmp_path, service_block("svc", "flags = NAMEINARGS", "server_args = custom 2"))
    assert s.server_argv == ("custom", "2")
    config = load_text(tmp_path, service_block("svc", "flags = NAMEINARGS"))
    assert dropped_reasons(config)[0].startswith(
        "Must specify server args if using NAMEINARGS flag (service svc: ")
    config = load_text(tmp_path, block("echo", "type = INTERNAL", "socket_type = stream",
                                       "wait = no", "flags = NAMEINARGS", "server_args = x"))
    assert dropped_reasons(config)[0].startswith(
        "Service echo is INTERNAL and has NAMEINARGS flag set (")


def test_port_113_clears_userid(tmp_path: Path) -> None:
    s = only(tmp_path, service_block("auth2", "port = 113", "log_on_success = PID USERID",
                                     "log_on_failure = HOST USERID"))
    assert s.log_on_success == frozenset({"PID"})
    assert s.log_on_failure == frozenset({"HOST"})
    said = messages(config=_c(tmp_path, service_block(
        "auth2", "port = 113", "log_on_success = USERID", "log_on_failure = USERID")))
    cleared = [m for m in said if "clearing USERID" in m]
    assert [m.rsplit(": ", 1)[-1] for m in cleared] == [
        "clearing USERID option from log_on_success", "clearing USERID option from log_on_failure"]


def _c(tmp_path: Path, text: str) -> Any:
    return load_text(tmp_path, text)


def test_traffic_from_defaults_is_dropped_not_fatal(tmp_path: Path) -> None:
    text = "defaults\n{\n\tlog_on_success = TRAFFIC PID\n}\n" + service_block("svc")
    config = load_text(tmp_path, text)
    assert config.services[0].log_on_success == frozenset({"PID"})
    assert any("TRAFFIC from the defaults" in w for w in warnings(config))
    config = load_text(tmp_path, service_block("svc", "log_on_success = TRAFFIC"))
    assert "should not have TRAFFIC flag" in dropped_reasons(config)[0]


def test_dgram_nowait_external_is_accepted(tmp_path: Path) -> None:
    # xinetd 2.3.15.3 accepts it too (and then spins); pyxinetd serves it (dispatch.py).
    s = only(tmp_path, service_block("svc", "socket_type = dgram", "protocol = udp"))
    assert s.socket_type.value == "dgram" and s.wait is False


def test_intercept_cleared_on_nowait(tmp_path: Path) -> None:
    s = only(tmp_path, service_block("svc", "flags = INTERCEPT"))
    assert "INTERCEPT" not in s.flags


def test_intercept_cleared_on_nowait_is_logged_once_the_service_proved_unique(
        tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("svc", "flags = INTERCEPT"))
    assert len(errors(config)) == 1
    assert "Multi-threaded services cannot be intercepted: svc" in errors(config)[0]


def test_a_duplicate_of_a_bound_service_gets_no_intercept_line(tmp_path: Path) -> None:
    # xinetd 2.3.15.3 tests uniqueness before INTERCEPT (confparse.c check_entry): the
    # duplicate's only line is the duplicate's.
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("b", "flags = INTERCEPT", port=20001)
            + service_block("c", "flags = INTERCEPT", "type = UNLISTED INTERNAL",
                            port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    assert not any("intercepted" in m for m in messages(config))
    assert len([m for m in messages(config) if "identical to service: a" in m]) == 2


def test_a_rejected_service_logs_its_intercept_line_before_its_reason(tmp_path: Path) -> None:
    # Beside an unbound service there is no duplicate test: INTERCEPT, then the check.
    text = (service_block("a", port=20001)
            + service_block("b", "flags = INTERCEPT", "type = UNLISTED INTERNAL",
                            port=20001))
    config = load_text(tmp_path, text)
    about_b = [m for m in errors(config) if " b" in m]
    assert len(about_b) == 3, about_b
    assert "Internal services cannot be intercepted: b" in about_b[0]
    assert "Multi-threaded services cannot be intercepted: b" in about_b[1]
    assert "No such internal service: b/stream" in about_b[2]


def test_intercept_on_wait_service_kept_without_a_warning(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("svc", "flags = INTERCEPT", "wait = yes"))
    assert "INTERCEPT" in config.services[0].flags
    assert not any("INTERCEPT" in w for w in warnings(config))


def test_peerenv_is_a_flag_and_warns_where_nothing_is_execd(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("svc", "flags = PEERENV"))
    assert "PEERENV" in config.services[0].flags
    assert not any("PEERENV" in w for w in warnings(config))
    config = load_text(tmp_path, block("echo", "type = INTERNAL", "socket_type = stream",
                                       "wait = no", "flags = PEERENV"))
    assert "PEERENV" in config.services[0].flags  # harmless: kept, and said so
    assert any("PEERENV has no effect" in w for w in warnings(config))


def test_stderr_from_the_defaults_and_a_warning_where_nothing_is_execd(
        tmp_path: Path) -> None:
    text = ("defaults\n{\n\tstderr = /var/log/all.err\n}\n" + service_block("svc")
            + block("echo", "type = INTERNAL", "socket_type = stream", "wait = no")
            + block("daytime", "type = INTERNAL", "socket_type = stream", "wait = no",
                    "stderr = /var/log/daytime.err"))
    config = load_text(tmp_path, text)
    by_name = {s.name: s for s in config.services}
    assert by_name["svc"].stderr == "/var/log/all.err"
    # Internal services start no server: no stderr, and a word only where it was asked for.
    assert by_name["echo"].stderr is None and by_name["daytime"].stderr is None
    said = [w for w in warnings(config) if "stderr has no effect" in w]
    assert len(said) == 1 and "service daytime" in said[0]


def test_sensor_needs_server_not_user(tmp_path: Path) -> None:
    s = only(tmp_path, block("ftp", "socket_type = stream", "wait = no", "flags = SENSOR",
                             "server = /bin/cat", "deny_time = 10"))
    assert s.is_sensor and s.deny_time == 10 and s.environment is None
    config = load_text(tmp_path, block("ftp", "socket_type = stream", "wait = no",
                                       "flags = SENSOR"))
    assert dropped_reasons(config)[0].startswith("Must specify a server in ftp (")


def test_family_and_v6only(tmp_path: Path) -> None:
    assert only(tmp_path, service_block("s")).family == socket.AF_INET6
    assert only(tmp_path, service_block("s", "flags = IPv4")).family == socket.AF_INET
    assert only(tmp_path, service_block("s", "flags = IPv4 IPv6")).family == socket.AF_INET6
    s = only(tmp_path, service_block("s", "flags = IPv6", "bind = 127.0.0.1"))
    assert (s.family, s.bind) == (socket.AF_INET, "127.0.0.1")
    assert only(tmp_path, service_block("s", "v6only = yes")).v6only is True
    config = load_text(tmp_path, service_block("s", "v6only = no"))
    assert config.services[0].v6only is False
    assert any("keeps the socket dual-stack" in w for w in warnings(config))
    # An IPv4 or a raw socket has no IPV6_V6ONLY: nothing to warn of.
    for where in ("flags = IPv4", "bind = 127.0.0.1", "socket_type = raw"):
        config = load_text(tmp_path, service_block("s", where, "v6only = no"))
        assert not any("v6only" in w for w in warnings(config)), where
    s = only(tmp_path, "defaults\n{\n\tv6only = yes\n\tbind = ::1\n}\n" + service_block("s"))
    assert (s.v6only, s.bind, s.family) == (True, "::1", socket.AF_INET6)


def test_environment(tmp_path: Path) -> None:
    env = {"PATH": "/bin", "HOME": "/root", "TERM": "x"}
    s = load_text(tmp_path, service_block("s"), environ=env).services[0]
    assert s.environment == ("PATH=/bin", "HOME=/root", "TERM=x")
    s = load_text(tmp_path, service_block("s", "env = TERM=y NEW=1"), environ=env).services[0]
    assert s.environment == ("PATH=/bin", "HOME=/root", "TERM=y", "NEW=1")
    config = load_text(tmp_path, service_block("s", "passenv = PATH NOPE", "env = PATH=/x"),
                       environ=env)
    assert config.services[0].environment == ("PATH=/x",)
    assert config.services[0].passenv == ("PATH",)   # as xinetd's dump lists it
    assert any("undefined environment variable: NOPE (service " in w for w in warnings(config))
    (where,) = [d for d in config.diagnostics if "NOPE" in d.message]
    assert where.line == 10   # the passenv line, as xinetd says, not the service's header
    config = load_text(tmp_path, service_block("early") + "defaults\n{\n\tpassenv = HOME\n}\n",
                       environ=env)
    assert config.services[0].environment == ("HOME=/root",)
    s = load_text(tmp_path, "defaults\n{\n\tpassenv =\n}\n" + service_block("s"),
                  environ=env).services[0]
    assert s.environment == ()


def test_log_type_file_in_defaults_is_common(tmp_path: Path) -> None:
    s = only(tmp_path, "defaults\n{\n\tlog_type = FILE /tmp/x.log\n}\n" + service_block("s"))
    assert s.log_type is not None and getattr(s.log_type, "common") is True


def test_enabled_and_disabled_lists(tmp_path: Path) -> None:
    text = ("defaults\n{\n\tenabled = A b\n\tdisabled = B\n}\n" + service_block("a", port=1)
            + service_block("b", port=2) + service_block("c", port=3))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    assert dropped_reasons(config) == ["id b is in the defaults' disabled list",
                                       "id c is not in the defaults' enabled list"]


def test_duplicates(tmp_path: Path) -> None:
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("b", port=20001)
            + service_block("c", port=20002) + service_block("d", port=20002)
            + service_block("e", "flags = IPv4", port=20003)
            + service_block("f", "v6only = yes", port=20003)
            + service_block("g", "protocol = udp", "socket_type = dgram", "wait = yes",
                            port=20002))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "c", "e", "f", "g"]
    reasons = dropped_reasons(config)
    words = "service: b id: b is unique but its identical to service: a id: a - DISABLING ("
    assert reasons[0].startswith(words)
    assert any(words in e for e in errors(config))
    assert any("its identical to service: c id: c - DISABLING" in w and "would keep both" in w
               for w in warnings(config))


def test_an_ipv6_address_and_an_ipv4_socket_share_a_port(tmp_path: Path) -> None:
    # A dual-stack socket bound to one IPv6 address takes no IPv4 traffic, so it can
    # share a port with an IPv4 socket in either order; `::` and a mapped address cannot.
    text = (service_block("a", "flags = IPv4", port=20001)
            + service_block("b", "bind = 2001:db8::1", port=20001)
            + service_block("c", "bind = ::1", port=20002)
            + service_block("d", "flags = IPv4", port=20002)
            + service_block("e", "bind = fe80::1%lo", port=20002)
            + service_block("f", "flags = IPv4", port=20003)
            + service_block("g", "bind = ::", port=20003)
            + service_block("h", "bind = ::ffff:127.0.0.1", port=20003))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "b", "c", "d", "e", "f"]
    reasons = dropped_reasons(config)
    assert len(reasons) == 2, reasons
    assert "service: g id: g is unique but its identical to service: f" in reasons[0]
    assert "service: h id: h is unique but its identical to service: f" in reasons[1]


def test_a_pair_xinetd_would_split_is_kept_with_a_warning(tmp_path: Path) -> None:
    # xinetd drops any later service without `bind` on the port of a bound one, whatever
    # the families; pyxinetd keeps one whose socket coexists, and says what xinetd does.
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("b", "v6only = yes", port=20001)
            + service_block("c", "bind = ::1", port=20002)
            + service_block("d", "flags = IPv4", port=20002)
            + service_block("e", "bind = 127.0.0.1", port=20003)
            + service_block("f", "bind = ::1", port=20003))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "b", "c", "d", "e", "f"]
    kept = [w for w in warnings(config) if "is kept beside" in w]
    assert len(kept) == 2, kept
    assert "warning: service: b id: b is kept beside service: a id: a (" in kept[0]
    assert "warning: service: d id: d is kept beside service: c id: c (" in kept[1]
    assert all("(xinetd 2.3.15.3 would disable it: is unique but its identical to service: "
               in w for w in kept)


def test_a_kept_pair_of_one_id_is_warned_of_in_xinetds_words_for_a_duplicate(
        tmp_path: Path) -> None:
    # Same id: xinetd says `not unique or is a duplicate`, not `is unique but its
    # identical to` (seen with xinetd 2.3.15.3 on this pair).
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("a", "flags = IPv6\n\tv6only = yes", port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "a"]
    kept = [w for w in warnings(config) if "is kept beside" in w]
    assert len(kept) == 1, kept
    assert kept[0].endswith("(xinetd 2.3.15.3 would disable it:"
                            " not unique or is a duplicate - DISABLING)"), kept[0]


def test_a_udp_duplicate_names_what_xinetd_would_do(tmp_path: Path) -> None:
    # Datagram sockets with SO_REUSEADDR bind the same port side by side: xinetd keeps
    # both services and both bind, so the warning must not promise a bind failure.
    udp = ("protocol = udp", "socket_type = dgram", "wait = yes")
    text = (service_block("a", "flags = IPv4", *udp, port=20001)
            + service_block("b", *udp, port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    [warning] = [w for w in warnings(config) if "its identical to service: a" in w]
    assert "(xinetd 2.3.15.3 would keep both, the two sockets sharing the port)" in warning
    assert "fail to bind" not in warning


def _lacking(name: str, port: int, *lines: str) -> str:
    """An UNLISTED stream service on `port` with neither `wait` nor `user`."""
    inner = "".join(f"\t{line}\n" for line in ("type = UNLISTED", "socket_type = stream",
                                                f"port = {port}", "server = /bin/cat", *lines))
    return f"service {name}\n{{\n{inner}}}\n"


def test_duplicate_of_a_bound_service_comes_before_missing_attributes(tmp_path: Path) -> None:
    # xinetd tests uniqueness first: only the duplicate line (no INFO, no missing lines).
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + _lacking("b", 20001, "flags = IPv4 IPv6")
            + service_block("c", port=20002) + _lacking("d", 20002))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "c"]
    about_b = [m for m in messages(config) if " b " in m or "service: b " in m]
    assert len(about_b) == 1
    assert "service: b id: b is unique but its identical to service: a id: a" in about_b[0]
    # Beside an unbound service xinetd has no duplicate test: the missing attributes.
    assert any("Service d missing attribute wait - DISABLING" in e for e in errors(config))
    assert not any("service: d id: d" in m for m in messages(config))


_LISTED = ("socket_type = stream", "protocol = tcp", "wait = no", "user = nobody",
           "server = /bin/cat", "port = 20001")


@pytest.mark.parametrize("name, lines, base", [
    # Each would fail one of xinetd's checks; xinetd 2.3.15.3 tests uniqueness first and
    # logs only the duplicate line.
    ("nolisted", _LISTED, False),                             # not in /etc/services
    ("echo", _LISTED, False),                                 # expects port 7
    ("red", ("wait = yes", "redirect = 127.0.0.1 7"), True),  # a redirect must not wait
    ("traf", ("log_on_success = TRAFFIC",), True),            # TRAFFIC, not redirected
    ("lab", ("wait = yes", "flags = LABELED"), True),         # LABELED wait
    ("nosuch", ("type = UNLISTED INTERNAL",), True),          # no such builtin
    ("echo", ("type = UNLISTED INTERNAL", "flags = NAMEINARGS"), True),
])
def test_duplicate_of_a_bound_service_comes_before_xinetds_checks(
        tmp_path: Path, name: str, lines: tuple[str, ...], base: bool) -> None:
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block(name, *lines, port=20001, base=base))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    about = [m for m in messages(config) if "bind" not in m and name in m]
    assert len(about) == 1, about
    assert f"service: {name} id: {name} is unique but its identical to service: a id: a" \
        in about[0]


def test_same_id_on_different_ports_is_kept_with_warning(tmp_path: Path) -> None:
    text = (service_block("echo2", "id = same", port=20001)
            + service_block("echo3", "id = same", port=20002))
    config = load_text(tmp_path, text)
    assert len(config.services) == 2
    assert any("id same is also used" in w for w in warnings(config))


def test_every_diagnostic_names_file_and_line(tmp_path: Path) -> None:
    text = (service_block("a", "bogus = 1", "nice = x") + "junk line\n"
            + service_block("b", "socket_type= stream") + "}\n")
    config = load_text(tmp_path, text)
    for diagnostic in config.diagnostics:
        if diagnostic.severity.value in ("warning", "error"):
            assert diagnostic.file and diagnostic.line, diagnostic
    assert all(d.file and d.line for d in config.dropped)


# -- data-driven fixtures -------------------------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data" / "conf"


def _summary(config: Any) -> dict[str, Any]:
    return {
        "services": [{"id": s.id, "port": s.port, "protocol": s.protocol,
                      "socket_type": s.socket_type.value, "wait": s.wait,
                      "argv": list(s.server_argv)} for s in config.services],
        "dropped": [d.name for d in config.dropped],
    }


@pytest.mark.parametrize("conf", sorted((DATA / "valid").glob("*.conf")), ids=lambda p: p.name)
def test_valid_fixture(conf: Path) -> None:
    from pyxinetd.config import load
    config = load(str(conf), environ={"PATH": "/bin"})
    expected = json.loads(conf.with_suffix(".json").read_text())
    assert _summary(config) == expected


@pytest.mark.parametrize("conf", sorted((DATA / "invalid").glob("*.conf")), ids=lambda p: p.name)
def test_invalid_fixture(conf: Path) -> None:
    from pyxinetd.config import load
    config = load(str(conf), environ={"PATH": "/bin"})
    rendered = [str(d).replace(str(conf), conf.name) for d in config.diagnostics]
    for wanted in conf.with_suffix(".err").read_text().splitlines():
        assert any(wanted in line for line in rendered), (wanted, rendered)


def test_lines_before_a_syntax_error_get_their_messages(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("broken", "bogus = 1", "server= /bin/cat")
                       + service_block("after", port=20002))
    assert [s.name for s in config.services] == ["after"]
    assert any(w.endswith("bad service attribute: bogus (service broken: not a known "
                          "attribute; line ignored)") for w in warnings(config))
    assert any("Attribute server needs a space before operator" in e for e in errors(config))


def test_checks_run_in_xinetds_order_and_name_every_missing_attribute(
        tmp_path: Path) -> None:
    # A missing server comes first; with one, the INFO line of `IPv4 IPv6` comes before
    # the missing attributes, each on its own line (wait, socket_type, protocol, user).
    config = load_text(tmp_path, block("noserver", "type = UNLISTED", "flags = IPv4 IPv6")
                       + block("svc", "type = UNLISTED", "port = 20001", "flags = IPv4 IPv6",
                               "server = /bin/cat"))
    assert [m.split(": ", 1)[1] for m in messages(config)] == [
        "error: Must specify a server in noserver - service disabled",
        "info: Service svc will use IPv6 or fallback to IPv4",
        "error: Service svc missing attribute wait - DISABLING",
        "error: Service svc missing attribute socket_type - DISABLING",
        "error: Service svc missing attribute protocol - DISABLING",
        "error: Service svc missing attribute user - DISABLING",
    ]


def _load_with_protocols(tmp_path: Path, protocols: str | None, text: str) -> Any:
    from pyxinetd.config.loader import load_configuration
    from pyxinetd.config.lookups import Lookups
    table = tmp_path / "protocols"
    if protocols is not None:
        table.write_text(protocols)
    conf = tmp_path / "xinetd.conf"
    conf.write_text(text)
    return load_configuration(str(conf), environ={"PATH": "/bin"},
                              lookups=Lookups(protocols=str(table)))


def test_without_etc_protocols_the_socket_type_still_implies_tcp_and_udp(
        tmp_path: Path) -> None:
    # A minimal image ships no /etc/protocols: xinetd then disables every service
    # (`missing attribute protocol`); its manual promises the default protocol.
    config = _load_with_protocols(tmp_path, None, "".join(
        block(name, "type = UNLISTED", f"port = {port}", f"socket_type = {kind}",
              "wait = no", "user = root", "server = /bin/cat")
        for name, port, kind in (("s", 3737, "stream"), ("d", 3738, "dgram"))))
    assert [(s.id, s.protocol, s.protocol_number) for s in config.services] == [
        ("s", "tcp", 6), ("d", "udp", 17)]


def test_without_etc_protocols_tcp_and_udp_are_still_known_by_name(
        tmp_path: Path) -> None:
    config = _load_with_protocols(tmp_path, None, block(
        "s", "type = UNLISTED", "port = 3737", "protocol = udp", "wait = yes",
        "user = root", "server = /bin/cat"))
    assert [(s.protocol, s.protocol_number, s.socket_type) for s in config.services] == [
        ("udp", 17, SocketType.DGRAM)]


def test_a_trimmed_etc_protocols_still_implies_the_missing_default(tmp_path: Path) -> None:
    # Only tcp listed: a dgram service without `protocol` still gets udp; naming udp
    # is rejected, as the file does not list it.
    text = (block("d", "type = UNLISTED", "port = 3737", "socket_type = dgram",
                  "wait = yes", "user = root", "server = /bin/cat")
            + block("n", "type = UNLISTED", "port = 3738", "protocol = udp",
                    "wait = yes", "user = root", "server = /bin/cat"))
    config = _load_with_protocols(tmp_path, "tcp\t6\tTCP\n", text)
    assert [(s.id, s.protocol, s.protocol_number) for s in config.services] == [
        ("d", "udp", 17)]
    assert any("Protocol udp not in /etc/protocols" in m for m in errors(config))


def test_an_implied_protocol_keeps_its_name_where_etc_protocols_lists_it_as_an_alias(
        tmp_path: Path) -> None:
    # `TCP 6 tcp`: the implied protocol is still `tcp`, and a listed service finds its
    # port as telnet/tcp, as xinetd does (it serves it); taking the file's official name
    # looked up telnet/TCP and disabled the service.
    config = _load_with_protocols(tmp_path, "TCP\t6\ttcp\nUDP\t17\tudp\n", block(
        "telnet", "socket_type = stream", "wait = no", "user = root",
        "server = /bin/cat"))
    assert [(s.id, s.protocol, s.protocol_number, s.port) for s in config.services] == [
        ("telnet", "tcp", 6, 23)]


def test_an_unreadable_etc_protocols_is_a_missing_one(tmp_path: Path) -> None:
    # A folder where the file should be: read fails, tcp and udp are still known.
    (tmp_path / "protocols").mkdir()
    config = _load_with_protocols(tmp_path, None, block(
        "s", "type = UNLISTED", "port = 3737", "protocol = tcp", "wait = no",
        "user = root", "server = /bin/cat") + block(
        "d", "type = UNLISTED", "port = 3738", "socket_type = dgram", "wait = yes",
        "user = root", "server = /bin/cat"))
    assert [(s.id, s.protocol, s.protocol_number) for s in config.services] == [
        ("s", "tcp", 6), ("d", "udp", 17)]


def test_banners_of_a_stream_wait_server_are_ignored_with_a_warning(tmp_path: Path) -> None:
    # The server accepts the connection itself: the daemon has none to write them on.
    config = load_text(tmp_path, block(
        "waiter", "type = UNLISTED", "port = 5901", "socket_type = stream", "wait = yes",
        "user = nobody", "server = /bin/cat", "banner = /etc/issue",
        "banner_fail = /etc/issue"))
    assert [s.banner for s in config.services] == ["/etc/issue"]
    assert any("service waiter: banner, banner_fail ignored: a stream wait = yes server "
               "accepts its connections itself" in w for w in warnings(config))


@pytest.mark.parametrize("lines", [
    ("socket_type = stream", "wait = no", "server = /bin/cat"),
    ("socket_type = dgram", "wait = yes", "server = /bin/cat"),
    ("socket_type = stream", "wait = yes", "type = INTERNAL UNLISTED"),
])
def test_banners_where_they_reach_the_client_are_not_warned_of(
        tmp_path: Path, lines: tuple[str, ...]) -> None:
    text = block("echo", *lines, "port = 5902", "user = nobody", "banner = /etc/issue")
    if "type = INTERNAL UNLISTED" not in lines:
        text = text.replace("\tport", "\ttype = UNLISTED\n\tport", 1)
    config = load_text(tmp_path, text)
    assert len(config.services) == 1, errors(config)
    assert not any("banner" in w for w in warnings(config))


def test_banners_from_the_defaults_are_warned_of_too(tmp_path: Path) -> None:
    config = load_text(tmp_path, "defaults\n{\n\tbanner_success = /etc/issue\n}\n" + block(
        "waiter", "type = UNLISTED", "port = 5903", "socket_type = stream", "wait = yes",
        "user = nobody", "server = /bin/cat"))
    assert any("service waiter: banner_success ignored: a stream wait = yes server"
               in w for w in warnings(config))


def load_on_host(tmp_path: Path, text: str, *, selinux: bool) -> Any:
    """Load `text` as on a host with SELinux enabled or not (its selinuxfs)."""
    selinuxfs = tmp_path / "selinuxfs"
    selinuxfs.mkdir(exist_ok=True)
    if selinux:
        (selinuxfs / "enforce").write_text("1")
    path = tmp_path / "labeled.conf"
    path.write_text(text)
    return load_configuration(str(path), environ=ENV,
                              lookups=Lookups(selinuxfs=str(selinuxfs)))


def test_a_labeled_service_is_served_with_a_warning_where_selinux_is_off(
        tmp_path: Path) -> None:
    # No context to give the server: xinetd 2.3.15.3 refuses every client there.
    config = load_on_host(tmp_path, service_block("lab", "flags = LABELED"), selinux=False)
    assert [s.id for s in config.services] == ["lab"]
    assert any("service lab: flags = LABELED ignored: SELinux is not enabled" in w
               for w in warnings(config)), warnings(config)


def test_a_labeled_service_is_refused_where_selinux_runs(tmp_path: Path) -> None:
    # Its servers would run in the daemon's context, not in their client's.
    config = load_on_host(tmp_path, service_block("lab", "flags = LABELED"), selinux=True)
    assert not config.services
    assert dropped_reasons(config) == [
        "Changing process context failed for lab - DISABLING (flags = LABELED: pyxinetd "
        "cannot run a server in its client's SELinux context)"]
    # The checks that come first are xinetd's, whatever the host.
    config = load_on_host(tmp_path, service_block("lab", "flags = LABELED", "wait = yes"),
                          selinux=True)
    assert dropped_reasons(config) == [
        "Tcp wait services cannot support labeled networking: lab (LABELED is only for "
        "external stream wait = no services)"]


def test_a_tcpmux_service_on_a_bound_services_port_is_a_duplicate_before_its_type_check(
        tmp_path: Path) -> None:
    # xinetd 2.3.15.3's uniqueness test compares a TCPMUX service's port line too, before
    # its TCPMUX check: the service without UNLISTED gets only the duplicate line.
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("mux", "type = TCPMUX", port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    about = [m for m in messages(config) if "mux" in m]
    assert len(about) == 1, about
    assert "service: mux id: mux is unique but its identical to service: a id: a" in about[0]


def test_a_tcpmux_service_off_a_bound_services_port_gets_its_type_check(
        tmp_path: Path) -> None:
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("mux", "type = TCPMUX", port=20002))
    config = load_text(tmp_path, text)
    assert dropped_reasons(config)[-1].startswith(
        "Service: mux (tcpmux) should have UNLISTED in type.")


def test_a_tcpmux_service_with_a_bound_services_port_line_is_kept_with_a_warning(
        tmp_path: Path) -> None:
    # It listens on no port, so nothing clashes; xinetd 2.3.15.3 disables it all the same.
    text = (service_block("a", "bind = 127.0.0.1", port=20001)
            + service_block("mux", "type = TCPMUX UNLISTED", port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "mux"]
    kept = [w for w in warnings(config) if "is kept beside service: a" in w]
    assert len(kept) == 1, warnings(config)
    assert "a TCPMUX service has no socket of its own" in kept[0]
    assert ("xinetd 2.3.15.3 would disable it: is unique but its identical to service: a "
            "id: a - DISABLING") in kept[0]


def test_a_service_after_a_bound_tcpmux_service_with_its_port_line_is_kept_with_a_warning(
        tmp_path: Path) -> None:
    # xinetd 2.3.15.3 compares the earlier TCPMUX service's port line too, and disables
    # the later one; neither has a socket that clashes.
    text = (service_block("mux", "type = TCPMUX UNLISTED", "bind = 127.0.0.1", port=20001)
            + service_block("a", port=20001)
            + service_block("mux2", "type = TCPMUX UNLISTED", port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["mux", "a", "mux2"]
    kept = [w for w in warnings(config) if "is kept beside service: mux id: mux" in w]
    assert len(kept) == 2, warnings(config)
    assert all("a TCPMUX service has no socket of its own" in w for w in kept)
    assert ("xinetd 2.3.15.3 would disable it: is unique but its identical to service: mux "
            "id: mux - DISABLING") in kept[0]


def test_a_rejected_service_after_a_bound_tcpmux_service_gets_only_the_duplicate_line(
        tmp_path: Path) -> None:
    text = (service_block("mux", "type = TCPMUX UNLISTED", "bind = 127.0.0.1", port=20001)
            + service_block("b", "flags = INTERCEPT", "type = UNLISTED INTERNAL",
                            port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["mux"]
    assert not any("intercepted" in m or "internal service" in m for m in messages(config))
    assert len([m for m in errors(config) if "service: b id: b is unique but its identical "
                "to service: mux id: mux" in m]) == 1


def _tcpmux_without_port(name: str, *lines: str) -> str:
    return block(name, "type = TCPMUX UNLISTED", "socket_type = stream", "protocol = tcp",
                 "wait = no", "server = /bin/cat", *lines)


def test_tcpmux_services_without_a_port_line_are_on_port_0_in_xinetds_test(
        tmp_path: Path) -> None:
    # Seen with xinetd 2.3.15.3: after a bound TCPMUX service without a port line, it
    # disables a TCPMUX service and an RPC service without one (port 0 both); neither
    # listens on a clashing socket, so pyxinetd keeps them, in xinetd's words.
    text = (_tcpmux_without_port("m1", "user = nobody", "bind = 127.0.0.1")
            + _tcpmux_without_port("m2", "user = nobody")
            + _rpc("r3", 300077, "1"))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["m1", "m2", "r3"]
    kept = [w for w in warnings(config) if "is kept beside service: m1 id: m1" in w]
    assert [w.split(": warning: ")[1].split(" is kept")[0] for w in kept] == [
        "service: m2 id: m2", "service: r3 id: r3"]
    assert all("a TCPMUX service has no socket of its own (xinetd 2.3.15.3 would disable "
               "it: is unique but its identical to service: m1 id: m1 - DISABLING)" in w
               for w in kept)


def test_a_rejected_tcpmux_service_without_a_port_line_gets_only_the_duplicate_line(
        tmp_path: Path) -> None:
    # No `user` (a missing attribute): xinetd names the duplicate first, and only that.
    text = (_tcpmux_without_port("m1", "user = nobody", "bind = 127.0.0.1")
            + _tcpmux_without_port("m2"))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["m1"]
    about = [m for m in messages(config) if "m2" in m and "tcpmux service" not in m]
    assert len(about) == 1, about
    assert ("service: m2 id: m2 is unique but its identical to service: m1 id: m1 "
            "- DISABLING") in about[0]
    assert about[0] in errors(config)


def test_a_service_that_cannot_bind_beside_an_unbound_one_logs_its_checks_first(
        tmp_path: Path) -> None:
    # xinetd's uniqueness test looks only at earlier services with a bind: it keeps v,
    # logs its INTERCEPT and fallback lines, and fails to bind it later. pyxinetd drops
    # v, after the same lines.
    text = (service_block("a", port=20001)
            + service_block("v", "flags = INTERCEPT IPv4 IPv6", port=20001))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    about = [m for m in messages(config) if "v (" in m or "Service v " in m or "id: v " in m]
    assert len(about) == 3, about
    assert "Multi-threaded services cannot be intercepted: v" in about[0]
    assert "Service v will use IPv6 or fallback to IPv4" in about[1]
    assert "xinetd 2.3.15.3 would keep both" in about[2]


def _rpc(name: str, program: int, versions: str, *lines: str, udp: bool = False) -> str:
    kind = ("socket_type = dgram", "wait = yes") if udp else ("socket_type = stream",
                                                             "wait = no")
    return block(name, "type = RPC UNLISTED", *kind,
                 "user = nobody", "server = /bin/cat", f"rpc_number = {program}",
                 f"rpc_version = {versions}", *lines)


def test_xinetds_uniqueness_test_compares_rpc_services_by_program_and_versions(
        tmp_path: Path) -> None:
    # As xinetd 2.3.15.3 does, after an earlier RPC service with a `bind`: a later one of
    # the same program with an overlapping range (no `bind`, or the same) is disabled in
    # its words; a disjoint range, another program or protocol is kept.
    text = (_rpc("a", 300001, "1-2", "bind = 127.0.0.1")
            + _rpc("b", 300001, "2-3", "bind = 127.0.0.1")
            + _rpc("c", 300001, "2")
            + _rpc("d", 300001, "3-4", "bind = 127.0.0.1")
            + _rpc("e", 300002, "1-2", "bind = 127.0.0.1")
            + _rpc("f", 300001, "1-2", "bind = 127.0.0.1", udp=True))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "d", "e", "f"]
    assert [e for e in errors(config) if "DISABLING" in e] == [
        e for e in errors(config) if "its identical to service: a id: a" in e]
    assert len([e for e in errors(config) if "its identical to service: a" in e]) == 2


def test_an_rpc_duplicate_xinetds_test_keeps_is_kept_with_the_versions_it_loses(
        tmp_path: Path) -> None:
    # Another bind address, or a `port` line of its own, passes xinetd's test: xinetd
    # keeps the service and its registration fails (`pmap_set failed`, then the
    # service is deactivated); pyxinetd keeps it too, and says which versions are lost.
    text = (_rpc("a", 300001, "1-2", "bind = 127.0.0.1")
            + _rpc("b", 300001, "1-2", "bind = 127.0.0.2")
            + _rpc("c", 300001, "2", "bind = 127.0.0.1", "port = 20302"))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "b", "c"]
    assert not [e for e in errors(config) if "DISABLING" in e]
    lost = [w for w in warnings(config) if "RPC program 300001" in w]
    assert len(lost) == 2, lost
    assert "service: b id: b: RPC program 300001 version 1-2 (tcp) is also in the range of " \
           "service: a id: a (" in lost[0]
    assert "service: c id: c: RPC program 300001 version 2 (tcp) is also in the range of " \
           "service: a id: a (" in lost[1]
    assert "service: b id: b (" in lost[1]
    assert all(w.endswith("it registers none and fails to start (as in xinetd 2.3.15.3)")
               for w in lost)


def test_an_rpc_service_and_another_on_its_port_line_are_duplicates(
        tmp_path: Path) -> None:
    # xinetd's test compares an RPC service's `port` line with other services' ports
    # (seen with xinetd 2.3.15.3, either order); pyxinetd binds the RPC service there.
    text = (_rpc("a", 300001, "1-2", "bind = 127.0.0.1", "port = 20301")
            + service_block("b", port=20301)
            + service_block("c", "bind = 127.0.0.1", port=20303)
            + _rpc("d", 300002, "1", "port = 20303"))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "c"]
    assert any("service: b id: b is unique but its identical to service: a id: a - "
               "DISABLING" in e for e in errors(config))
    assert any("service: d id: d is unique but its identical to service: c id: c - "
               "DISABLING" in e for e in errors(config))


def test_rpc_services_on_one_port_line_cannot_both_bind_it(tmp_path: Path) -> None:
    # xinetd binds both to ports of the kernel's choice and keeps them; pyxinetd binds
    # an RPC service to its `port`, so the second cannot listen and is dropped.
    text = (_rpc("a", 300001, "1", "bind = 127.0.0.1", "port = 20301")
            + _rpc("b", 300002, "1", "bind = 127.0.0.1", "port = 20301"))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a"]
    [warning] = [w for w in warnings(config) if "its identical to service: a" in w]
    assert warning.endswith("(xinetd 2.3.15.3 would keep both, binding an RPC service to a "
                            "port of the kernel's choice)")


def test_a_service_on_port_0_is_kept_beside_a_bound_rpc_service_with_xinetds_words(
        tmp_path: Path) -> None:
    # xinetd's test takes an RPC service without `port` as port 0, so it disables a later
    # service with `port = 0`; both sockets get a free port, so pyxinetd keeps it.
    text = (_rpc("a", 300001, "1", "bind = 127.0.0.1")
            + service_block("b", port=0))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "b"]
    [kept] = [w for w in warnings(config) if "is kept beside service: a" in w]
    assert "but port 0 is no port" in kept
    assert kept.endswith("(xinetd 2.3.15.3 would disable it: is unique but its identical "
                         "to service: a id: a - DISABLING)")


def test_two_services_on_port_0_are_kept_with_xinetds_words(tmp_path: Path) -> None:
    # Seen with xinetd 2.3.15.3: a bound `port = 0` service makes its test disable a later
    # one on `port = 0`; each socket gets its own port from the kernel, so both serve.
    text = (service_block("a", "bind = 127.0.0.1", port=0)
            + service_block("b", port=0))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "b"]
    [kept] = [w for w in warnings(config) if "is kept beside service: a" in w]
    assert "but port 0 is no port" in kept
    assert kept.endswith("(xinetd 2.3.15.3 would disable it: is unique but its identical "
                         "to service: a id: a - DISABLING)")


def test_an_rpc_service_reaching_beyond_an_earlier_range_is_kept_for_its_other_versions(
        tmp_path: Path) -> None:
    # Seen with xinetd 2.3.15.3 and rpcbind: b's pmap_set fails for version 2 only, and
    # it stays active at version 3; so does pyxinetd, and the warning says so.
    text = (_rpc("a", 300001, "1-2", "bind = 127.0.0.1")
            + _rpc("b", 300001, "2-4", "bind = 127.0.0.2")
            + _rpc("c", 300001, "1-5", "bind = 127.0.0.3")
            + _rpc("d", 300001, "2-3", "bind = 127.0.0.2", udp=True))
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["a", "b", "c", "d"]
    assert not [m for m in errors(config) if "DISABLING" in m]
    lost = [w for w in warnings(config) if "RPC program 300001" in w]
    assert len(lost) == 2, lost
    assert "service: b id: b: RPC program 300001 version 2 (tcp) is also in the range of " \
           "service: a id: a (" in lost[0]
    assert lost[0].endswith("it is served at version 3-4 only (as in xinetd 2.3.15.3)")
    assert "service: c id: c: RPC program 300001 version 1-4 (tcp)" in lost[1]
    assert lost[1].endswith("it is served at version 5 only (as in xinetd 2.3.15.3)")
