"""scripts/diff-fuzz-config's filters: what they explain, and no more.

Two RPC services whose version ranges overlap on other sockets: both daemons keep both
(docs/compatibility.md, "Duplicates are detected without `bind` too"); pyxinetd warns at
load which versions the later one is not served at, in words ending `(as in xinetd
2.3.15.3)`. That warning is pyxinetd's alone, and no deviation: it must not explain a
difference of the service it names.

A log file that cannot be created fails its services at start in both daemons; xinetd's
`creation of default log failed` is no error of the configuration.

A bad value in the defaults stops xinetd; pyxinetd ignores that line and reads on
(docs/compatibility.md), so what it logs for a later service, in an included file too,
is no difference: its INFO `will use IPv6 or fallback to IPv4` as much as a warning.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from oracle import require_xinetd, run_xinetd_dump
from tests.scripts import load_script

pytestmark = pytest.mark.oracle

OVERLAP = """\
service rpca
{
\ttype        = RPC UNLISTED
\trpc_number  = 300123
\trpc_version = 1-2
\tbind        = 127.0.0.1
\tport        = 7001
\tsocket_type = stream
\tprotocol    = tcp
\twait        = no
\tuser        = nobody
\tserver      = /bin/cat
}

service rpcb
{
\ttype        = RPC UNLISTED
\trpc_number  = 300123
\trpc_version = 2-3
\tport        = 7002
\tsocket_type = stream
\tprotocol    = tcp
\twait        = no
\tuser        = nobody
\tserver      = /bin/cat
}
"""
WARNING = ("service: rpcb id: rpcb: RPC program 300123 version 2 (tcp) is also in the "
           "range of service: rpca id: rpca (/x.conf:1), and the portmapper holds one "
           "registration of each, for the service that registers it first (at a reload, "
           "a running one that holds it already); at start-up the earlier one: it is "
           "served at version 3 only (as in xinetd 2.3.15.3)")


LOG_IN_A_MISSING_FOLDER = """\
defaults
{
\tlog_type    = FILE /nonexistent-folder/x.log
}

service plain
{
\ttype        = UNLISTED
\tport        = 20131
\tsocket_type = stream
\tprotocol    = tcp
\twait        = no
\tuser        = nobody
\tserver      = /bin/cat
}
"""

BAD_DEFAULTS_THEN_INCLUDE = """\
defaults
{
\tlog_on_failure = HOST RECORD
}

include PART
"""

DUAL_STACK_SERVICE = """\
service dual
{
\ttype        = UNLISTED
\tport        = 20162
\tsocket_type = stream
\tprotocol    = tcp
\twait        = no
\tuser        = nobody
\tserver      = /bin/cat
\tflags       = IPv6 IPv4
}
"""


def _fuzzer() -> ModuleType:
    return load_script("diff-fuzz-config")


def _report(message: str) -> dict:  # type: ignore[type-arg]
    return {"status": 0, "services": [], "dropped": [],
            "diagnostics": [{"file": "/x.conf", "line": 15, "severity": "warning",
                             "message": message}]}


def test_the_overlap_warning_explains_no_difference_of_its_service() -> None:
    fuzz = _fuzzer()
    diff = "rpcb: port: xinetd 7002, pyxinetd 7003"
    assert not fuzz.announced(diff, _report(WARNING), {"rpcb": "rpcb"})
    line = f"pyxinetd only: WARNING: {diff} [file=/x.conf] [line=16]"
    assert not fuzz.announced_in_log(line, _report(WARNING), "")


def test_a_deviation_warning_still_explains_its_service() -> None:
    fuzz = _fuzzer()
    kept = ("service: rpcb id: rpcb is kept beside service: rpca id: rpca (/x.conf:1): "
            "same port/protocol, but port 0 is no port: each socket gets one of the "
            "kernel's choice (xinetd 2.3.15.3 would disable it: is unique but its "
            "identical to service: rpca id: rpca - DISABLING)")
    assert fuzz.announced("rpcb: port: xinetd 7002, pyxinetd 7003", _report(kept),
                          {"rpcb": "rpcb"})


def _both(fuzz: ModuleType, main: Path) -> tuple[object, dict]:  # type: ignore[type-arg]
    """xinetd's run and pyxinetd's check report of one file."""
    stubs = fuzz.server_paths(main.read_bytes())
    with tempfile.TemporaryDirectory(prefix="pyxinetd-dfuzz-") as tmp:
        empty = Path(tmp) / "empty.conf"
        empty.write_text("")
        report, error = fuzz.check_many([main], stubs, empty)[str(main)]
    assert report is not None, error
    return run_xinetd_dump(main, stubs=stubs), report


def test_overlapping_rpc_ranges_on_other_sockets_are_no_difference(tmp_path: Path) -> None:
    require_xinetd()
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text(OVERLAP)
    run, report = _both(fuzz, main)
    assert any("is also in the range of service: rpca" in d["message"]
               for d in report["diagnostics"])
    assert fuzz.differences(run, report, "") == []


def test_a_log_file_that_cannot_be_created_is_no_error_of_the_configuration(
        tmp_path: Path) -> None:
    require_xinetd()
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text(LOG_IN_A_MISSING_FOLDER)
    run, report = _both(fuzz, main)
    assert "ERROR: creation of default log failed" in run.log  # type: ignore[attr-defined]
    assert report["status"] == 0
    assert fuzz.differences(run, report, "") == []


def test_a_service_read_after_xinetd_stopped_at_the_defaults_is_no_difference(
        tmp_path: Path) -> None:
    require_xinetd()
    fuzz = _fuzzer()
    part = tmp_path / "part"
    part.write_text(DUAL_STACK_SERVICE)
    main = tmp_path / "xinetd.conf"
    main.write_text(BAD_DEFAULTS_THEN_INCLUDE.replace("PART", str(part)))
    run, report = _both(fuzz, main)
    assert "A fatal error was encountered while parsing the default section" in (
        run.log)  # type: ignore[attr-defined]
    assert any(d["severity"] == "info" and d["file"] == str(part)
               and d["message"] == "Service dual will use IPv6 or fallback to IPv4"
               for d in report["diagnostics"])
    assert fuzz.differences(run, report, "") == []


def test_a_line_one_short_pairs_with_a_counterpart_already_explained() -> None:
    # xinetd's `Bad socket type: stream\r` (a CRLF value) is explained by the suite
    # before the line numbers are compared, one short after a run-on scan: pyxinetd's
    # line about the same value, one line on, is its counterpart, not a difference.
    fuzz = _fuzzer()
    ours = ("pyxinetd only: ERROR: Bad socket type: stream\r (service s: expected stream, "
            "dgram, raw or seqpacket; service disabled) [file=/x.conf] [line=17]")
    theirs = "xinetd only: ERROR: Bad socket type: stream\r [file=/x.conf] [line=16]"
    assert fuzz.line_numbers_short([ours], [theirs]) == []
    assert fuzz.line_numbers_short([ours], []) == [ours]
    # Never with a line further on in xinetd's numbering than in pyxinetd's.
    later = theirs.replace("[line=16]", "[line=18]")
    assert fuzz.line_numbers_short([ours], [later]) == [ours]


def test_a_duplicate_of_a_service_xinetd_never_read_is_explained() -> None:
    # pyxinetd reads `bound`, which xinetd's skip after a missing `}` drops (a
    # deviation warning names it); a later service on its port is then a duplicate in
    # pyxinetd only. That follows from the deviation; an unrelated service does not.
    fuzz = _fuzzer()
    report = {"status": 1, "services": [], "dropped": [], "diagnostics": [
        {"file": "/x.conf", "line": 32, "severity": "warning",
         "message": "service bound starts here, where the lines skipped after the error "
                    "above end (xinetd 2.3.15.3 would skip on up to the next lone '}', "
                    "dropping this service)"},
        {"file": "/x.conf", "line": 44, "severity": "error",
         "message": "service: late id: late is unique but its identical to service: "
                    "bound id: bound - DISABLING (same port/protocol as /x.conf:32)"}]}
    names = {"late": "late", "other": "other"}
    assert fuzz.announced("late: activated by xinetd, not by pyxinetd", report, names)
    assert not fuzz.announced("other: activated by xinetd, not by pyxinetd", report,
                              names)
    line = "xinetd only: ERROR: Multi-threaded services cannot be intercepted: late"
    assert fuzz.announced_in_log(line, report, "")
    assert not fuzz.announced_in_log(line.replace("late", "other"), report, "")


def test_xinetd_words_from_its_stale_buffer_pair_with_nothing_after_attribute() -> None:
    # A lone name before the end of the file: xinetd's scan may run into older bytes of
    # its read buffer, and an `=` there gives `needs a space before operator`.
    fuzz = _fuzzer()
    place = "[file=/x.conf] [line=47]"
    ours = (f"pyxinetd only: ERROR: Nothing after attribute: \\ (expected '= VALUE' "
            f"after \\; service dropped) {place}")
    for theirs in (f"xinetd only: ERROR: Bad operator for attribute: \\ {place}",
                   f"xinetd only: ERROR: Attribute \\ needs a space before operator {place}"):
        assert fuzz.stale_buffer([theirs, ours]) == []
        # Only at the same place.
        elsewhere = theirs.replace("[line=47]", "[line=46]")
        assert fuzz.stale_buffer([elsewhere, ours]) == [elsewhere, ours]


def test_xinetd_naming_a_sensor_by_its_builtin_pairs_with_the_services_first_reason(
        tmp_path: Path) -> None:
    # pyxinetd drops a SENSOR service for a umask beyond 32 bits (documented); xinetd
    # takes that umask and disables the service later, naming it `sensor/raw`.
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text("service trap\n{\n\tflags = SENSOR\n\tsocket_type = raw\n"
                    "\tumask = 040000000000\n}\nservice plain\n{\n\tumask = 8\n}\n")
    report = {"dropped": [
        {"name": "trap", "id": "trap", "file": str(main), "line": 1, "reason": "..."},
        {"name": "plain", "id": "plain", "file": str(main), "line": 7, "reason": "..."}]}
    assert fuzz.sensors(report) == {"trap"}
    theirs = "xinetd only: ERROR: No such internal service: sensor/raw - DISABLING"
    ours = (f"pyxinetd only: ERROR: umask argument is invalid. (service trap: "
            f"'040000000000': expected an octal number 0-777; service disabled) "
            f"[file={main}] [line=5]")
    assert fuzz.first_reason_only([theirs, ours], fuzz.sensors(report)) == []
    other = ours.replace("service trap:", "service plain:")
    assert fuzz.first_reason_only([theirs, other], fuzz.sensors(report)) == [theirs, other]


def test_xinetd_nameinargs_line_without_a_name_pairs_with_the_services_first_reason(
        tmp_path: Path) -> None:
    fuzz = _fuzzer()
    main = tmp_path / "xinetd.conf"
    main.write_text("service bare\n{\n\tflags = NAMEINARGS\n\tport = 65536\n}\n"
                    "service with-args\n{\n\tflags = NAMEINARGS\n\tserver_args = x\n"
                    "\tport = 65536\n}\n")
    report = {"dropped": [
        {"name": "bare", "id": "bare", "file": str(main), "line": 1, "reason": "..."},
        {"name": "with-args", "id": "with-args", "file": str(main), "line": 6,
         "reason": "..."}]}
    assert fuzz.bare_nameinargs(report) == {"bare"}
    theirs = "xinetd only: ERROR: Must specify server args if using NAMEINARGS flag"
    ours = (f"pyxinetd only: ERROR: port number is invalid (service bare: '65536': "
            f"expected a number from 0 to 65535; service disabled) [file={main}] [line=4]")
    assert fuzz.first_reason_only([theirs, ours], frozenset(),
                                  fuzz.bare_nameinargs(report)) == []
    other = ours.replace("service bare:", "service with-args:")
    assert fuzz.first_reason_only([theirs, other], frozenset(),
                                  fuzz.bare_nameinargs(report)) == [theirs, other]


def test_a_fallback_line_of_a_service_rejected_earlier_by_the_other_daemon_pairs() -> None:
    # TRAFFIC from the defaults: xinetd disables the service first, before announcing
    # its fallback to IPv4; pyxinetd drops the flag, announces it, then finds no user.
    fuzz = _fuzzer()
    theirs = ("xinetd only: ERROR: Service miss should not have TRAFFIC flag set since "
              "its not redirected")
    ours = ("pyxinetd only: ERROR: Service miss missing attribute user - DISABLING "
            "[file=/x.conf] [line=5]")
    info = ("pyxinetd only: INFO: Service miss will use IPv6 or fallback to IPv4 "
            "[file=/x.conf] [line=5]")
    assert fuzz.first_reason_only([theirs, ours, info]) == []
    # Alone (no pair of first reasons for the service), the line is a difference.
    assert fuzz.first_reason_only([info]) == [info]
    other = info.replace("Service miss", "Service kept")
    assert fuzz.first_reason_only([theirs, ours, other]) == [other]


def test_a_deny_time_beyond_32_bits_is_the_documented_wrap() -> None:
    # xinetd's dump shows the low 32 bits; pyxinetd keeps the number (found with seed
    # 7202 of --habits).
    fuzz = _fuzzer()
    assert fuzz.wide_deny_time("trap: deny_time: xinetd 0, pyxinetd 4294967296")
    assert fuzz.wide_deny_time("trap: deny_time: xinetd 5, pyxinetd 4294967301")
    assert not fuzz.wide_deny_time("trap: deny_time: xinetd 0, pyxinetd 5")
    assert not fuzz.wide_deny_time("trap: deny_time: xinetd 1, pyxinetd 4294967296")


def test_a_syntax_error_explains_the_entries_around_it_only() -> None:
    # A stray inetd.conf line at the end of a file once explained every difference of
    # the file: a real one in its first service went unreported.
    fuzz = _fuzzer()
    report = {"status": 0, "dropped": [], "services": [
        {"id": "first", "name": "first", "origin": {"file": "/x.conf", "line": 1}},
        {"id": "before", "name": "before", "origin": {"file": "/x.conf", "line": 20}},
        {"id": "after", "name": "after", "origin": {"file": "/x.conf", "line": 40}},
        {"id": "last", "name": "last", "origin": {"file": "/x.conf", "line": 60}}],
        "diagnostics": [{"file": "/x.conf", "line": 30, "severity": "error",
                         "message": "missing service keyword (expected 'service NAME', "
                                    "found 'telnet'; lines up to the next lone '}' are "
                                    "skipped)"}]}
    names = {n: n for n in ("first", "before", "after", "last")}
    diff = "{}: activated by pyxinetd, not by xinetd"
    assert fuzz.announced(diff.format("after"), report, names)
    assert fuzz.announced(diff.format("before"), report, names)
    assert not fuzz.announced(diff.format("first"), report, names)
    assert not fuzz.announced(diff.format("last"), report, names)
    assert fuzz.announced("verdict: xinetd errors, pyxinetd status 0", report, names)
