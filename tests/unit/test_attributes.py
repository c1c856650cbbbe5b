"""Every attribute of the table: accepted values, rejected values, defaults or not."""

from __future__ import annotations

import re
import resource
import socket
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.config import Severity
from pyxinetd.config.model import FileTarget, SocketType, SyslogTarget, TimeWindow
from tests.unit.config_kit import dropped_reasons, errors, load_text, service_block, warnings

INF = resource.RLIM_INFINITY


def one(tmp_path: Path, *lines: str, defaults: str = "") -> Any:
    text = (f"defaults\n{{\n{defaults}}}\n" if defaults else "") + service_block("svc", *lines)
    config = load_text(tmp_path, text)
    assert len(config.services) == 1, (dropped_reasons(config), errors(config))
    return config.services[0]


# (attribute line, ServiceConfig field, expected value)
GOOD = [
    ("id = other", "id", "other"),
    ("flags = nodelay KEEPALIVE ipv4", "flags", frozenset({"NODELAY", "KEEPALIVE", "IPv4"})),
    # A leading '+' is read as xinetd's strtol reads it.
    ("port = +20001", "port", 20001),
    ("bind = 127.1", "bind", "127.0.0.1"),        # inet_aton's short form, as in xinetd
    ("instances = +5", "instances", 5),
    ("instances = 2147483647", "instances", 2147483647),
    ("cps = +3 +4", "cps", (3, 4)),
    ("umask = +027", "umask", 0o27),
    ("deny_time = +5", "deny_time", 5),
    ("rlimit_as = +5k", "rlimits.as_", 5 * 1024),
    # Limits beyond what setrlimit can be handed are unlimited in effect.
    ("rlimit_as = 9223372036854775808", "rlimits.as_", INF),
    ("rlimit_files = 18446744073709551615", "rlimits.files", INF),
    ("disable = no", "name", "svc"),
    ("group = nogroup", "group", 65534),
    ("group = 123", "group", 123),
    ("groups = yes", "groups", True),
    ("umask = 027", "umask", 0o27),
    ("nice = -5", "nice", -5),
    ("nice = 10", "nice", 10),
    ("env = A=1 B=x=y", "env", ("A=1", "B=x=y")),
    ("passenv = PATH", "passenv", ("PATH",)),
    ("rlimit_as = 512M", "rlimits.as_", 512 * 1024 * 1024),
    ("rlimit_data = 4k", "rlimits.data", 4096),
    ("rlimit_rss = UNLIMITED", "rlimits.rss", INF),
    ("rlimit_stack = 8192", "rlimits.stack", 8192),
    ("rlimit_files = 0", "rlimits.files", None),
    ("rlimit_cpu = 20", "rlimits.cpu", 20),
    ("libwrap = other", "libwrap", "other"),
    ("bind = 127.0.0.1", "bind", "127.0.0.1"),
    ("interface = ::1", "bind", "::1"),
    ("v6only = yes", "v6only", True),
    ("only_from = 127.0.0.1", "only_from", "len1"),
    ("no_access = 10.0.0.0", "no_access", "len1"),
    ("access_times = 2:00-8:59 12:00-23:59", "access_times",
     (TimeWindow(120, 539), TimeWindow(720, 1439))),
    ("access_times = 12:00-24:00", "access_times", (TimeWindow(720, 1440),)),
    # Leading zeros are read as xinetd reads them: only the values are bounded.
    ("access_times = 000:00-023:0059", "access_times", (TimeWindow(0, 1439),)),
    # An empty hour or minute is 0, as xinetd reads it (its digits multiplied in from 0).
    ("access_times = :30-13:", "access_times", (TimeWindow(30, 780),)),
    ("access_times = :-8:15", "access_times", (TimeWindow(0, 495),)),
    ("instances = 7", "instances", 7),
    ("instances = UNLIMITED", "instances", None),
    ("per_source = 0", "per_source", 0),
    ("per_source = unlimited", "per_source", None),
    ("cps = 0 0", "cps", (0, 0)),
    ("max_load = 2.5", "max_load", 2.5),
    ("deny_time = FOREVER", "deny_time", -1),
    # xinetd's own spelling of FOREVER (its CRITICAL line: `for -1 minutes`).
    ("deny_time = -1", "deny_time", -1),
    ("deny_time = never", "deny_time", 0),
    ("deny_time = 120", "deny_time", 120),
    ("banner = /etc/issue", "banner", "/etc/issue"),
    ("banner_success = /a", "banner_success", "/a"),
    ("banner_fail = /b", "banner_fail", "/b"),
    ("stderr = /var/log/svc.err", "stderr", "/var/log/svc.err"),
    ("log_type = SYSLOG authpriv", "log_type", SyslogTarget("authpriv", "info")),
    ("log_type = syslog LOCAL4 Warning", "log_type", SyslogTarget("local4", "warning")),
    ("log_type = FILE /var/log/x", "log_type", FileTarget("/var/log/x")),
    ("log_type = FILE /l 100k", "log_type", FileTarget("/l", 102400, 102400 + 5120)),
    ("log_type = FILE /l 10m", "log_type", FileTarget("/l", 10485760, 10485760 + 20480)),
    ("log_type = FILE /l 1000000", "log_type", FileTarget("/l", 1000000, 1010000)),
    ("log_type = FILE /l 1k 3k", "log_type", FileTarget("/l", 1024, 3072)),
    ("log_type = FILE /l 0", "log_type", FileTarget("/l")),
    ("log_type = FILE /l 0 0", "log_type", FileTarget("/l")),
    ("log_type = FILE /l 0k 2k", "log_type", FileTarget("/l")),
    ("log_type = FILE /l 1k 1k", "log_type", FileTarget("/l", 1024, 1024)),
    ("log_on_success = pid HOST exit Duration userid", "log_on_success",
     frozenset({"PID", "HOST", "EXIT", "DURATION", "USERID"})),
    ("log_on_failure = HOST ATTEMPT USERID", "log_on_failure",
     frozenset({"HOST", "ATTEMPT", "USERID"})),
]


def _field(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("line, path, expected", GOOD, ids=[g[0] for g in GOOD])
def test_good_value(tmp_path: Path, line: str, path: str, expected: Any) -> None:
    value = _field(one(tmp_path, line), path)
    if expected == "len1":
        assert value is not None and len(value) == 1
    else:
        assert value == expected


BAD = [
    ("type = UNLISTED BOGUS", "Bad service type: BOGUS (service bad: expected"),
    ("flags = NODELAI", 'Bad service flag: NODELAI (service bad: expected REUSE'),
    ("flags = NODELAI", 'did you mean "NODELAY"'),
    ("flags =", "attribute flags expects at least 1 value and none was given."),
    ("disable = maybe", "expected yes or no"),
    ("socket_type = strem", 'did you mean "stream"'),
    ("socket_type = rdm", "Bad socket type: rdm (service bad: expected stream"),
    ("protocol = tcp4", "Protocol tcp4 not in /etc/protocols"),
    ("wait = nope", "Bad value for wait: nope (service bad: expected yes or no"),
    ("rpc_version = 3-2", "bad version range"),
    ("rpc_version = 1-4294967295", "at most 1000 versions"),
    ("rpc_number = x", "Error parsing: x"),
    ("server = /etc/passwd", "Server /etc/passwd is not executable"),
    ("server = /nonexistent/x", "Server /nonexistent/x is not executable"),
    ("server_args =", "attribute server_args expects at least 1 value and none was given."),
    ("user = no-such-user-xyz", "Unknown user: no-such-user-xyz"),
    ("group = no-such-group-xyz", "Unknown group: no-such-group-xyz"),
    ("groups = sometimes", "Bad value for groups: sometimes (service bad: expected yes or no"),
    ("umask = 0999", "umask argument is invalid. (service bad: '0999'"),
    ("umask = 1777", "umask argument is invalid. (service bad: '1777'"),
    ("nice = high", "Error parsing: high (service bad: expected a signed"),
    ("nice = 99999999999999999999", "Error parsing: 99999999999999999999 (service bad: out of range"),
    ("per_source = 2147483648", "expected a number from 0 to 2147483647"),
    ("rlimit_as = 18446744073709551616", "more than 18446744073709551615"),
    ("rlimit_data = 99999999999999m", "Data limit is invalid: 99999999999999m (service bad: more than 18446744073709551615"),
    ("rpc_number = 4294967296", "expected a number from 0 to 4294967295"),
    ("deny_time = 99999999999999999999", "expected a number from 0 to 9223372036854775807"),
    ("port = ++5", "port number is invalid (service bad: '++5': expected"),
    ("env = NOEQUALS", "NOEQUALS has no '=' (service bad: expected NAME=value"),
    ("rlimit_as = 5g", "Address space limit is invalid: 5g (service bad: expected"),
    ("rlimit_cpu = 5k", "CPU limit is invalid: 5k (service bad: expected a number;"),
    ("redirect = 127.0.0.1 0", "port number invalid (service bad: redirect port '0'"),
    ("redirect = no-such-host.invalid 25", "bad address (service bad: redirect host 'no-such-host.invalid' does not resolve"),
    ("redirect = 127.0.0.1 no-such-service", "port number invalid (service bad: redirect port 'no-such-service'"),
    # xinetd's words for every bind address it cannot take.
    ("bind = 999.1.1.1", "bad address (service bad: bind address '999.1.1.1': expected an "
                         "IPv4 address"),
    ("bind = 127.0.0.1.", "bad address (service bad: bind address '127.0.0.1.': expected"),
    ("bind = ::zz", "bad address (service bad: bind address '::zz': expected an IPv6 "
                    "address"),
    ("v6only = perhaps", "expected yes or no"),
    ("only_from = 10.0.0.1,10.0.0.2", "has a comma in it"),
    ("no_access = 10.0.{1,,2}", "consecutive commas"),
    ("access_times = 25:00-26:00", "invalid time interval"),
    ("access_times = 9:00-8:00", "the start must be before the end"),
    ("access_times = 9-10", "incorrect time interval"),
    ("access_times = 0:00-123:59", "invalid time interval"),
    # xinetd 2.3.15.3 judges the hour before the minutes' text, the minutes' text before
    # their value.
    ("access_times = 0:00-123:59,", "invalid time interval (service bad: '0:00-123:59,'"),
    ("access_times = 0:00-123:5x", "invalid time interval (service bad:"),
    ("access_times = 0:00-12:99,", "incorrect time interval (service bad:"),
    ("access_times = 0:00-123x:00", "incorrect time interval (service bad:"),
    ("access_times = 0:99-x", "invalid time interval (service bad:"),
    ("access_times =", "attribute access_times expects at least 1 value and none was given."),
    ("instances = -1", "Number of instances is invalid: -1 (service bad:"),
    ("per_source = many", "Number of per source instances is invalid: many (service bad:"),
    ("cps = 1 x", "cps time argument not a number"),
    ("max_load = 0", "error parsing max_load argument (service bad: '0'"),
    ("max_load = abc", "error reading max_load argument"),
    # float() reads these, xinetd's strtod does not: `1_0.5` would be 10.5 against
    # xinetd's 1, digits of other scripts are no number to xinetd at all.
    ("max_load = 1_0.5", "bad max_load '1_0.5': expected a number greater than 0"),
    ("max_load = \uff12.\uff15", "error reading max_load argument"),
    ("max_load = \u0660.\u0665", "error reading max_load argument"),
    # C-locale case folding: the Kelvin sign, a dotless i and a long s spell nothing.
    ("flags = \u212aEEPALIVE", "Bad service flag"),
    ("instances = UNL\u0131M\u0131TED", "Number of instances is invalid"),
    ("log_type = \u017fYSLOG daemon", "Unknown log type"),
    ("deny_time = always", "Error parsing: always (service bad: expected"),
    ("deny_time = -5", "Error parsing: -5 (service bad: '-5': expected minutes (0 or more), "
                       "FOREVER (or -1), or NEVER"),
    ("log_type = SYSLOG daemonn", 'did you mean "daemon"'),
    ("log_type = SYSLOG nosuchfacility", "Unknown syslog facility: nosuchfacility (service bad: "),
    ("log_type = SYSLOG daemon loud", "Unknown syslog level: loud (service bad: expected"),
    ("log_type = SYSLOG", "wrong number of arguments"),
    ("log_type = FILE", "wrong number of arguments"),
    ("log_type = FILE /l 2k 1k", "hard limit (1024) is less than soft limit (2048)"),
    ("log_type = FILE /l x", "soft limit is invalid (service bad: expected a number"),
    # xinetd keeps the limits in 32 bits: 5000M would be about 904 MiB there.
    ("log_type = FILE /l 5000M", "soft limit is invalid: 5000M (service bad: at most "
                                 "4294967295 bytes; xinetd would keep the low 32 bits"),
    ("log_type = FILE /l 1k 4096M", "hard limit is invalid: 4096M (service bad: at most"),
    ("log_type = FILE /l 4294967295", "hard limit is invalid: 4294987775 (service bad: at "
                                      "most 4294967295 bytes (the hard limit the soft one "
                                      "gives"),
    ("log_type = FILES /l", 'did you mean "FILE"'),
    ("log_type = SYSLOG, daemon", "Unknown log type: SYSLOG, (service bad: expected SYSLOG"),
    ("log_on_success = HOST PIDS", 'did you mean "PID"'),
    ("log_on_failure = RECORD", "Bad log_on_failure flag: RECORD (service bad: it no longer exists"),
    ("stderr = svc.err", "stderr needs an absolute file name, not 'svc.err'"),
    ("redirect_source = gateway", "bad redirect_source 'gateway': expected a numeric"),
    # A zone must resolve as xinetd's getaddrinfo(AI_NUMERICHOST) resolves it: by name
    # only on a link-local address (`lo` exists on every host).
    ("redirect = fe80::1%no-such-if 25", "bad address (service bad: redirect host "
                                         "'fe80::1%no-such-if': no interface 'no-such-if'"),
    ("redirect = fd00::1%lo 25", "bad address (service bad: redirect host 'fd00::1%lo': its "
                                 "zone 'lo' names an interface, which only a link-local"),
    ("bind = fd00::1%lo", "bad address (service bad: bind address 'fd00::1%lo': its zone "
                          "'lo' names an interface, which only a link-local"),
    ("bind = fe80::1%no-such-if", "bad address (service bad: bind address "
                                  "'fe80::1%no-such-if': no interface 'no-such-if'"),
    ("redirect_source = fe80::1%no-such-if", "bad redirect_source 'fe80::1%no-such-if': no "
                                             "interface 'no-such-if' for its zone"),
]


@pytest.mark.parametrize("line, words", [
    ("port = " + "1" * 5000, "port number is invalid (service bad: '111"),
    ("nice = -" + "9" * 5000, "Error parsing: -999"),
    ("rlimit_as = " + "9" * 5000 + "k", "more than 18446744073709551615"),
    ("only_from = 10.{1," + "9" * 5000 + "}", "expected numbers 0-255 between the braces"),
], ids=["port", "nice", "rlimit", "factorized"])
def test_numbers_longer_than_int_converts_are_reported(tmp_path: Path, line: str,
                                                       words: str) -> None:
    # Python's int() refuses strings of over 4300 digits: such a value once escaped
    # the loader as a ValueError.
    text = service_block("bad", line, port=20001) + service_block("good", port=20002)
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["good"]
    assert any(words in e for e in errors(config)), errors(config)


def test_leading_zeros_beyond_int_limits_still_read(tmp_path: Path) -> None:
    svc = one(tmp_path, "instances = " + "0" * 5000 + "7", "user = " + "0" * 5000 + "65534")
    assert (svc.instances, svc.user) == (7, 65534)


def test_c_locale_spaces_around_a_number_are_skipped(tmp_path: Path) -> None:
    # xinetd's strtol/strtod skip them before a number and accept them after it.
    config = load_text(tmp_path, service_block(
        "a", "port = \v20002\f", "instances = \v5\v", "cps = 5\f \v6\v", "nice = \f-3\v",
        "umask = \v022\f", "rlimit_as = \v5M\v", "per_source = \v+4", "max_load = \f2"))
    assert errors(config) == []
    (svc,) = config.services
    assert (svc.port, svc.instances, svc.cps, svc.nice, svc.umask, svc.per_source,
            svc.max_load) == (20002, 5, (5, 6), -3, 0o22, 4, 2.0)
    assert svc.rlimits.as_ == 5 * 1024 * 1024


def test_c_locale_spaces_inside_a_number_are_not(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("a", "instances = 5\vx"))
    assert not config.services
    assert "Number of instances is invalid: 5\vx" in errors(config)[0]


@pytest.mark.parametrize("line, words", BAD, ids=[b[0] for b in BAD])
def test_bad_value_disables_only_its_service(tmp_path: Path, line: str, words: str) -> None:
    text = service_block("bad", line, port=20001) + service_block("good", port=20002)
    config = load_text(tmp_path, text)
    assert [s.name for s in config.services] == ["good"]
    (dropped,) = config.dropped
    assert dropped.name == "bad" and dropped.file and dropped.line == 1
    assert words.split(" (service")[0] in dropped.reason
    assert any(words in e and "service disabled" in e for e in errors(config))


def test_bad_server_line_starts_with_xinetds_words(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("bad", "server = /nonexistent/x", port=20001))
    assert [d.message for d in config.diagnostics if d.severity is Severity.ERROR] == [
        "Server /nonexistent/x is not executable (service bad: No such file or directory; "
        "service disabled)"]



def test_empty_value_line_starts_with_xinetds_words(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("bad", "flags =", port=20001))
    (error,) = [d.message for d in config.diagnostics if d.severity is Severity.ERROR]
    assert error.startswith("attribute flags expects at least 1 value and none was given. "
                            "(service bad: flags needs at least one of REUSE, ")
    assert error.endswith("; service disabled)")


@pytest.mark.parametrize("line, expected", [
    ("nice = 1 2", "attribute nice expects 1 values and 2 values were specified (service "),
    ("cps = 5", "attribute cps expects 2 values and 1 values were specified (service "),
    ("redirect = host", "attribute redirect expects 2 values"),
    ("frobnicate = 1", "bad service attribute: frobnicate (service svc: not a known attribute;"),
    ("sockettype = stream", 'did you mean "socket_type"'),
    ("mdns = yes", "bad service attribute: mdns (service svc: not a known attribute;"),
    ("enabled = svc", "bad service attribute: enabled (service svc: only allowed in defaults"),
    ("port = 1\n\tport = 2", "Service svc: attribute already set: port (first at "),
])
def test_count_and_unknown_are_warnings(tmp_path: Path, line: str, expected: str) -> None:
    config = load_text(tmp_path, service_block("svc", line))
    assert [s.name for s in config.services] == ["svc"]
    assert any(expected in w and ":10:2:" in w for w in warnings(config))


def test_case_insensitive_attribute_names_and_values(tmp_path: Path) -> None:
    text = ("service svc\n{\n\tTYPE = unlisted\n\tSocket_Type = STREAM\n\tProtocol = tcp\n"
            "\tWAIT = NO\n\tUser = nobody\n\tSERVER = /bin/cat\n\tPort = 20001\n\tFLAGS = ipv6\n}\n")
    svc = load_text(tmp_path, text).services[0]
    assert svc.socket_type is SocketType.STREAM and svc.wait is False
    assert svc.flags == frozenset({"IPv6"}) and svc.types == frozenset({"UNLISTED"})


def test_disable_yes_drops_and_skips_rest(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("svc", "disable = yes", "bogus = 1",
                                               "port = x"))
    assert config.services == () and dropped_reasons(config) == ["disabled (disable = yes)"]
    assert warnings(config) == [] and errors(config) == []


def test_disable_line_after_a_failure_ends_the_block(tmp_path: Path) -> None:
    # Repeated, with a wrong operator or a wrong count: the block ends there, as a
    # `disable = yes` would end it, since the failure left the service marked disabled.
    for line in ("disable = yes", "disable += no", "DISABLE = no no"):
        config = load_text(tmp_path, service_block(
            "svc", "disable = no", "group = nosuchgroup", line, "server = /nonexistent/x",
            "bogus = 1"))
        assert config.services == ()
        assert not any("nonexistent" in e for e in errors(config)), line
        assert not any("bogus" in w for w in warnings(config)), line
    # Without a failure, or with a `disable = no` after it, the block is read on.
    for lines in (("disable = no", "disable = yes"),
                  ("group = nosuchgroup", "disable = no", "disable = yes")):
        config = load_text(tmp_path, service_block("svc", *lines, "server = /nonexistent/x"))
        assert any("nonexistent" in e for e in errors(config)), lines


def test_a_syntax_error_after_a_disable_line_that_ends_the_block_is_not_read(
        tmp_path: Path) -> None:
    # xinetd skips to the `}` at the `disable` line: the lone name after it is never
    # read, so it is no error; the service is dropped for its failed attribute.
    for name in ("\\", "foo"):
        config = load_text(tmp_path, service_block(
            "svc", "group = nosuchgroup", "DISABLE = no no", name, "server = /bin/cat"))
        assert config.services == ()
        assert [e.split(": error: ", 1)[1].split(" (", 1)[0] for e in errors(config)] == [
            "Unknown group: nosuchgroup"], name
        assert dropped_reasons(config)[0].startswith("bad attribute value"), name
    # Without the failure the `disable` line ends nothing: the lone name is an error.
    config = load_text(tmp_path, service_block("svc", "DISABLE = no no", "\\",
                                               "server = /bin/cat"))
    assert any("Bad operator for attribute: \\" in e for e in errors(config))


def test_a_header_after_a_disable_line_that_ends_the_block_is_not_read(
        tmp_path: Path) -> None:
    # The block's `}` is missing: xinetd stops at the `disable` line and never reads the
    # `service next` line, so there is no `Bad operator for attribute: service`; pyxinetd
    # starts that entry (xinetd's skip to the next lone `}` loses it) with a warning.
    unclosed = service_block("svc", "group = nosuchgroup", "DISABLE = no no",
                             "server = /bin/cat").replace("}\n", "\n")
    config = load_text(tmp_path, unclosed + service_block("next", port=20002))
    assert [e.split(": error: ", 1)[1].split(" (", 1)[0] for e in errors(config)] == [
        "Unknown group: nosuchgroup"]
    assert any("service next starts here" in w and "xinetd 2.3.15.3 would skip on" in w
               for w in warnings(config)), warnings(config)
    assert [s.name for s in config.services] == ["next"]
    assert dropped_reasons(config)[0].startswith("bad attribute value")
    # Without the failure xinetd reads on and meets the header: an error.
    unclosed = service_block("svc", "DISABLE = no no", "server = /bin/cat").replace("}\n", "\n")
    config = load_text(tmp_path, unclosed + service_block("next", port=20002))
    assert any("Bad operator for attribute: service" in e for e in errors(config))


def test_disable_no_does_not_resurrect(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("svc", "nice = x", "disable = no"))
    assert config.services == ()
    assert any("does not re-enable" in w for w in warnings(config))


def test_enabled_list_does_not_resurrect(tmp_path: Path) -> None:
    defaults = "defaults\n{\n\tenabled = svc ok gone\n\tdisabled = gone\n}\n"
    config = load_text(tmp_path, defaults + service_block("svc", "nice = x")
                       + service_block("ok", port=20002)
                       + service_block("gone", "nice = x", port=20003))
    assert [s.id for s in config.services] == ["ok"]
    # Named once, for the listed service whose attribute failed; the disabled list
    # removes `gone` in xinetd too.
    assert [w.split(": warning: ", 1)[1] for w in warnings(config)
            if "enabled list does not re-enable" in w] == [
        "service svc: the defaults' enabled list does not re-enable a service whose "
        "attribute failed (xinetd 2.3.15.3 would run it with that attribute unset)"]


def test_user_resolution(tmp_path: Path) -> None:
    svc = one(tmp_path)
    assert (svc.user, svc.user_name, svc.group) == (65534, "nobody", 65534)
    assert svc.supplementary_groups == ()


def test_numeric_user_sets_gid_to_same_number(tmp_path: Path) -> None:
    svc = one(tmp_path, "user = 4321")
    assert (svc.user, svc.group, svc.user_name) == (4321, 4321, None)
    svc = one(tmp_path, "user = 4321", "group = 7")
    assert (svc.user, svc.group) == (4321, 7)
    svc = one(tmp_path, "user = 0")
    assert (svc.user, svc.group, svc.user_name) == (0, 0, "root")


def test_groups_yes_resolves_supplementary_groups(tmp_path: Path) -> None:
    svc = one(tmp_path, "groups = yes", "user = root")
    assert svc.groups is True and 0 in svc.supplementary_groups


def test_defaults_accepts_only_its_attributes(tmp_path: Path) -> None:
    lines = ["log_type = SYSLOG daemon", "log_on_success = PID", "log_on_failure = HOST",
             "only_from = 127.0.0.1", "no_access = 10.0.0.1", "passenv = PATH",
             "instances = 5", "per_source = 2", "cps = 10 5", "max_load = 3",
             "groups = yes", "umask = 022", "bind = 127.0.0.1", "banner = /a",
             "banner_success = /b", "banner_fail = /c", "v6only = no", "enabled = svc",
             "disabled = other"]
    config = load_text(tmp_path, "defaults\n{\n" + "".join(f"\t{l}\n" for l in lines) + "}\n")
    assert warnings(config) == [] and errors(config) == []
    d = config.defaults
    assert d.log_type == SyslogTarget("daemon") and d.instances == 5 and d.cps == (10, 5)
    assert d.umask == 0o22 and d.bind == "127.0.0.1" and d.enabled == frozenset({"svc"})
    assert d.disabled == frozenset({"other"}) and d.passenv == ("PATH",)


@pytest.mark.parametrize("line", ["port = 1", "user = root", "server = /bin/cat", "wait = no",
                                  "env = A=1", "flags = IPv4", "nice = 1", "deny_time = 5",
                                  "access_times = 1:00-2:00", "rlimit_cpu = 20", "mdns = yes"])
def test_service_only_attributes_warn_in_defaults(tmp_path: Path, line: str) -> None:
    config = load_text(tmp_path, f"defaults\n{{\n\t{line}\n}}\n")
    name = line.split()[0]
    assert any(f"attribute: {name} should not be in default section (defaults: " in w
               and ":3:2:" in w for w in warnings(config))


def test_bad_value_in_defaults_is_an_error_and_loading_goes_on(tmp_path: Path) -> None:
    text = ("defaults\n{\n\tlog_on_failure = RECORD\n\tinstances = 3\n}\n"
            + service_block("svc"))
    config = load_text(tmp_path, text)
    assert [s.instances for s in config.services] == [3]
    (err,) = errors(config)
    assert ":3:2:" in err and "exit status 0" in err


def test_repeated_single_attribute_first_wins(tmp_path: Path) -> None:
    svc = one(tmp_path, "flags = IPv4", "flags = IPv6")
    assert svc.flags == frozenset({"IPv4"})


def test_second_log_type_in_defaults_is_an_error(tmp_path: Path) -> None:
    config = load_text(tmp_path, "defaults\n{\n\tlog_type = SYSLOG daemon\n"
                                 "\tlog_type = FILE /x\n}\n")
    assert config.defaults.log_type == SyslogTarget("daemon")
    assert any("more than one log_type" in e for e in errors(config))


def test_mapped_redirect_addresses_are_written_as_xinetd_writes_them(tmp_path: Path) -> None:
    # inet_ntop's form, not Python's `::ffff:a09:5`: one log line names the target and
    # the source, which must not read as two forms of address.
    svc = one(tmp_path, "redirect = ::ffff:10.9.0.5 9009", "redirect_source = ::ffff:10.9.0.99")
    assert (svc.redirect, svc.redirect_source) == (("::ffff:10.9.0.5", 9009), "::ffff:10.9.0.99")
    zoned = one(tmp_path, "redirect = fe80::1%lo 9009", "redirect_source = fe80::0:2%1")
    assert (zoned.redirect, zoned.redirect_source) == (("fe80::1%lo", 9009), "fe80::2%1")


def test_bind_host_name_is_resolved(tmp_path: Path) -> None:
    svc = one(tmp_path, "bind = localhost", "flags = IPv4")
    assert (svc.bind, svc.family) == ("127.0.0.1", socket.AF_INET)


def test_access_times_24_00_warns(tmp_path: Path) -> None:
    config = load_text(tmp_path, service_block("svc", "access_times = 12:00-24:00"))
    assert any("24:00 taken as the end of the day" in w for w in warnings(config))


def test_env_string_without_a_name_warns_and_keeps_the_service(tmp_path: Path) -> None:
    # xinetd accepts `env = =x`; pyxinetd once disabled the service saying "has no '='".
    config = load_text(tmp_path, service_block("svc", "env = =x A=1"), environ={"P": "1"})
    (svc,) = config.services
    assert svc.environment == ("P=1", "=x", "A=1")
    assert any("env string '=x' has no variable name" in w for w in warnings(config))


def test_bind_address_of_the_other_family_than_the_flag_is_kept(tmp_path: Path) -> None:
    # xinetd 2.3.15.3 drops the bind address then and listens on every address.
    config = load_text(tmp_path, service_block("svc", "bind = 127.0.0.1", "flags = IPv6"))
    (svc,) = config.services
    assert (svc.bind, svc.family) == ("127.0.0.1", socket.AF_INET)
    assert any("bind address 127.0.0.1 has no IPv6 address" in w for w in warnings(config))
    config = load_text(tmp_path, service_block("svc", "bind = 127.0.0.1"))
    assert config.services[0].family == socket.AF_INET and warnings(config) == []


def test_a_service_dropped_for_several_bad_values_names_their_lines_once(
        tmp_path: Path) -> None:
    # Each error is logged at its line; the dropped entry (and the daemon's `removing`
    # line) names the places instead of repeating every text.
    config = load_text(tmp_path, service_block("svc", "wait = maybe", "instances = x",
                                               "server = /bin/cat"))
    conf = config.path
    (reason,) = dropped_reasons(config)
    assert reason.startswith(f"bad attribute values at {conf}:"), reason
    lines = [int(e.split(":")[1]) for e in errors(config)]
    assert reason == (f"bad attribute values at {conf}:{lines[0]}, {lines[1]} (the errors "
                      "logged there)")
    config = load_text(tmp_path, service_block("svc", "wait = maybe", "server = /bin/cat"))
    assert dropped_reasons(config)[0].startswith(
        f"bad attribute value: {config.path}:"), dropped_reasons(config)


def test_relative_log_file_name_warns(tmp_path: Path) -> None:
    # xinetd takes it from its start folder until its first reload, then from `/`:
    # pyxinetd always from `/`, and says so at load, with file and line.
    config = load_text(tmp_path, service_block("svc", "log_type = FILE svc.log"))
    texts = [str(d) for d in config.diagnostics]
    assert any(re.search(r"xinetd\.conf:\d+:\d+: warning: service svc: log file name "
                         r"svc\.log is relative: it is taken from /", t)
               for t in texts), texts
    assert config.services[0].log_type is not None


def test_banners_of_a_datagram_builtin_are_warned_about(tmp_path: Path) -> None:
    # Nothing is ever written: there is no connection to write a banner on.
    config = load_text(tmp_path, "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = e-d\n"
                                 "\tsocket_type = dgram\n\twait = yes\n\tport = 7\n"
                                 "\tbanner = /b1\n\tbanner_fail = /b3\n}\n")
    assert [s.id for s in config.services] == ["e-d"]
    assert any("service e-d: banner and banner_fail ignored: a datagram builtin's reply "
               "is its one datagram" in w for w in warnings(config)), warnings(config)
    stream = load_text(tmp_path, "service echo\n{\n\ttype = INTERNAL UNLISTED\n"
                                 "\tsocket_type = stream\n\twait = no\n\tport = 7\n"
                                 "\tbanner = /b1\n}\n")
    assert not any("ignored" in w for w in warnings(stream))
