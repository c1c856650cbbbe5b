"""hosts.allow/hosts.deny options at the daemon level: pyxinetd against the real xinetd
2.3.15.3 linked with Debian's libwrap.

Both daemons run the same scenario (tests/helpers/wrap_scenario.py) in private network
and mount namespaces, reading the tables at their real paths, /etc/hosts.allow and
/etc/hosts.deny (written into a private overlay of /etc), with a syslog socket bound
at /dev/log to catch libwrap's own lines. One run per daemon for the module; the
requests cover stream and datagram external servers, an internal stream service and a
redirect; the comparisons are byte for byte (what each client received, what `spawn`
commands wrote) and line for line (refusal lines, FAIL lines, libwrap's messages).

Known differences left out here (docs/compatibility.md): xinetd forks before checking
(START/EXIT around a refusal), `setenv` reaches ordinary servers, `user` takes effect,
`%p`/`%r` differ from run to run, and libwrap's lines go to the program log instead of
syslog (compared after moving them).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wrap_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


def _service(name: str, body: str, kind: str = "UNLISTED") -> str:
    return f"service {name}\n{{\n\ttype = {kind}\n\tbind = 127.0.0.1\n{body}}}\n"


def _stream(name: str, server: str, extra: str = "", user: str = "root") -> str:
    return _service(name, f"\tsocket_type = stream\n\twait = no\n\tuser = {user}\n"
                          f"\tserver = {{dir}}/{server}\n\tport = {{port:{name}}}\n{extra}")


SERVICES = (
    "defaults\n{\n\tlog_type = FILE {dir}/services.log\n\tlog_on_success = PID HOST EXIT\n"
    "\tlog_on_failure = HOST\n}\n"
    + _stream("probe", "probe", "\tenv = SVC=1\n")
    + _stream("inprobe", "in.probe", "\tnice = 2\n\tumask = 077\n")
    + _stream("crit", "in.probe", "\tlibwrap = in.crit\n")
    + _stream("err", "in.probe", "\tlibwrap = in.err\n")
    + _stream("lazy", "in.probe", "\tlibwrap = in.lazy\n")
    + _stream("bad", "in.probe", "\tlibwrap = in.bad\n")
    + _stream("nobody", "in.probe", "\tlibwrap = in.nobody\n\tumask = 027\n", "nobody")
    # The daemon name is the basename of server_args' first word.
    + _stream("nia", "probe", "\tflags = NAMEINARGS\n\tserver_args = /x/in.fake a b\n")
    + _service("echo", "\tid = echosvc\n\tsocket_type = stream\n\twait = no\n"
                       "\tport = {port:echo}\n\tenv = SVC=1\n"
                       # Not sent: the twist runs inside the check, before it.
                       "\tbanner_success = /mnt/banners/ok\n", "INTERNAL UNLISTED")
    + _service("redir", "\tsocket_type = stream\n\twait = no\n\tuser = root\n"
                        "\tport = {port:redir}\n\tredirect = 127.0.0.1 {port:inprobe}\n")
    + _service("uprobe", "\tsocket_type = dgram\n\twait = yes\n\tuser = root\n"
                         "\tserver = {dir}/probe\n\tlibwrap = udp.probe\n"
                         "\tport = {port:uprobe}\n")
    + _service("time", "\tid = stime\n\tsocket_type = stream\n\twait = no\n"
                       "\tport = {port:stime}\n", "INTERNAL UNLISTED")
    + _service("daytime", "\tid = sday\n\tsocket_type = stream\n\twait = no\n"
                          "\tport = {port:sday}\n", "INTERNAL UNLISTED")
    + _service("udgram", "\tsocket_type = dgram\n\twait = yes\n\tuser = root\n"
                         "\tserver = {dir}/probe\n\tlibwrap = udp.served\n"
                         "\tport = {port:udgram}\n\tenv = PROBE_OUT=/mnt/out-udgram\n")
    + _stream("twenv", "in.probe", "\tlibwrap = in.twenv\n\tenv = SVC=1\n")
    + _stream("nicesp", "in.probe", "\tlibwrap = in.nicesp\n\tnice = 3\n")
    + _stream("bann", "in.probe", "\tlibwrap = in.bann\n")
    + _stream("bann2", "in.probe", "\tlibwrap = in.bann2\n")
    + _stream("dbg", "in.probe", "\tlibwrap = in.dbg\n")
    + _stream("dbgtw", "in.probe", "\tlibwrap = in.dbgtw\n"))

ALLOW = (
    # %r and %p differ from run to run.
    "probe: ALL: spawn echo %a %A %c %d %h %H %n %N %s %u %% %h %c > /mnt/out1\n"
    "in.probe: ALL: umask 027: nice 5\n"
    'echo: ALL: setenv FOO bar: twist echo tw %d "$OUTER" "$SVC" "$FOO"\n'
    "redir: ALL: banners /mnt/banners\n"
    "in.err: ALL: deny: spawn echo after > /mnt/out9\n"
    # Line 1 of the pair compares the client's name: from then on %h shows it.
    "in.lazy: nosuch.invalid: deny\n"
    "in.lazy: ALL: spawn echo %h %c > /mnt/out2\n"
    "in.bad: ALL: nice x\n"
    # Commands run as the service's user, with the options before them applied.
    "in.nobody: ALL: setenv XV one: umask 077: spawn (id; umask; echo $XV) > /mnt/w/out4:"
    " setenv XV two: aclexec echo $XV > /mnt/w/out5\n"
    "udp.served: ALL: umask 027: nice 4: spawn echo %a %A %d %H > /mnt/out3\n"
    # No match where nsswitch.conf says `nis` for netgroup (Debian's default), but the
    # name is looked up for it.
    "in.fake: @grp: twist echo netgroup\n"
    "in.fake: ALL: twist echo fake %d %h \\\n  continued\n"
    # xinetd serves these builtins in the daemon process itself: a twist is an error
    # there (libwrap's "resident process"), once the daemon has checked one request
    # itself (the time request); the first would replace the daemon.
    "time: ALL: deny\n"
    "daytime: ALL: twist echo no\n"
    # The command's environment: the daemon's, plus the rule's setenv pairs.
    "in.twenv: ALL: setenv FOO bar: twist env | LC_ALL=C sort\n"
    # Commands run at the service's nice value, plus the rule's `nice` before them.
    "in.nicesp: ALL: spawn nice > /mnt/out6: nice 2: nice 1: spawn nice > /mnt/out7:"
    " aclexec nice > /mnt/out8\n"
    # The banner is expanded where its option stands: %h before the %n shows the address.
    "in.bann: ALL: banners /mnt/banners: spawn echo %n > /mnt/out10\n"
    # A %n in the banner looks the name up, for the rest of the banner too.
    "in.bann2: ALL: banners /mnt/banners\n"
    # Written at DEBUG, by xinetd without -d too.
    "in.dbgtw: ALL: severity debug: twist echo dbg\n")
DENY = ("udp.probe: ALL: severity warning\nin.crit: ALL: severity crit\n"
        "in.dbg: ALL: severity debug\n")

CASE = {
    "allow": ALLOW, "deny": DENY, "services": SERVICES,
    "banners": {"redir": "dos %d\r\nunix %h\n", "ok": "SUCCESS\n",
                "in.bann": "host %h\n", "in.bann2": "name %n then %h\n"},
    "etc": {"netgroup": "grp (localhost,,) (127.0.0.1,,)\n"},
    "requests": [{"port": "probe"}, {"port": "inprobe"}, {"port": "echo"},
                 {"port": "redir"}, {"port": "uprobe", "proto": "udp"}, {"port": "crit"},
                 {"port": "err"}, {"port": "lazy"}, {"port": "bad"}, {"port": "nia"}, {"port": "nobody"},
                 {"port": "udgram", "proto": "udp"}, {"port": "twenv"},
                 {"port": "nicesp"}, {"port": "bann"}, {"port": "bann2"},
                 {"port": "dbg"}, {"port": "dbgtw"},
                 # Last: from the first check xinetd makes itself, libwrap refuses
                 # every twist, in the daemon and in the children it forks after.
                 {"port": "stime"}, {"port": "sday"}],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_options"), require_xinetd(),
                             mount=True, case=CASE)


def answer(result: dict[str, Any], port: str) -> str:
    """What the client of the request to `port` received."""
    index = [request["port"] for request in CASE["requests"]].index(port)
    return str(result["answers"][index])


def refusals(program: str) -> list[str]:
    """The refusal lines without stamps; a CRITICAL line's pid -> N."""
    lines = [line.split(": ", 1)[1] for line in program.splitlines()
             if "libwrap refused" in line]
    return [re.sub(r"^CRITICAL: \d+ ", "CRITICAL: N ", line) for line in lines]


def libwrap_lines_of_xinetd(syslog: list[str]) -> list[str]:
    """libwrap's syslog messages as pyxinetd writes them in its program log."""
    out = []
    for message in syslog:
        text = message.split("xinetd: ", 1)[1]
        if text.startswith("error: "):
            out.append("ERROR: " + text[len("error: "):])
        elif text.startswith("twist "):
            # Its level is the rule's `severity` (the priority, `<PRI>`, says which).
            level = int(message[1:message.index(">")]) % 8
            out.append(("DEBUG: " if level == 7 else "INFO: ") + text)
    return out


def libwrap_lines_of_pyxinetd(program: str) -> list[str]:
    lines = [line.split(": ", 1)[1] for line in program.splitlines() if ": " in line]
    return [line for line in lines
            if line.startswith("ERROR: /etc/hosts.") or line.startswith("INFO: twist ")
            or line.startswith("DEBUG: twist ")]


def test_clients_receive_the_same_bytes(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    # `setenv` reaches pyxinetd's servers only (docs/compatibility.md).
    assert [a.replace("XV=two\n", "") for a in pyxinetd["answers"]] == xinetd["answers"]
    # What the rules asked for, seen by the clients.
    probe, inprobe, echo, redir = xinetd["answers"][:4]
    assert "SVC=1\n" in probe
    assert inprobe.startswith("uid=0 gid=0 umask=0027 nice=7 ")
    assert echo == "tw echo yes  bar\n"
    # The banner went out at its option: the %n after it had not looked the name up.
    assert answer(xinetd, "bann").startswith("host 127.0.0.1\r\nuid=0 ")
    assert answer(xinetd, "bann2").startswith("name localhost then localhost\r\nuid=0 ")
    # Two `nice` options add up, to the service's own.
    assert answer(xinetd, "nicesp").startswith("uid=0 gid=0 umask=0022 nice=6 ")
    assert redir.startswith("dos redir\r\r\nunix 127.0.0.1\r\nuid=0 gid=0 umask=0027 nice=7")
    # The daemon's environment and the setenv pair: no REMOTE_HOST, nothing of `env`.
    assert answer(xinetd, "twenv") == ("FOO=bar\nOUTER=yes\nPATH=/usr/bin:/bin\nPWD=/\n"
                                       f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}\n")


def test_spawn_expansions_are_the_same(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert pyxinetd["outs"] == xinetd["outs"]
    assert "out9" not in xinetd["outs"]     # the option error came first
    # The datagram server, which writes a file instead of answering.
    assert xinetd["outs"]["out-udgram"].startswith("uid=0 gid=0 umask=0027 nice=4 ")
    assert xinetd["outs"]["out4"].startswith("uid=65534(nobody) ")
    assert xinetd["outs"]["out4"].endswith("\n0077\none\n")
    assert xinetd["outs"]["out5"] == "two\n"
    # The service's nice (3), then the rule's `nice` options before the command.
    assert [xinetd["outs"][name] for name in ("out6", "out7", "out8")] == [
        "3\n", "6\n", "6\n"]
    words = xinetd["outs"]["out1"].split()
    # %h %c before the %n: the address; after it: the name (when the host has one).
    assert words[:3] == ["127.0.0.1", "127.0.0.1", "127.0.0.1"]


def test_refusal_lines_are_the_same(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert refusals(pyxinetd["program"]) == refusals(xinetd["program"])
    assert refusals(xinetd["program"]) == [
        "WARNING: libwrap refused connection to uprobe (libwrap=udp.probe) from 127.0.0.1",
        "CRITICAL: N {access_control} libwrap refused connection to crit (libwrap=in.crit) "
        "from 127.0.0.1",
        "INFO: libwrap refused connection to err (libwrap=in.err) from 127.0.0.1",
        "INFO: libwrap refused connection to bad (libwrap=in.bad) from 127.0.0.1",
        "DEBUG: libwrap refused connection to dbg (libwrap=in.dbg) from 127.0.0.1",
        "INFO: libwrap refused connection to stime (libwrap=time) from 127.0.0.1",
        "INFO: libwrap refused connection to sday (libwrap=daytime) from 127.0.0.1"]


def test_fail_lines_are_the_same(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results

    def fails(text: str) -> list[str]:
        return [line.split(": ", 1)[1] for line in text.splitlines() if "FAIL:" in line]
    assert fails(pyxinetd["services"]) == fails(xinetd["services"])


def test_libwrap_messages_are_the_same(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    expected = libwrap_lines_of_xinetd(xinetd["syslog"])
    assert libwrap_lines_of_pyxinetd(pyxinetd["program"]) == expected
    assert 'ERROR: /etc/hosts.allow, line 5: option "deny" must be at end' in expected
    assert 'ERROR: /etc/hosts.allow, line 8: bad nice value: "x"' in expected
    assert "ERROR: /etc/hosts.allow, line 15: twist option in resident process" in expected
    assert "DEBUG: twist 127.0.0.1 to echo dbg" in expected


# A client whose name has characters a shell could misread: `%` expansions make them
# safe, and libwrap makes them safe in its own copy of the name, so its `twist` line
# shows them as they are unless an expansion of the name came first.
ODD_NAME = "A$b`c`;d|e&f"     # its case is kept too
ODD_CASE = {
    "allow": ("in.named: ALL: twist echo [%h] [%n] [%c] [%s]\n"
              "in.plain: KNOWN: twist echo plain %a\n"
              "in.spawned: ALL: spawn echo %n > /mnt/out1: twist echo spawned\n"),
    "deny": "",
    "services": ("defaults\n{\n\tlog_type = FILE {dir}/services.log\n}\n"
                 + _stream("named", "in.probe", "\tlibwrap = in.named\n")
                 + _stream("plain", "in.probe", "\tlibwrap = in.plain\n")
                 + _stream("spawned", "in.probe", "\tlibwrap = in.spawned\n")),
    "etc": {"hosts": f"127.0.0.1\t{ODD_NAME}\n"},
    "requests": [{"port": "named"}, {"port": "plain"}, {"port": "spawned"}],
}


@pytest.fixture(scope="module")
def odd_name_results(tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_odd_name"),
                             require_xinetd(), mount=True, case=ODD_CASE)


def test_a_name_with_shell_characters(
        odd_name_results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = odd_name_results
    assert pyxinetd["answers"] == xinetd["answers"]
    assert pyxinetd["outs"] == xinetd["outs"] == {"out1": "A_b_c__d_e_f\n"}
    expected = libwrap_lines_of_xinetd(xinetd["syslog"])
    assert libwrap_lines_of_pyxinetd(pyxinetd["program"]) == expected
    assert expected == [
        "INFO: twist A_b_c__d_e_f to echo [127.0.0.1] [A_b_c__d_e_f] [A_b_c__d_e_f] "
        "[in.named@127.0.0.1]",
        f"INFO: twist {ODD_NAME} to echo plain 127.0.0.1",
        "INFO: twist A_b_c__d_e_f to echo spawned"]


# Host names are compared ignoring the case of A-Z only (strcasecmp in the C locale),
# by libwrap's patterns and by xinetd's only_from alike: `É` and `é` differ. Python's
# str.lower() folded them, so a pattern matched a host xinetd does not match.
FOLD_NAMES = ("wrap_host", "wrap_host_ascii", "wrap_domain", "wrap_domain_ascii",
              "list_host", "list_host_ascii", "list_domain", "list_domain_ascii")
FOLD_CASE = {
    "allow": ("in.wrap_host: hést.démo\nin.wrap_host_ascii: hÉST.DÉMO\n"
              "in.wrap_domain: .démo\nin.wrap_domain_ascii: .DÉMO\n"),
    "deny": "ALL: ALL\n",
    "services": ("defaults\n{\n\tlog_type = FILE {dir}/services.log\n}\n"
                 + "".join(_stream(n, "in.probe", f"\tlibwrap = in.{n}\n")
                           for n in FOLD_NAMES[:4])
                 + "".join(_stream(n, "probe", f"\tflags = NOLIBWRAP\n\tonly_from = {p}\n")
                           for n, p in zip(FOLD_NAMES[4:], ("hést.démo", "hÉST.DÉMO",
                                                             ".démo", ".DÉMO")))),
    "etc": {"hosts": "127.0.0.1\tHÉst.dÉmo\n"},
    "requests": [{"port": n} for n in FOLD_NAMES],
}


@pytest.fixture(scope="module")
def fold_results(tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_fold"),
                             require_xinetd(), mount=True, case=FOLD_CASE)


def test_a_name_pattern_folds_the_case_of_ascii_letters_only(
        fold_results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = fold_results
    served = [bool(answer) for answer in xinetd["answers"]]
    assert served == [False, True] * 4, xinetd["answers"]
    assert pyxinetd["answers"] == xinetd["answers"]
