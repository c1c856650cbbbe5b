"""The oracle harness itself: xinetd runs isolated, and its dump parses as expected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oracle import parse_dump, require_xinetd, run_xinetd_dump, stub_plan

pytestmark = pytest.mark.oracle

CONF = """\
defaults
{
    instances  = 30
    per_source = 7
    cps        = 9 8
}

service one
{
    type        = UNLISTED
    socket_type = stream
    port        = 20100
    wait        = no
    user        = nobody
    server      = /bin/cat
    server_args = a1 a2
    instances   = 5
    log_type    = FILE /var/log/pyxinetd-oracle-probe.log
}

service two
{
    type        = UNLISTED
    protocol    = udp
    port        = 20101
    wait        = yes
    user        = 0
    group       = 5
    server      = {missing}
    cps         = 2 3
}

service echo
{
    type        = INTERNAL
    id          = echo-stream
    socket_type = stream
    wait        = no
}
"""


def test_dump_parsed_and_host_untouched(tmp_path: Path) -> None:
    require_xinetd()
    missing = "/usr/local/libexec/pyxinetd-oracle-missing/server"
    assert not os.path.lexists(missing)
    conf = tmp_path / "xinetd.conf"
    conf.write_text(CONF.replace("{missing}", missing))

    plain = run_xinetd_dump(conf)
    assert plain.started and plain.returncode == 0, plain.log
    state = parse_dump(plain.dump)
    assert [s.id for s in state.services] == ["one", "echo-stream"]   # `two`: no server
    assert "Server /usr/local/libexec/pyxinetd-oracle-missing/server is not executable" \
        in plain.log

    stubbed = run_xinetd_dump(conf, stubs=[missing], before=f"test -x {missing} && echo seen")
    assert stubbed.before_stdout == "seen\n"
    state = parse_dump(stubbed.dump)
    by_id = state.by_id()
    assert list(by_id) == ["one", "two", "echo-stream"]
    one, two, echo = by_id["one"], by_id["two"], by_id["echo-stream"]
    assert (one.socket_type, one.protocol, one.port, one.wait) == ("stream", "tcp", 20100, False)
    assert one.user == 65534 and one.server == "/bin/cat"
    assert one.server_argv == ("cat", "a1", "a2")
    assert state.effective_instances(one) == 5
    assert state.effective_cps(one) == (9, 8)                   # inherited, not printed
    assert state.effective_per_source(one) == 7
    assert (two.socket_type, two.protocol, two.wait, two.user, two.group) == \
        ("dgram", "udp", True, 0, 5)
    assert state.effective_cps(two) == (2, 3)
    assert state.effective_instances(two) == 30                 # inherited, not printed
    assert echo.name == "echo" and echo.types == ("INTERNAL",) and echo.port == 7
    assert echo.user is None and echo.server is None
    # Nothing the runs wrote reached the host.
    assert not os.path.lexists(missing)
    assert not os.path.exists("/var/log/pyxinetd-oracle-probe.log")


def test_stub_plan_never_touches_system_configuration() -> None:
    overlays, in_place = stub_plan(["/etc/pyxinetd-nope/x", "relative/x", "/bin/sh",
                                    "/tmp/pyxinetd-nope/x", "/usr/pyxinetd-nope/a/b"])
    assert in_place == ["/tmp/pyxinetd-nope/x"]
    assert overlays == [("/usr", ["/usr/pyxinetd-nope/a/b"])]


CANNED_DUMP = """\
INTERNAL STATE DUMP: 2.3.15.3
Current time: Thu Nov 26 19:02:58 2026

Services + defaults:
Service defaults
\tInstances = UNLIMITED
\tBind = All addresses.
\tOnly from: All sites
\tNo access: No blocked sites
\tLogging to file: /srv/xt/svc.log (no limits)
\tLog_on_success flags = HOST DURATION EXIT PID
\tLog_on_failure flags = HOST ATTEMPT
\tPassenv = PATH
\tEnvironment strings:
\t\tPATH=/usr/bin
Service = testsrv
\tState = Active
\tService configuration: testsrv
\t\tid = testsrv
\t\tflags = IPv4
\t\ttype = UNLISTED
\t\tsocket_type = stream
\t\tProtocol (name,number) = (tcp,6)
\t\tport = 20100
\t\twait = no
\t\tuser = 65534
\t\tGroups = no
\t\tumask = 27
\t\tNice = 5
\t\tPER_SOURCE = -1
\t\tBind = localhost
\t\tServer = /srv/xt/srv.sh
\t\tServer argv = srv.sh a1 a2
\t\tOnly from: 10.0.0.0/255.0.0.0(NET)
\t\tNo access: No blocked sites
\t\tLogging to common log file
\t\tLog_on_success flags = HOST PID
\t\tLog_on_failure flags =
\t\tEnvironment additions:
\t\t\tFOO=bar
\t\tEnvironment strings:
\t\t\tFOO=bar
\t\t\tPATH=/usr/bin
\trunning servers = 0
\tservice fd = 10

Server table dump:

END OF DUMP
"""


def test_parse_canned_dump() -> None:
    state = parse_dump("older dump text\n" + CANNED_DUMP)
    assert state.defaults.instances == "UNLIMITED" and state.defaults.passenv == ("PATH",)
    [svc] = state.services
    assert (svc.name, svc.id, svc.state, svc.flags, svc.types) == (
        "testsrv", "testsrv", "Active", ("IPv4",), ("UNLISTED",))
    assert (svc.protocol, svc.protocol_number, svc.port, svc.wait) == ("tcp", 6, 20100, False)
    assert (svc.user, svc.groups, svc.umask, svc.nice) == (65534, False, 0o27, 5)
    assert svc.server_argv == ("srv.sh", "a1", "a2") and svc.bind == "localhost"
    assert svc.only_from == "10.0.0.0/255.0.0.0(NET)" and svc.log == "Logging to common log file"
    assert svc.log_on_success == ("HOST", "PID") and svc.log_on_failure == ()
    assert svc.env_additions == ("FOO=bar",)
    assert state.effective_instances(svc) is None and state.effective_cps(svc) == (50, 10)
    assert state.effective_per_source(svc) is None
