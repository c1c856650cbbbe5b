"""`banners` and the option combinations admins write, pyxinetd against the real xinetd
2.3.15.3 linked with Debian's libwrap.

As tests/compat/test_wrap_options_oracle.py: both daemons run the same scenario
(tests/helpers/wrap_scenario.py) in private network and mount namespaces, with the
tables at /etc/hosts.allow and /etc/hosts.deny and a syslog socket at /dev/log for
libwrap's own lines. /etc/hosts gives the loopback address a name of the test's own,
so what `%n` and `%h` show is known. What libwrap was seen to do here: every `banners`
option sends its file where it stands (several options: several files, in order); a
rule cut short by an option error or a failed aclexec has sent the banners before it;
the rule a failed aclexec hands over to sends its banners like any matching rule,
names looked up; each line is ended with CRLF before its `%` sequences are expanded;
an unknown `%` letter and an unreadable banner folder are warned about.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wrap_scenario.py"
NAME = "wrapped.example.test"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


def _service(name: str, body: str) -> str:
    return f"service {name}\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n{body}}}\n"


def _stream(name: str) -> str:
    return _service(name, "\tsocket_type = stream\n\twait = no\n\tuser = root\n"
                          f"\tserver = {{dir}}/in.probe\n\tlibwrap = in.{name}\n"
                          f"\tport = {{port:{name}}}\n")


def _dgram(name: str) -> str:
    return _service(name, "\tsocket_type = dgram\n\twait = yes\n\tuser = root\n"
                          f"\tserver = {{dir}}/probe\n\tlibwrap = udp.{name}\n"
                          f"\tport = {{port:{name}}}\n\tenv = PROBE_OUT=/mnt/out-{name}\n")


STREAMS = ["two", "same", "order", "cut", "fall", "fall2", "missing", "pct", "combo",
           "denyf", "allowd", "tw", "late", "late2", "acld"]
DGRAMS = ["u1"]

SERVICES = ("defaults\n{\n\tlog_type = FILE {dir}/services.log\n"
            "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}\n"
            + "".join(_stream(name) for name in STREAMS)
            + "".join(_dgram(name) for name in DGRAMS))

ALLOW = (
    "in.two: ALL: banners /mnt/banners: banners /mnt/b2\n"
    "in.same: ALL: banners /mnt/banners: banners=/mnt/banners\n"
    # The first banner's %n looks the name up: the spawn after it shows the name.
    "in.order: ALL: banners /mnt/b2: spawn echo %h > /mnt/out-order: banners /mnt/banners\n"
    "in.cut: ALL: banners /mnt/banners: nice x\n"
    # A failed aclexec skips the rest of hosts.allow: hosts.deny's rule applies.
    "in.fall: ALL: aclexec /bin/false\n"
    "in.fall2: ALL: banners /mnt/banners: aclexec /bin/false: banners /mnt/b2\n"
    "in.missing: ALL: banners /nonexist: banners /mnt/banners\n"
    "in.pct: ALL: banners /mnt/banners: spawn echo %z %d > /mnt/out-pct\n"
    "in.combo: ALL: severity warning: banners /mnt/banners:"
    " spawn echo %d %n > /mnt/out-combo: deny\n"
    "in.tw: ALL: banners /mnt/banners: setenv FOO bar: twist echo $FOO %h\n"
    "in.late: ALL: deny: allow\n"
    "in.late2: ALL: twist echo a: banners /mnt/banners\n"
    "in.acld: ALL: aclexec /bin/true: banners /mnt/banners: deny\n"
    # A datagram's banner is not sent, but libwrap warns about its folder. (With a
    # banner file there, xinetd's child was seen to hang at times.)
    "udp.u1: ALL: banners /missing\n")
DENY = (
    "in.fall: ALL: banners /mnt/banners: allow\n"
    "in.fall2: ALL: banners /mnt/b3: allow\n"
    "in.denyf: ALL: severity notice: banners /mnt/banners: spawn echo j > /mnt/out-denyf\n"
    "in.allowd: ALL: spawn echo k > /mnt/out-allowd: keepalive: linger 5:"
    " banners /mnt/banners: allow\n")

CASE = {
    "allow": ALLOW, "deny": DENY, "services": SERVICES,
    "etc": {"hosts": f"127.0.0.1 {NAME} localhost\n"},
    "banners": {"in.two": "A1 %d\n", "in.same": "S %n\n", "in.order": "B %h\n",
                "in.cut": "C\n", "in.fall": "D %n %h %N %H\n", "in.fall2": "E1\n",
                "in.missing": "F\n", "in.pct": "P %z %d 100%\n", "in.combo": "W %h\n",
                "in.denyf": "J %d\n", "in.allowd": "K\n", "in.tw": "L %h\n",
                "in.late2": "X\n", "in.acld": "T\n"},
    "files": {"b2/in.two": "A2\n", "b2/in.order": "B2 %n\n", "b2/in.fall2": "E2\n",
              "b3/in.fall2": "E3 %n\n"},
    "requests": [{"port": name} for name in STREAMS]
                + [{"port": name, "proto": "udp"} for name in DGRAMS],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_banners"), require_xinetd(),
                             mount=True, case=CASE)


def answers(result: dict[str, Any]) -> dict[str, str]:
    """What each stream client received before the probe server's own output."""
    return {name: str(text).split("uid=", 1)[0]
            for name, text in zip(STREAMS, result["answers"])}


def served(result: dict[str, Any]) -> set[str]:
    return {name for name, text in zip(STREAMS, result["answers"]) if "uid=" in text}


def messages_of_xinetd(syslog: list[str]) -> list[str]:
    """libwrap's warnings and errors, as pyxinetd writes them in its program log."""
    out = []
    for message in syslog:
        text = message.split("xinetd: ", 1)[1]
        for word, level in (("warning: ", "WARNING: "), ("error: ", "ERROR: ")):
            if text.startswith(word):
                # A warning may end with the CR libwrap read after a `%`: the scenario
                # reads pyxinetd's log with universal newlines, where it ends the line.
                out.append(level + text[len(word):].rstrip("\r"))
    return out


def messages_of_pyxinetd(program: str) -> list[str]:
    lines = [line.split(": ", 1)[1] for line in program.splitlines() if ": " in line]
    return [line for line in lines
            if line.startswith(("WARNING: /etc/hosts.", "ERROR: /etc/hosts."))]


def test_clients_receive_the_same_banners(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert pyxinetd["answers"] == xinetd["answers"]
    seen = answers(xinetd)
    assert seen["two"] == "A1 in.two\r\nA2\r\n"
    assert seen["same"] == f"S {NAME}\r\n" * 2
    assert seen["order"] == f"B2 {NAME}\r\nB {NAME}\r\n"
    assert seen["cut"] == "C\r\n"
    # The fallback rule's banner looks the names up (the client's, the server's), as
    # any matching rule's does.
    assert seen["fall"] == f"D {NAME} {NAME} {NAME} {NAME}\r\n"
    assert seen["fall2"] == f"E1\r\nE2\r\nE3 {NAME}\r\n"
    assert seen["missing"] == "F\r\n"
    # `100%` before the newline: the `%` takes the CR that libwrap put there.
    assert seen["pct"] == "P  in.pct 100\n"
    assert seen["tw"] == "L 127.0.0.1\r\nbar 127.0.0.1\n"
    assert (seen["late"], seen["late2"]) == ("", "")
    assert served(xinetd) == {"two", "same", "order", "fall", "fall2", "missing", "pct",
                              "allowd"}


def test_commands_see_the_same_expansions(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results

    def spawned(result: dict[str, Any]) -> dict[str, str]:
        # What the datagram server wrote came late or not at all under xinetd.
        return {k: v for k, v in result["outs"].items() if not k.startswith("out-u")}

    assert spawned(pyxinetd) == spawned(xinetd)
    outs = xinetd["outs"]
    assert outs["out-order"] == f"{NAME}\n"
    assert outs["out-combo"] == f"in.combo {NAME}\n"
    assert (outs["out-denyf"], outs["out-allowd"]) == ("j\n", "k\n")


def test_refusals_are_the_same(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results

    def refusals(program: str) -> list[str]:
        return [line.split(": ", 1)[1] for line in program.splitlines()
                if "libwrap refused" in line]

    def fails(text: str) -> list[str]:
        return [line.split(": ", 1)[1] for line in text.splitlines() if "FAIL:" in line]

    assert refusals(pyxinetd["program"]) == refusals(xinetd["program"])
    assert fails(pyxinetd["services"]) == fails(xinetd["services"])
    assert "WARNING: libwrap refused connection to combo (libwrap=in.combo) from " \
           "127.0.0.1" in refusals(xinetd["program"])


def test_libwrap_warnings_are_the_same(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    expected = messages_of_xinetd(xinetd["syslog"])
    assert messages_of_pyxinetd(pyxinetd["program"]) == expected
    assert "WARNING: /etc/hosts.allow, line 7: /nonexist: No such file or directory" \
        in expected
    assert "WARNING: /etc/hosts.allow, line 8: unrecognized %z" in expected
    assert "WARNING: /etc/hosts.allow, line 8: unrecognized %" in expected
    assert "WARNING: /etc/hosts.allow, line 14: /missing: No such file or directory" \
        in expected
