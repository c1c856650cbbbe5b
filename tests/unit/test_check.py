"""pyxinetd check: the report built from a Configuration, and the command end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path


from pyxinetd.check import (
    STATUS_DROPPED,
    STATUS_OK,
    STATUS_UNREADABLE,
    check_report,
    exit_status,
    render_text,
    run_check,
)
from pyxinetd.config.diagnostics import Diagnostic, Severity
from pyxinetd.config.model import (
    DEFAULT_CPS,
    AddressEntry,
    Configuration,
    Defaults,
    DroppedEntry,
    FileTarget,
    Origin,
    Rlimits,
    ServiceConfig,
    SocketType,
    SyslogTarget,
    TimeWindow,
)

SERVICE_KEYS = {
    "name", "id", "type", "flags", "socket_type", "protocol", "port", "wait", "user",
    "group", "server", "server_args", "instances", "per_source", "cps", "bind", "only_from",
    "no_access", "access_times", "redirect", "env", "passenv", "nice", "umask", "log_type",
    "log_on_success", "log_on_failure",
}


def make_service(**changes: object) -> ServiceConfig:
    base = ServiceConfig(
        name="echo", id="echo-stream", origin=Origin("/etc/xinetd.d/echo", 3),
        types=frozenset({"UNLISTED"}), flags=frozenset({"IPv4", "REUSE"}),
        socket_type=SocketType.STREAM, protocol="tcp", protocol_number=6, port=2007,
        wait=False, user=65534, user_name="nobody", group=65534, groups=False,
        supplementary_groups=(), server="/bin/cat", server_argv=("cat", "-u"),
        environment=("PATH=/bin",), passenv=None, env=("A=1", "B=x=y"),
        instances=None, per_source=4, cps=DEFAULT_CPS, max_load=None, bind=None,
        family=socket.AF_INET, v6only=False, only_from=None, no_access=(),
        access_times=(TimeWindow(8 * 60, 17 * 60 + 30),), redirect=None, banner=None,
        banner_success=None, banner_fail=None, umask=0o22, nice=None, rlimits=Rlimits(),
        log_type=SyslogTarget("daemon"), log_on_success=frozenset({"PID", "HOST"}),
        log_on_failure=frozenset({"HOST"}), deny_time=0, libwrap=None, rpc_version=None,
        rpc_number=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def make_config(*services: ServiceConfig, dropped: tuple[DroppedEntry, ...] = (),
                diagnostics: tuple[Diagnostic, ...] = ()) -> Configuration:
    return Configuration(path="/etc/xinetd.conf", defaults=Defaults(), services=services,
                         dropped=dropped, diagnostics=diagnostics,
                         files=("/etc/xinetd.conf",))


def test_report_has_every_documented_field_with_defaults_resolved() -> None:
    report = check_report(make_config(make_service()))
    svc = report["services"][0]
    assert SERVICE_KEYS <= set(svc)
    assert svc["type"] == ["UNLISTED"]
    assert svc["flags"] == ["REUSE", "IPv4"]          # xinetd's canonical order
    assert svc["cps"] == [50, 10]
    assert svc["instances"] is None and svc["per_source"] == 4
    assert svc["argv0"] == "cat" and svc["server_args"] == ["-u"]
    assert svc["env"] == {"A": "1", "B": "x=y"}
    assert svc["access_times"] == ["08:00-17:30"]
    assert svc["log_type"] == {"kind": "syslog", "facility": "daemon", "level": "info"}
    assert svc["log_on_success"] == ["HOST", "PID"]
    assert svc["family"] == "inet"
    assert svc["origin"] == {"file": "/etc/xinetd.d/echo", "line": 3}
    assert report["dropped"] == [] and report["diagnostics"] == []
    assert report["status"] == STATUS_OK
    json.dumps(report)                                 # serialisable as is


def test_only_from_absent_and_empty_are_distinct() -> None:
    absent = check_report(make_config(make_service(only_from=None)))["services"][0]
    empty = check_report(make_config(make_service(only_from=())))["services"][0]
    listed = check_report(make_config(make_service(
        only_from=(AddressEntry("127.0.0.1", "numeric"),))))["services"][0]
    assert absent["only_from"] is None
    assert empty["only_from"] == []
    assert listed["only_from"] == ["127.0.0.1"]


def test_redirect_and_file_log_in_report() -> None:
    svc = make_service(redirect=("10.0.0.1", 25), server=None, server_argv=(),
                       log_type=FileTarget("/var/log/x", 1000, 2000, common=True))
    out = check_report(make_config(svc))["services"][0]
    assert out["redirect"] == ["10.0.0.1", 25]
    assert out["server"] is None and out["argv0"] is None and out["server_args"] == []
    assert out["log_type"] == {"kind": "file", "path": "/var/log/x", "soft_limit": 1000,
                               "hard_limit": 2000, "common": True}


def test_exit_status_follows_errors_not_warnings() -> None:
    warn = Diagnostic(Severity.WARNING, "/f", 2, "bad service attribute: foo")
    err = Diagnostic(Severity.ERROR, "/f", 3, "Unknown user: nosuch")
    assert exit_status(make_config(make_service(), diagnostics=(warn,))) == STATUS_OK
    assert exit_status(make_config(diagnostics=(warn, err))) == STATUS_DROPPED
    dropped = DroppedEntry("x", "x", "/f", 3, "Unknown user: nosuch")
    assert exit_status(make_config(dropped=(dropped,))) == STATUS_DROPPED


def test_text_has_one_block_per_service_then_diagnostics() -> None:
    diag = Diagnostic(Severity.WARNING, "/etc/xinetd.d/echo", 9, "bad service attribute: foo")
    debug = Diagnostic(Severity.DEBUG, "/etc/xinetd.conf", 1, "Reading included file")
    dropped = DroppedEntry("daytime", "daytime", "/etc/xinetd.d/daytime", 4,
                           "Unknown user: nosuch")
    text = render_text(make_config(make_service(), make_service(name="time", id="time"),
                                   dropped=(dropped,), diagnostics=(diag, debug)))
    lines = text.splitlines()
    assert lines[0] == "service echo (id echo-stream)  # /etc/xinetd.d/echo:3"
    assert any(line.split() == ["argv", "cat", "-u"] for line in lines)
    assert any(line.startswith("service time (id time)") for line in lines)
    assert "/etc/xinetd.d/daytime:4: dropped: daytime: Unknown user: nosuch" in lines
    assert "/etc/xinetd.d/echo:9: warning: bad service attribute: foo" in lines
    assert "Reading included file" not in text
    assert lines[-1] == "/etc/xinetd.conf: configuration test failed"


# --------------------------------------------------------------------------- end to end

GOOD = """\
defaults
{
    instances = 30
}

service testsrv
{
    type        = UNLISTED
    socket_type = stream
    protocol    = tcp
    port        = 20100
    wait        = no
    user        = nobody
    server      = /bin/cat
    server_args = a1 a2
    only_from   =
    frobnicate  = 1
}
"""


def test_run_check_json_on_a_real_file(tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(GOOD)
    output, status = run_check(str(conf), as_json=True)
    report = json.loads(output)
    assert status == STATUS_OK, output
    [svc] = report["services"]
    assert (svc["name"], svc["id"], svc["port"], svc["wait"]) == ("testsrv", "testsrv", 20100,
                                                                 False)
    assert svc["user"] == 65534 and svc["server"] == "/bin/cat"
    assert svc["server_args"] == ["a1", "a2"] and svc["instances"] == 30
    assert svc["cps"] == [50, 10] and svc["only_from"] == []
    assert any(d["severity"] == "warning" and d["line"] == 17 for d in report["diagnostics"])


def test_run_check_reports_dropped_service(tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(GOOD.replace("user        = nobody", "user = no-such-user-here"))
    output, status = run_check(str(conf), as_json=True)
    report = json.loads(output)
    assert status == STATUS_DROPPED
    assert report["services"] == []
    assert [d["name"] for d in report["dropped"]] == ["testsrv"]
    text, status = run_check(str(conf))
    assert status == STATUS_DROPPED and "no-such-user-here" in text


def test_services_switched_off_on_purpose_do_not_fail(tmp_path: Path) -> None:
    service = ("service {name}\n{{\n    type = UNLISTED\n    socket_type = stream\n"
               "    port = {port}\n    wait = no\n    user = nobody\n    server = /bin/cat\n"
               "{extra}}}\n")
    conf = tmp_path / "xinetd.conf"
    conf.write_text("defaults\n{\n    disabled = other\n}\n"
                    + service.format(name="first", port=20100, extra="    disable = yes\n")
                    + service.format(name="other", port=20101, extra=""))
    output, status = run_check(str(conf), as_json=True)
    report = json.loads(output)
    assert sorted(d["name"] for d in report["dropped"]) == ["first", "other"], output
    assert report["services"] == [] and status == STATUS_OK


def test_unreadable_main_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.conf")
    text, status = run_check(missing)
    assert status == STATUS_UNREADABLE and missing in text
    output, status = run_check(missing, as_json=True)
    report = json.loads(output)
    assert status == STATUS_UNREADABLE and report["diagnostics"][0]["severity"] == "critical"


def test_cli_check_exit_statuses(tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(GOOD)
    env = dict(os.environ)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pyxinetd", "check", *args],
                              capture_output=True, text=True, env=env, timeout=60, check=False)

    done = cli("-f", str(conf))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("service testsrv (id testsrv)")
    done = cli("-f", str(conf), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["services"][0]["port"] == 20100
    assert cli("-f", str(tmp_path / "missing")).returncode == 2


def test_cli_check_with_the_daemons_options_says_whether_it_would_start(
        tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text(GOOD)
    off = tmp_path / "off.conf"
    off.write_text(GOOD.replace("service testsrv\n{\n", "service testsrv\n{\n    disable = yes\n"))

    def cli(options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pyxinetd", "check", "--daemon-options",
                               options], capture_output=True, text=True, timeout=60,
                              check=False)

    # The options' -f is what is checked.
    done = cli(f"-stayalive -f {conf} -limit 5")
    assert done.returncode == 0 and "service testsrv" in done.stdout, done
    # Options the daemon refuses: it would not start.
    done = cli(f"-f {conf} -limit x")
    assert done.returncode == 2 and "option -limit" in done.stderr, done
    done = cli("-stayalive -f")
    assert done.returncode == 2 and "-f needs an argument" in done.stderr, done
    # Nothing to activate: the daemon exits, unless -stayalive keeps it waiting.
    done = cli(f"-f {off}")
    assert done.returncode == 2, done
    assert "no service to activate, and without -stayalive (or -dontfork) the daemon exits" in done.stdout
    assert cli(f"-stayalive -f {off}").returncode == 0
    # Split where the shell splits an unquoted $XINETD_OPTS (blanks and newlines), not at
    # every Unicode space: `-stayalive<NBSP>-f` is one word there, an unknown option.
    done = cli(f"-stayalive\u00a0-f {conf}")
    assert done.returncode == 2 and "unexpected argument" in done.stderr, done
    assert cli(f"\t-stayalive\n-f  {conf} ").returncode == 0
    # -version: the daemon prints its version and exits, serving nothing.
    done = cli(f"-f {conf} -version")
    assert done.returncode == 2, done
    assert done.stderr == "pyxinetd: -version: the daemon prints its version and exits\n"
    # A -filelog the daemon could not open (msg_init failed): it would exit at once. The
    # check neither creates nor writes the log.
    done = cli(f"-f {conf} -filelog {tmp_path}/gone/x.log")
    assert done.returncode == 2, done
    assert done.stderr == ("pyxinetd: msg_init failed: can't open log file "
                           "(No such file or directory)\n")
    done = cli(f"-f {conf} -filelog {tmp_path}")
    assert done.returncode == 2 and "(Is a directory)" in done.stderr, done
    assert cli(f"-f {conf} -filelog {tmp_path}/new.log").returncode == 0
    assert not (tmp_path / "new.log").exists()


def _documented_fields(section: str) -> set[str]:
    """Field names in the first column of a table under `## section` of docs/check-json.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "check-json.md").read_text()
    body = text.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            cell = line.split("|")[1]
            names.update(part.strip(" `") for part in cell.split(","))
    return names


def test_json_fields_match_the_documentation() -> None:
    dropped = DroppedEntry("x", "x", "/f", 1, "why")
    diag = Diagnostic(Severity.WARNING, "/f", 2, "hmm")
    report = check_report(make_config(make_service(), dropped=(dropped,), diagnostics=(diag,)))
    assert set(report["services"][0]) == _documented_fields("services[]")
    assert set(report["dropped"][0]) == _documented_fields("dropped[]")
    assert set(report["diagnostics"][0]) == _documented_fields("diagnostics[]")


def test_the_documented_example_is_what_check_prints(tmp_path: Path) -> None:
    # docs/check-json.md's Example, run with /etc/ moved under tmp_path: every field it
    # shows has the value shown, in the order shown.
    text = (Path(__file__).resolve().parents[2] / "docs" / "check-json.md").read_text()
    example = text.split("## Example", 1)[1]
    service_text = example.split("```\n", 2)[1]
    shown_json = example.split("```json\n", 1)[1].split("```", 1)[0]
    etc = f"{tmp_path}/etc/"
    (tmp_path / "etc" / "xinetd.d").mkdir(parents=True)
    (tmp_path / "etc" / "xinetd.conf").write_text(f"includedir {etc}xinetd.d\n")
    (tmp_path / "etc" / "xinetd.d" / "echo").write_text(service_text)
    output, status = run_check(f"{etc}xinetd.conf", as_json=True)
    shown = json.loads(shown_json.replace("/etc/", etc))
    report = json.loads(output)
    assert status == shown["status"]
    [shown_service] = shown.pop("services")
    [service] = report.pop("services")
    assert shown_service.pop("...") == "..."
    assert list(service)[:len(shown_service)] == list(shown_service)
    assert {key: service[key] for key in shown_service} == shown_service
    assert report == shown


def test_cli_check_warns_of_a_tcpmux_service_no_client_can_reach(tmp_path: Path) -> None:
    conf = tmp_path / "xinetd.conf"
    conf.write_text("service helper\n{\n\ttype = TCPMUX UNLISTED\n\tsocket_type = stream\n"
                    "\twait = no\n\tuser = nobody\n\tserver = /bin/cat\n}\n")
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == STATUS_OK, done.stderr
    assert (f"{conf}:1: warning: service helper: type TCPMUX, but no tcpmux service is "
            "enabled") in done.stdout + done.stderr
