"""What -inetd_compat serves from /etc/inetd.conf: pyxinetd against the real xinetd 2.3.15.3.

The same scenario for both daemons (tests/helpers/inetd_serve_scenario.py, each in its
own network and mount namespace, with a private /etc): the internal services on
tcp/tcp6 and udp/udp6 lines, external servers run as `nobody`, `user.group` and
`user:group`, `wait` stream and dgram servers, a `nowait.N` rate, a tcp6-only line, a
server whose argv[0] is not its file name, one without an argv field, lines both
daemons reject between good ones, and a hosts.deny naming builtins and servers. What every client got, what the report servers say
of their uid, gid, groups, argv, environment and umask, and the service log must be
xinetd's, but for the deviations docs/compatibility.md lists under inetd.conf, each
checked here for what pyxinetd does instead.

xinetd runs straight through the dynamic loader, not through the oracle's /bin/sh
wrapper, which would add PWD to the servers' environment and reorder it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compat.test_environment_oracle import direct_command
from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "inetd_serve_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

# Clients whose service is one of the documented deviations (compared on their own).
DEVIATING_CLIENTS = re.compile(r"discard/stream/|six-only/::1|bad-server|rated/")
# Services whose log lines are those deviations: discard (xinetd refuses it), the
# tcp6-only line, a server that is not there, `user:group`, the rate.
DEVIATING_LOG = re.compile(r": (discard|six-only|bad-server|rep-colon|rated)\b")


def comparable_log(lines: list[str]) -> list[str]:
    """The service log lines both daemons should write alike: builtins under xinetd's
    ids (it names the stream ones `NAME-dgram` too), chargen's end as a plain exit (a
    forked chargen of xinetd's that writes on after its client left dies of SIGPIPE or
    sees EPIPE first, by a race), the deviating services left out."""
    kept = []
    for line in lines:
        if DEVIATING_LOG.search(line):
            continue
        line = re.sub(r"^(\w+: \w+)-stream\b", r"\1-dgram", line)
        kept.append(re.sub(r"^(EXIT: chargen-dgram) signal=13\b", r"\1 status=0", line))
    return sorted(kept)


def run_both(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    (root / "x").mkdir()
    (root / "p").mkdir()
    return (run_scenario(SCENARIO, root / "x", *direct_command(require_xinetd()), mount=True),
            run_scenario(SCENARIO, root / "p", sys.executable, "-m", "pyxinetd", mount=True))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return run_both(tmp_path_factory.mktemp("inetd-serve"))


def test_inetd_conf_clients_get_what_xinetd_gives(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert sorted(pyxinetd["clients"]) == sorted(xinetd["clients"])
    for client, got in xinetd["clients"].items():
        if not DEVIATING_CLIENTS.search(client):
            assert pyxinetd["clients"][client] == got, client
    # What the comparison covers: tcp6/udp6 twins served over ::1, rejected lines refused.
    assert xinetd["clients"]["echo/stream/::1"] == "b'hello\\n' EOF"
    assert xinetd["clients"]["echo/dgram/::1"] == "b'echo\\n'"
    assert xinetd["clients"]["after-bad"] == "b'after\\n' EOF"
    assert xinetd["clients"]["time/stream/::1"] == "<4 bytes> EOF"
    # hosts.deny names `daytime` (the builtin's service name: refused) and the ids
    # `time-stream` and `time-dgram` (no libwrap name: served) and external servers'
    # names (NOLIBWRAP: served).
    assert xinetd["clients"]["daytime/stream/127.0.0.1"] == "b'' EOF"
    assert xinetd["clients"]["wait-stream"] == "b'pid=N\\nline\\n' EOF"
    assert xinetd["clients"]["wait-dgram"].startswith("b'pid=N got=gram")
    # An entry without an argv field, as `user.group`: the group first, then the user's.
    assert xinetd["clients"]["id-plain"] == (
        "b'uid=4242(inetdprobe) gid=4244(probetwo) groups=4244(probetwo),"
        "4242(inetdprobe),4243(probeone)\\n' EOF")
    for rejected in ("bad-user", "bad-numeric", "bad-group"):
        assert xinetd["clients"][rejected] == "connect ConnectionRefusedError", rejected


def test_inetd_conf_servers_run_as_under_xinetd(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    for name in ("rep-nobody", "rep-dot", "rep-argv0"):
        assert "error" not in xinetd["reports"][name], name
        assert pyxinetd["reports"][name] == xinetd["reports"][name], name
    # What the comparison covers: the group of `user.group`, the user's other groups
    # (groups = yes), an argv[0] that is not the server's file name.
    dot = xinetd["reports"]["rep-dot"]
    assert (dot["uid"][0], dot["gid"][0]) == (4242, 4243)
    assert dot["groups"] == [4242, 4243, 4244]
    assert xinetd["reports"]["rep-nobody"]["groups"] == [4244, 65534]
    assert xinetd["reports"]["rep-argv0"]["argv"][:2] == ["reporter", "-S"]


def test_inetd_conf_log_is_xinetds(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert comparable_log(pyxinetd["log"]) == comparable_log(xinetd["log"])
    assert "START: wait-stream pid=N from=<no address>" in xinetd["log"]
    assert "FAIL: daytime-dgram libwrap from=::1" in xinetd["log"]    # the stream one


def test_inetd_conf_deviations_are_the_documented_ones(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    xc, pc = xinetd["clients"], pyxinetd["clients"]
    # discard is served (xinetd: `service discard not supported`).
    assert xc["discard/stream/127.0.0.1"] == "connect ConnectionRefusedError"
    assert pc["discard/stream/127.0.0.1"] == pc["discard/stream/::1"] == "b'' EOF"
    # A tcp6 line of its own listens on IPv6 only (xinetd: `Protocol tcp6 not in
    # /etc/protocols`).
    assert xc["six-only/::1"] == "connect ConnectionRefusedError"
    assert pc["six-only/::1"] == "b'six\\n' EOF"
    assert pc["six-only/127.0.0.1"] == "connect ConnectionRefusedError"
    # A server that is not there is refused at load (xinetd accepts, then fails to exec).
    assert xc["bad-server"] == "b'' EOF"
    assert pc["bad-server"] == "connect ConnectionRefusedError"
    # `user:group` runs as `user.group` does (xinetd: `Unknown user: inetdprobe:probeone`).
    assert xinetd["reports"]["rep-colon"] == {"error": "ConnectionRefusedError"}
    assert pyxinetd["reports"]["rep-colon"] == xinetd["reports"]["rep-dot"]
    # nowait.N pauses the service after more than N connections in a second (xinetd:
    # `Bad value for wait`, the suffix ignored).
    rated = [pc[f"rated/{n}"] for n in range(4)]
    assert [xc[f"rated/{n}"] for n in range(4)] == ["b'rated\\n' EOF"] * 4
    assert rated[:2] == ["b'rated\\n' EOF"] * 2
    assert not [r for r in rated[2:] if "rated" in r]
    assert xinetd["program"] == []
    assert pyxinetd["program"] == ["ERROR: Deactivating service rated due to excessive "
                                   "incoming connections.  Restarting in 600 seconds."]


def test_inetd_conf_entries_take_the_defaults_xinetd_gives_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INETD_SERVE_DEFAULTS", "more")
    xinetd, pyxinetd = run_both(tmp_path)
    # A tcp6 line with the defaults' IPv4 bind listens on that address, with a warning
    # (compatibility.md, "A bind address is never dropped for the family flag").
    deviating = re.compile(DEVIATING_CLIENTS.pattern + "|six-only/127.0.0.1")
    for client, got in xinetd["clients"].items():
        if not deviating.search(client):
            assert pyxinetd["clients"][client] == got, client
    for name in ("rep-nobody", "rep-dot", "rep-argv0"):
        assert "error" not in xinetd["reports"][name], name
        assert pyxinetd["reports"][name] == xinetd["reports"][name], name
    assert comparable_log(pyxinetd["log"]) == comparable_log(xinetd["log"])
    # What the comparison covers: bind, umask, passenv and the log flags reach the
    # entries; env, groups = no, nice and the rlimits do not.
    assert xinetd["clients"]["echo/stream/::1"] == "connect ConnectionRefusedError"
    dot = xinetd["reports"]["rep-dot"]
    assert dot["umask"] == 0o027
    assert sorted(dot["environ"]) == ["LC_CTYPE", "PATH", "PROBE_MARK", "REMOTE_HOST"]
    assert dot["groups"] == [4242, 4243, 4244]
    assert dot["nice"] == 0 and dot["rlimits"]["files"][0] != 77
    assert any(line.startswith("EXIT: rep-dot status=0 pid=N duration=N")
               for line in xinetd["log"])
