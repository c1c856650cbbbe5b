"""inetd.conf: each field form, -inetd_compat loading of the corpus, and `pyxinetd convert`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyxinetd.config import Configuration, ServiceConfig, Severity, load
from pyxinetd.config.diagnostics import DiagnosticSink
from pyxinetd.config.inetdconf import parse_inetd_text
from pyxinetd.config.inetdentry import InetdEntry, unwrap_tcpd
from pyxinetd.convert import convert
from tests.compat.corpus import SHARED_ABSENT, shared_present

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "inetd.conf"
CORPUS_FILES = sorted(p for p in CORPUS.glob("*") if p.name != "INDEX.tsv") if CORPUS.is_dir() else []
CAT = "/bin/cat"


def parse_one(line: str) -> tuple[InetdEntry | str | None, DiagnosticSink]:
    sink = DiagnosticSink()
    items = parse_inetd_text(line + "\n", "inetd.conf", sink)
    return items[0][1], sink


def entry(line: str) -> InetdEntry:
    item, _ = parse_one(line)
    assert isinstance(item, InetdEntry), item
    return item


def load_inetd(tmp_path: Path, text: str, xinetd: str = "") -> Configuration:
    main = tmp_path / "xinetd.conf"
    main.write_text(xinetd or "defaults\n{\n}\n")
    inetd = tmp_path / "inetd.conf"
    inetd.write_text(text)
    return load(str(main), inetd_compat=True, inetd_path=str(inetd))


def only(config: Configuration) -> ServiceConfig:
    assert len(config.services) == 1, [str(d) for d in config.diagnostics]
    return config.services[0]


def messages(config: Configuration, severity: Severity | None = None) -> list[str]:
    return [str(d) for d in config.diagnostics
            if d.severity is not Severity.DEBUG and (severity is None or d.severity is severity)]


# --------------------------------------------------------------------------- fields


def test_plain_external_entry_follows_xinetd(tmp_path: Path) -> None:
    svc = only(load_inetd(tmp_path, f"daytime\tstream\ttcp\tnowait\tnobody\t{CAT}\tcat -n\n"))
    assert (svc.id, svc.port, svc.server, svc.server_argv) == ("daytime", 13, CAT, ("cat", "-n"))
    assert svc.flags == {"REUSE", "NAMEINARGS", "NOLIBWRAP"}
    assert svc.groups is True and svc.user == 65534 and not svc.wait
    assert svc.family == socket.AF_INET6 and not svc.v6only


def test_added_service_is_logged_at_debug_with_its_line(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, f"# c\ndaytime stream tcp nowait nobody {CAT} cat\n")
    debug = [d for d in config.diagnostics if d.severity is Severity.DEBUG
             and d.message == "added service daytime"]
    assert debug and debug[0].line == 2 and debug[0].file == str(tmp_path / "inetd.conf")
    # xinetd writes it without -d too.
    assert debug[0].always


def test_argv0_field_is_argv0_and_missing_one_is_the_server_name(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, f"daytime stream tcp nowait nobody {CAT} other -x\n"
                                  f"time stream tcp nowait nobody {CAT}\n")
    argvs = {s.id: s.server_argv for s in config.services}
    assert argvs == {"daytime": ("other", "-x"), "time": ("cat",)}


@pytest.mark.parametrize("field", ["nobody.nogroup", "nobody:nogroup"])
def test_user_and_group_forms(tmp_path: Path, field: str) -> None:
    svc = only(load_inetd(tmp_path, f"daytime stream tcp wait {field} {CAT} cat\n"))
    assert (svc.user, svc.group) == (65534, 65534)


def test_login_class_is_ignored_with_a_warning() -> None:
    item, sink = parse_one(f"daytime stream tcp nowait nobody:nogroup/daemon {CAT} cat")
    assert isinstance(item, InetdEntry) and (item.user, item.group) == ("nobody", "nogroup")
    assert any("login class" in d.message for d in sink.items)


def test_unknown_user_disables_with_file_and_line(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, f"\ndaytime stream tcp nowait nosuchuser-x {CAT} cat\n")
    assert not config.services
    assert any(":2:" in m and "Unknown user: " in m for m in messages(config, Severity.ERROR))


@pytest.mark.parametrize(("name", "socket_type", "sid"), [
    ("echo", "stream", "echo-stream"), ("echo", "dgram", "echo-dgram"),
    ("discard", "stream", "discard-stream"), ("chargen", "dgram", "chargen-dgram"),
    ("tcpmux", "stream", "tcpmux"),
])
def test_internal_ids(tmp_path: Path, name: str, socket_type: str, sid: str) -> None:
    proto = "tcp" if socket_type == "stream" else "udp"
    wait = "nowait" if socket_type == "stream" else "wait"
    svc = only(load_inetd(tmp_path, f"{name} {socket_type} {proto} {wait} root internal\n"))
    assert svc.id == sid and svc.is_internal and svc.server is None and not svc.flags


@pytest.mark.parametrize("word", ["INTERNAL", "Internal"])
def test_internal_in_any_case(tmp_path: Path, word: str) -> None:
    # xinetd compares it with strcasecmp: a builtin, not a server named INTERNAL.
    svc = only(load_inetd(tmp_path, f"daytime stream tcp nowait root {word}\n"))
    assert svc.is_internal and svc.server is None


def test_an_indented_entry_with_an_upper_case_socket_type_stands_alone(
        tmp_path: Path) -> None:
    # The socket type is read in any case: the line is an entry of its own, not more
    # words of the entry above (xinetd serves both).
    config = load_inetd(tmp_path, f"finger stream tcp nowait nobody {CAT} cat\n"
                                  f"\tdaytime STREAM tcp nowait nobody {CAT} cat -u\n")
    assert sorted(s.name for s in config.services) == ["daytime", "finger"]
    finger = next(s for s in config.services if s.name == "finger")
    assert finger.server_argv == ("cat",)


def test_unknown_internal_service_is_reported(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "ssh stream tcp nowait root internal\n")
    assert not config.services
    assert any("No such internal service: " in m for m in messages(config, Severity.ERROR))


def test_tcp6_is_ipv6_only_and_tcp4_ipv4(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "daytime stream tcp6 nowait root internal\n"
                                  "time stream tcp4 nowait root internal\n")
    six, four = config.services
    assert six.family == socket.AF_INET6 and six.v6only
    assert four.family == socket.AF_INET and "IPv4" in four.flags


def test_tcp6_twin_of_a_tcp_line_is_served_by_the_dual_stack_socket(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "daytime stream tcp6 nowait root internal\n"
                                  "daytime stream tcp nowait root internal\n")
    svc = only(config)
    assert svc.origin.line == 2 and not svc.v6only
    assert not config.dropped
    assert any(":1: info:" in m and "dual-stack" in m for m in messages(config))


def test_tcp6_twin_names_the_tcp_line_that_is_served_when_that_line_repeats(
        tmp_path: Path) -> None:
    # The second tcp line is a duplicate, dropped: the twin is served by the first.
    config = load_inetd(tmp_path, "daytime stream tcp nowait root internal\n"
                                  "daytime stream tcp6 nowait root internal\n"
                                  "daytime stream tcp nowait root internal\n")
    assert only(config).origin.line == 1
    twin = [m for m in messages(config) if ":2: info:" in m]
    assert twin and "socket of line 1 " in twin[0], messages(config)


_FINGER_ON_IPV4 = ("defaults\n{\n}\nservice finger\n{\n\tsocket_type = stream\n"
                   "\twait = no\n\tuser = nobody\n\tserver = /bin/echo\n\tflags = IPv4\n}\n")


@pytest.mark.parametrize("lines", [(1, 2), (2, 1)])
def test_tcp6_twin_of_a_duplicate_tcp_line_listens_on_its_own(
        tmp_path: Path, lines: tuple[int, int]) -> None:
    # The xinetd file serves the port on IPv4: the tcp line is a duplicate and serves
    # nothing, so the tcp6 line, before or after it, is a service of its own.
    tcp, six = lines
    text = {tcp: "finger stream tcp nowait nobody /bin/echo echo\n",
            six: "finger stream tcp6 nowait nobody /bin/echo echo\n"}
    config = load_inetd(tmp_path, text[1] + text[2], _FINGER_ON_IPV4)
    four, served = config.services
    assert four.origin.file.endswith("xinetd.conf") and "IPv4" in four.flags
    assert served.origin.line == six and served.family == socket.AF_INET6 and served.v6only
    assert [d.line for d in config.dropped] == [tcp]
    assert not [m for m in messages(config) if "served by the dual-stack" in m]
    assert any(f":{six}: info: finger/tcp6 is a service of its own (IPv6 only): "
               f"line {tcp}" in m
               for m in messages(config)), messages(config)


def test_tcp6_twin_of_a_failing_tcp_line_is_checked_on_its_own(tmp_path: Path) -> None:
    # Line 1 serves nothing, so line 2 is not "served by" it: both fail, each reported.
    config = load_inetd(tmp_path, "finger stream tcp nowait nobody /nonexistent x\n"
                                  "finger stream tcp6 nowait nobody /nonexistent x\n")
    assert not config.services and [d.line for d in config.dropped] == [1, 2]
    assert [d.line for d in config.diagnostics if d.severity is Severity.ERROR] == [1, 2]
    assert not [m for m in messages(config) if "served by the dual-stack" in m]


def test_tcp6_twin_of_a_tcp_line_bound_to_ipv4_is_not_served_and_says_so(
        tmp_path: Path) -> None:
    # The defaults bind IPv4: line 1 listens on 127.0.0.1 only, so nothing serves the
    # tcp6 line on IPv6 (it would take line 1's port): a WARNING and a dropped entry,
    # never the INFO line that it is served by a dual-stack socket.
    config = load_inetd(tmp_path, "finger stream tcp nowait nobody /bin/echo echo\n"
                                  "finger stream tcp6 nowait nobody /bin/echo echo\n",
                        "defaults\n{\n\tbind = 127.0.0.1\n}\n")
    assert only(config).origin.line == 1
    assert [d.line for d in config.dropped] == [2]
    assert not [m for m in messages(config) if "dual-stack" in m]
    assert any(":2: warning: finger/tcp6 not served: line 1's tcp entry" in m
               and "listens on 127.0.0.1 only here" in m
               for m in messages(config)), messages(config)


def test_tcp6_twin_of_a_tcp_line_on_an_ipv6_address_is_served_by_its_ipv6_socket(
        tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "finger stream tcp nowait nobody /bin/echo echo\n"
                                  "finger stream tcp6 nowait nobody /bin/echo echo\n",
                        "defaults\n{\n\tbind = ::1\n}\n")
    assert only(config).origin.line == 1 and not config.dropped
    assert any(":2: info: finger/tcp6 is served by the IPv6 socket of line 1" in m
               for m in messages(config)), messages(config)


def test_a_twin_dropped_as_a_duplicate_is_never_said_to_be_a_service_of_its_own(
        tmp_path: Path) -> None:
    # Migrating: the converted blocks are in the xinetd file, inetd.conf still has the
    # lines. Both lines are duplicates of the converted block; no INFO line calls the
    # tcp6 one a service of its own before it is dropped.
    xinetd = ("defaults\n{\n}\nservice finger\n{\n\tsocket_type = stream\n"
              "\tprotocol = tcp\n\twait = no\n\tuser = nobody\n\tserver = /bin/echo\n}\n")
    config = load_inetd(tmp_path, "finger stream tcp nowait nobody /bin/echo echo\n"
                                  "finger stream tcp6 nowait nobody /bin/echo echo\n", xinetd)
    assert only(config).origin.file.endswith("xinetd.conf")
    assert [d.line for d in config.dropped] == [1, 2]
    assert not [m for m in messages(config) if "service of its own" in m], messages(config)


def test_an_unlisted_name_in_inetd_conf_is_not_told_to_add_type_unlisted(
        tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "31337 stream tcp nowait nobody /bin/echo echo\n")
    assert not config.services
    errors = messages(config, Severity.ERROR)
    assert any("31337/tcp is not in /etc/services: add it there, or convert the line" in m
               for m in errors), errors
    # The hint for an xinetd file stays.
    main = tmp_path / "own.conf"
    main.write_text("service 31337\n{\n\tsocket_type = stream\n\tprotocol = tcp\n"
                    "\twait = no\n\tuser = nobody\n\tserver = /bin/echo\n}\n")
    own = load(str(main))
    assert any("add type = UNLISTED and a port" in m for m in messages(own, Severity.ERROR))


def test_socket_options_are_warned_and_ignored(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "echo stream tcp,rcvbuf=1k,sndbuf=2k nowait root internal\n")
    assert only(config).protocol == "tcp"
    assert any("rcvbuf=1k" in m for m in messages(config, Severity.WARNING))


def test_rate_suffix_dot_n_becomes_cps(tmp_path: Path) -> None:
    svc = only(load_inetd(tmp_path, "echo stream tcp nowait.200 root internal\n"))
    assert svc.cps == (200, 600)


def test_freebsd_limits_become_instances_and_per_source(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "echo stream tcp nowait/3/10/2 root internal\n"
                                  "time stream tcp nowait/0/0/0 root internal\n")
    a, b = config.services
    assert (a.instances, a.per_source) == (3, 2)
    assert (b.instances, b.per_source, b.cps) == (None, None, (50, 10))
    assert any("per client" in m for m in messages(config, Severity.WARNING))


def test_limits_too_large_for_xinetd_attributes_are_ignored_not_fatal(
        tmp_path: Path) -> None:
    # xinetd ignores every suffix of the wait field and serves the entry; a limit
    # no attribute can hold is ignored with a warning instead of dropping the entry.
    config = load_inetd(tmp_path, "echo stream tcp nowait.99999999999999999999 root internal\n"
                                  "time stream tcp nowait/99999999999/0/99999999999 root "
                                  "internal\n"
                                  "discard stream tcp nowait/5/0/2147483647 root internal\n")
    echo, time_, discard = config.services
    assert echo.cps == (50, 10) and (time_.instances, time_.per_source) == (None, None)
    assert (discard.instances, discard.per_source) == (5, 2147483647)
    warnings = messages(config, Severity.WARNING)
    assert sum("is more than the largest limit" in m and "ignored: no limit" in m
               for m in warnings) == 3, warnings
    assert not config.dropped


def test_convert_leaves_out_a_limit_too_large_and_says_so() -> None:
    result = convert("time stream tcp nowait/99999999999/0/4 root internal\n", "inetd.conf")
    assert "instances" not in result.text and "per_source      = 4" in result.text
    assert any("99999999999 servers at once is more than the largest limit" in p
               for p in result.problems()), result.problems()


def test_rpc_entry(tmp_path: Path) -> None:
    svc = only(load_inetd(tmp_path, f"rstatd/1-3 dgram rpc/udp wait root {CAT} rpc.rstatd\n"))
    assert "RPC" in svc.types and svc.rpc_version == (1, 3) and svc.rpc_number == 100001
    assert svc.port is None and svc.protocol == "udp"


def test_rpc_without_version_is_skipped(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, f"rstatd dgram rpc/udp wait root {CAT} x\n")
    assert not config.services and config.dropped[0].line == 1


def test_host_prefix_and_default_host_line(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "127.0.0.1:daytime stream tcp nowait root internal\n"
                                  "[::1]:time stream tcp6 nowait root internal\n"
                                  "127.0.0.1:\n"
                                  "echo stream tcp nowait root internal\n"
                                  "*:\n"
                                  "chargen stream tcp nowait root internal\n")
    binds = {s.id: s.bind for s in config.services}
    assert binds == {"daytime-stream": "127.0.0.1", "time-stream": "::1",
                     "echo-stream": "127.0.0.1", "chargen-stream": None}


def test_tcpmux_subservice(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "tcpmux stream tcp nowait root internal\n"
                                  f"tcpmux/+hello stream tcp nowait nobody {CAT} cat\n")
    client = config.service("hello")
    assert client is not None and {"TCPMUXPLUS", "UNLISTED"} <= client.types


def test_tcpmux_subservice_without_the_tcpmux_line_is_warned(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, f"tcpmux/+hello stream tcp nowait nobody {CAT} cat\n")
    assert only(config).name == "hello"
    assert messages(config, Severity.WARNING) == [
        f"{tmp_path}/inetd.conf:1: warning: service hello: type TCPMUXPLUS, but no tcpmux "
        "service is enabled, so no client can reach it (add a `tcpmux stream tcp nowait "
        "root internal` line, which listens on port 1)"]


@pytest.mark.parametrize(("line", "needle"), [
    ("ftp stream tcp", "no wait"),
    (f"ftp stream tcp waut root {CAT} cat", "bad value for wait"),
    (f"ftp stream unix nowait root {CAT} cat", "UNIX-domain"),
    (f"a,b:ftp stream tcp nowait root {CAT} cat", "several listening addresses"),
    (f"ftp/1 stream tcp nowait root {CAT} cat", "a '/' is only allowed"),
])
def test_unusable_lines_are_skipped_with_file_and_line(tmp_path: Path, line: str,
                                                       needle: str) -> None:
    config = load_inetd(tmp_path, "# first\n" + line + "\n")
    assert not config.services
    errors = messages(config, Severity.ERROR)
    assert any(needle in m and "inetd.conf:2" in m for m in errors), errors
    assert [d.line for d in config.dropped] == [2]


def test_comments_blank_and_commented_out_lines_are_skipped(tmp_path: Path) -> None:
    config = load_inetd(tmp_path, "#:STANDARD: update-inetd section\n\n   \n"
                                  f"#daytime stream tcp nowait root {CAT} cat\n"
                                  f"#<off># time stream tcp nowait root {CAT} cat\n")
    assert not config.services and not config.dropped and not messages(config)


def test_blank_led_lines_continue_the_entry_above_as_in_bsd_inetd(tmp_path: Path) -> None:
    # OpenBSD/NetBSD/FreeBSD read a line starting with a blank as more words of the
    # entry above; xinetd rejects such a line and runs the entry without its arguments.
    config = load_inetd(tmp_path, f"daytime stream tcp nowait nobody {CAT}\n"
                                  "\tcat -u\n"
                                  "time stream tcp\n"
                                  f"  nowait nobody\n   {CAT} cat -n\n")
    # Each continuation line is named (a mistyped indented entry is read this way too).
    assert [m.split("inetd.conf:")[1] for m in messages(config)] == [
        "2: info: continues the entry of line 1 (it starts with a blank and is no entry of "
        "its own)",
        "4: info: continues the entry of line 3 (it starts with a blank and is no entry of "
        "its own)",
        "5: info: continues the entry of line 3 (it starts with a blank and is no entry of "
        "its own)"]
    daytime, time = config.services
    assert (daytime.origin.line, daytime.server_argv) == (1, ("cat", "-u"))
    assert (time.origin.line, time.server, time.server_argv) == (3, CAT, ("cat", "-n"))


def test_indented_entries_and_comments_are_no_continuation(tmp_path: Path) -> None:
    # An indented line that is an entry of its own stays one (as in xinetd); a comment,
    # a blank line or a `host:` line ends an entry.
    config = load_inetd(tmp_path, f"daytime stream tcp nowait nobody {CAT} cat\n"
                                  f"\ttime stream tcp nowait nobody {CAT} cat\n"
                                  "\t# -u\n"
                                  f"echo stream tcp nowait root internal\n\n\tstray\n"
                                  f"127.0.0.1:\n  chargen stream tcp nowait root internal\n")
    assert [(s.id, s.origin.line) for s in config.services] == [
        ("daytime", 1), ("time", 2), ("echo-stream", 4), ("chargen-stream", 8)]
    assert config.services[0].server_argv == ("cat",)
    assert [d.line for d in config.dropped] == [6]


def test_shared_id_advice_for_inetd_entries_can_be_followed(tmp_path: Path) -> None:
    # inetd.conf has no id field: "give each an id" cannot be done there.
    config = load_inetd(tmp_path, f"127.0.0.1:daytime stream tcp nowait nobody {CAT} cat\n"
                                  f"[::1]:daytime stream tcp6 nowait nobody {CAT} cat\n")
    assert len(config.services) == 2
    warnings = messages(config, Severity.WARNING)
    assert len(warnings) == 1 and "inetd.conf:2:" in warnings[0], warnings
    assert "move it to an xinetd file (pyxinetd convert writes one)" in warnings[0]
    assert "give each an `id`" not in warnings[0]


def test_only_late_defaults_apply(tmp_path: Path) -> None:
    xinetd = ("defaults\n{\n\tonly_from = 127.0.0.1\n\tinstances = 7\n\tcps = 5 6\n"
              "\tgroups = no\n}\n")
    svc = only(load_inetd(tmp_path, f"daytime stream tcp nowait nobody {CAT} cat\n", xinetd))
    assert svc.only_from is None
    assert (svc.instances, svc.cps, svc.groups) == (7, (5, 6), True)


def test_inetd_services_come_after_xinetd_ones(tmp_path: Path) -> None:
    xinetd = ("service time\n{\n\ttype = INTERNAL\n\tsocket_type = stream\n\twait = no\n}\n")
    config = load_inetd(tmp_path, "daytime stream tcp nowait root internal\n", xinetd)
    assert [s.id for s in config.services] == ["time", "daytime-stream"]
    assert config.files[-1] == str(tmp_path / "inetd.conf")


def test_missing_inetd_conf_is_said_but_no_warning(tmp_path: Path) -> None:
    # Debian's init script passes -inetd_compat whether or not the file exists: its
    # absence is an INFO line (xinetd says nothing); one that cannot be read is a
    # warning.
    main = tmp_path / "xinetd.conf"
    main.write_text("")
    config = load(str(main), inetd_compat=True, inetd_path=str(tmp_path / "none"))
    assert not messages(config, Severity.WARNING)
    assert any(f"no {tmp_path / 'none'} to read (-inetd_compat)" in m
               for m in messages(config, Severity.INFO))
    folder = tmp_path / "folder"
    folder.mkdir()
    config = load(str(main), inetd_compat=True, inetd_path=str(folder))
    assert any("cannot read" in m for m in messages(config, Severity.WARNING))
    assert load(str(main)).diagnostics == ()


def test_unwrap_tcpd() -> None:
    assert unwrap_tcpd("/usr/sbin/tcpd", ("/usr/sbin/in.ftpd", "-l")) == (
        "/usr/sbin/in.ftpd", ("in.ftpd", "-l"))
    assert unwrap_tcpd("/usr/sbin/tcpd", ("in.ftpd", "-l")) is None
    assert unwrap_tcpd("/usr/sbin/tcpd", ("in.ftpd",), "/usr/libexec") == (
        "/usr/libexec/in.ftpd", ("in.ftpd",))
    assert unwrap_tcpd("/bin/cat", ("cat",)) is None


# --------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_loads_and_every_entry_is_accounted_for(tmp_path: Path, path: Path) -> None:
    main = tmp_path / "xinetd.conf"
    main.write_text("")
    config = load(str(main), inetd_compat=True, inetd_path=str(path))
    lines = {s.origin.line for s in config.services}
    reported = {d.line for d in config.diagnostics
                if d.file == str(path) and d.severity is not Severity.DEBUG}
    for number, raw in enumerate(path.read_text(errors="replace").split("\n"), start=1):
        words = raw.split()
        if words and not words[0].startswith("#") and not (len(words) == 1
                                                            and words[0].endswith(":")):
            assert number in lines or number in reported, f"{path.name}:{number}: {raw}"


# --------------------------------------------------------------------------- convert


SAMPLE = f"""\
# local services
echo\tstream\ttcp\tnowait\troot\tinternal
echo\tdgram\tudp\twait\troot\tinternal
daytime stream tcp nowait.100 nobody:nogroup {CAT} cat -n
time stream tcp nowait nobody /usr/sbin/tcpd {CAT} -u
chargen stream tcp6 nowait/4/0/1 nobody {CAT} other
rstatd/1-3 dgram rpc/udp wait root {CAT} rpc.rstatd
127.0.0.1:finger stream tcp4 nowait nobody {CAT}
discard stream tcp nowait root internal
bogus line here
"""


def _services(config: Configuration) -> list[tuple[object, ...]]:
    def key(s: ServiceConfig) -> tuple[object, ...]:
        server, argv = s.server, s.server_argv
        if server is not None:
            server, argv = unwrap_tcpd(server, argv) or (server, argv)
        return (s.id, s.name, s.port, s.socket_type, s.protocol, s.wait, s.user, s.group,
                s.groups, server, argv, s.family, s.v6only, s.bind, s.cps, s.instances,
                s.per_source, s.types, s.rpc_version)
    return sorted((key(s) for s in config.services), key=repr)


def test_converted_sample_loads_cleanly_and_matches_inetd_compat(tmp_path: Path) -> None:
    result = convert(SAMPLE, "inetd.conf")
    assert result.skipped == 1
    assert any(":10:" in p and "entry skipped" in p for p in result.problems())
    assert "# local services" in result.text and "# bogus line here" in result.text
    conf = tmp_path / "converted.conf"
    conf.write_text(result.text)
    converted = load(str(conf))
    assert not messages(converted), messages(converted)
    assert len(converted.services) == 8
    time = converted.service("time")
    assert time is not None and (time.server, time.server_argv) == (CAT, ("cat", "-u"))
    # -inetd_compat keeps tcpd, absent here: the unwrapped entry is the only difference.
    compat = load_inetd(tmp_path, SAMPLE)
    assert [d.name for d in compat.dropped if d.name] == ["time"]
    assert [s for s in _services(converted) if s[0] != "time"] == _services(compat)


def test_converter_argv0_handling() -> None:
    text = convert(f"a stream tcp nowait root {CAT} cat -n\n"
                   f"b stream tcp nowait root {CAT} other -n\n"
                   f"c stream tcp nowait root {CAT}\n").text
    blocks = text.split("service ")[1:]
    assert "server_args     = -n" in blocks[0] and "NAMEINARGS" not in blocks[0]
    assert "server_args     = other -n" in blocks[1] and "NAMEINARGS" in blocks[1]
    assert "server_args" not in blocks[2]


def test_converter_reads_continuation_lines_once() -> None:
    result = convert(f"daytime stream tcp nowait root {CAT}\n\tother -n\n"
                     "bad stream tcp\n\tnowait.x root\n")
    blocks = result.text.split("service ")[1:]
    assert len(blocks) == 1 and "server_args     = other -n" in blocks[0]
    assert "# \tother -n" not in result.text and "# other -n" not in result.text
    # A line that cannot be converted is kept whole, continuation included.
    assert "# bad stream tcp\n# \tnowait.x root" in result.text and result.skipped == 1


def test_converter_keeps_relative_tcpd_daemons_wrapped_unless_given_a_folder() -> None:
    line = "ftp stream tcp nowait root /usr/sbin/tcpd in.ftpd -l\n"
    kept = convert(line)
    assert "server          = /usr/sbin/tcpd" in kept.text
    assert any("--daemon-dir" in p for p in kept.problems())
    moved = convert(line, daemon_dir="/usr/libexec")
    assert "server          = /usr/libexec/in.ftpd" in moved.text
    assert "server_args     = -l" in moved.text and "NOLIBWRAP" not in moved.text


def test_convert_command_reads_stdin_and_reports_on_stderr(tmp_path: Path) -> None:
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "convert"],
                          input=f"daytime stream tcp nowait root {CAT} cat\nx y\n",
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 1
    assert "service daytime" in done.stdout
    assert "<stdin>:2:" in done.stderr
    (tmp_path / "in.conf").write_text(f"daytime stream tcp nowait root {CAT} cat\n")
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "convert",
                           str(tmp_path / "in.conf")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0 and "service daytime" in done.stdout and not done.stderr


def test_check_inetd_compat_option(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("")
    (tmp_path / "inetd.conf").write_text("daytime stream tcp nowait root internal\n")
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "-f",
                           str(tmp_path / "x.conf"), "--inetd-compat", "--inetd-conf",
                           str(tmp_path / "inetd.conf")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "daytime-stream" in done.stdout


def test_check_inetd_conf_path_alone_is_checked(tmp_path: Path) -> None:
    # Naming the file is asking for it to be checked: it must not be skipped silently
    # for want of --inetd-compat (the bad line below must fail the check).
    (tmp_path / "x.conf").write_text("")
    (tmp_path / "inetd.conf").write_text("daytime stream tcp nowait root internal\nbad\n")
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "-f",
                           str(tmp_path / "x.conf"), "--inetd-conf",
                           str(tmp_path / "inetd.conf")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "daytime-stream" in done.stdout
    assert f"{tmp_path / 'inetd.conf'}:2:" in done.stdout + done.stderr


def test_the_inetd_corpus_was_found() -> None:
    # Without this, a missing corpus would silently parametrize nothing.
    if not shared_present():
        pytest.skip(SHARED_ABSENT)
    assert CORPUS_FILES, f"no inetd.conf corpus at {CORPUS}"


def test_converter_does_not_write_arguments_an_xinetd_file_reads_as_a_comment(
        tmp_path: Path) -> None:
    # inetd passes `#` words on as arguments, and so does -inetd_compat; in an xinetd
    # file a word starting with `#` after the first value starts a comment.
    result = convert(f"finger stream tcp nowait nobody {CAT} cat #x -n # z\n"
                     f"time stream tcp nowait nobody {CAT} other # z\n", "inetd.conf")
    assert "server_args     = #x -n\n" in result.text
    assert "server_args     = other\n" in result.text
    lost = [p for p in result.problems() if "# z" in p]
    assert [p.split(":")[1] for p in lost] == ["1", "2"], result.problems()
    conf = tmp_path / "converted.conf"
    conf.write_text(result.text)
    converted = load(str(conf))
    assert not messages(converted), messages(converted)
    assert [s.server_argv for s in converted.services] == [("cat", "#x", "-n"), ("other",)]


def test_a_nul_byte_ends_its_line_as_in_xinetd(tmp_path: Path) -> None:
    # xinetd reads C strings: `cat -n\0 -x` runs `cat -n`. Kept, the NUL reached the
    # argv and every start failed (`embedded null byte`).
    config = load_inetd(tmp_path, f"daytime stream tcp nowait nobody {CAT} cat -n\0 -x\n"
                                  "# a comment\0 with a NUL\n"
                                  f"time stream tcp nowait nobody {CAT} cat\0\n")
    assert [s.server_argv for s in config.services] == [("cat", "-n"), ("cat",)]
    warned = messages(config, Severity.WARNING)
    assert [w.split(":")[1] for w in warned] == ["1", "3"], warned
    assert "NUL byte at column" in warned[0]
    result = convert(f"daytime stream tcp nowait nobody {CAT} cat -n\0 -x\n# x\0y\n",
                     "inetd.conf")
    assert "\0" not in result.text and "server_args     = -n\n" in result.text
    assert "# x\n" in result.text


def test_crlf_line_ends_are_read_as_lf_with_one_warning(tmp_path: Path) -> None:
    # xinetd keeps the \r in the last field (`Unknown user: root\r`, a server named
    # `internal\r`).
    config = load_inetd(tmp_path, f"daytime stream tcp nowait nobody {CAT} cat -n\r\n"
                                  "echo stream tcp nowait nobody internal\r\n")
    assert [s.id for s in config.services] == ["daytime", "echo-stream"]
    assert config.services[0].server_argv == ("cat", "-n")
    warned = messages(config, Severity.WARNING)
    assert len(warned) == 1 and "inetd.conf:1:" in warned[0] and "CRLF" in warned[0]


def test_a_line_longer_than_xinetd_reads_is_read_whole_with_a_warning(tmp_path: Path) -> None:
    # xinetd reads about 16 KiB of it: the entry runs with the arguments up to there and
    # the rest is a line of its own (`Bad socket type: (null)`).
    args = " ".join(["x" * 99] * 200)
    config = load_inetd(tmp_path, f"# {args}\ntime stream tcp nowait nobody {CAT} cat {args}\n")
    assert len(only(config).server_argv) == 201
    warned = messages(config, Severity.WARNING)
    assert len(warned) == 1 and "inetd.conf:2:" in warned[0] and "read whole" in warned[0]


def test_a_first_line_xinetd_cuts_at_8_kib_is_read_whole_with_a_warning(
        tmp_path: Path) -> None:
    # xinetd 2.3.15.3 cuts the first line of inetd.conf at 8192 bytes (found by
    # scripts/diff-fuzz-inetd): the rest is `Bad socket type: (null)` at line 2.
    args = " ".join(["x" * 99] * 82)
    config = load_inetd(tmp_path, f"time stream tcp nowait nobody {CAT} cat {args}\n")
    assert len(only(config).server_argv) == 83
    warned = messages(config, Severity.WARNING)
    assert len(warned) == 1 and "inetd.conf:1:" in warned[0] and "read whole" in warned[0]


def test_a_builtin_with_an_upper_case_socket_type_gets_the_lower_case_id(
        tmp_path: Path) -> None:
    # xinetd reads `STREAM` as stream and names the service chargen-stream in its dump
    # (found by scripts/diff-fuzz-inetd); the defaults' enabled/disabled lists name it so.
    config = load_inetd(tmp_path, "chargen STREAM tcp nowait root internal\n")
    assert only(config).id == "chargen-stream"
    assert only(config).socket_type == "stream"


@pytest.mark.parametrize("six_first", [True, False], ids=["tcp6-first", "tcp-first"])
def test_a_tcp6_line_that_is_no_twin_leaves_the_port_to_the_tcp_line(
        tmp_path: Path, six_first: bool) -> None:
    # xinetd rejects tcp6 and serves the tcp line on both families. The v6-only line
    # once won when it came first, and IPv4 clients were refused.
    lines = [f"finger stream tcp6 nowait nobody {CAT} cat -6\n",
             f"finger stream tcp nowait nobody {CAT} cat -4\n"]
    config = load_inetd(tmp_path, "".join(lines if six_first else lines[::-1]))
    svc = only(config)
    assert svc.server_argv == ("cat", "-4") and svc.family == socket.AF_INET6
    assert any("finger/tcp6 not served: line" in m and "rejects tcp6" in m
               for m in messages(config, Severity.WARNING))


def test_a_tcp6_line_is_served_on_its_own_when_the_tcp_line_is_not(tmp_path: Path) -> None:
    # The tcp line fails (an unknown user): the tcp6 line takes the port, IPv6 only,
    # and says why.
    config = load_inetd(tmp_path, f"finger stream tcp6 nowait nobody {CAT} cat -6\n"
                                  f"finger stream tcp nowait nosuchuser-x {CAT} cat -4\n")
    svc = only(config)
    assert svc.server_argv == ("cat", "-6")
    assert any("finger/tcp6 is a service of its own (IPv6 only): line 2's tcp entry"
               in m for m in messages(config, Severity.INFO))
