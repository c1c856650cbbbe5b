"""TCP Wrappers on stream `wait = yes` services: pyxinetd against the real xinetd
2.3.15.3 linked with Debian's libwrap.

Such a server accepts its clients itself, so the request has no client address when
it is judged; xinetd still asks libwrap, and the rules that need no address decide
(`in.daemon: ALL`, `ALL: UNKNOWN`). pyxinetd once skipped TCP Wrappers for this
model altogether: a deny-by-default hosts.deny served identd `-w` to everyone.

Both daemons run the same scenario (tests/helpers/wrap_scenario.py) in private network
and mount namespaces with the tables at their real paths. xinetd judges a refused
request again and again (the connection stays queued) until its cps limit closes the
socket and resets the client; pyxinetd accepts and closes the refused connection
(docs/compatibility.md): the clients' bytes are compared as "served or not".
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wrap_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

# The wait = yes server: accepts one client on descriptor 0 and greets it.
ACCEPTOR = ("import socket\n"
            "listener = socket.socket(fileno=0)\n"
            "conn, _ = listener.accept()\n"
            "conn.sendall(b'served\\n')\n"
            "conn.close()\n")


def _waiting(name: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n"
            f"\tsocket_type = stream\n\twait = yes\n\tuser = root\n"
            f"\tserver = /usr/bin/python3\n\tserver_args = {{dir}}/acceptor.py\n"
            f"\tlibwrap = in.{name}\n\tport = {{port:{name}}}\n}}\n")


CASE = {
    "allow": "in.wallow: ALL\n",
    # libwrap finds no client address on the listening socket and stops there: the
    # server's address is unknown too, so a rule naming it does not match.
    "deny": ("in.wdeny: ALL\nin.wunknown: UNKNOWN\nin.wallow: ALL\n"
             "in.wother@127.0.0.1: ALL\n"),
    "services": ("defaults\n{\n\tlog_type = FILE {dir}/services.log\n"
                 "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}\n"
                 + _waiting("wdeny") + _waiting("wunknown") + _waiting("wallow")
                 + _waiting("wother")),
    "files": {"acceptor.py": ACCEPTOR},
    "requests": [{"port": "wdeny", "pause": 1.5}, {"port": "wunknown", "pause": 1.5},
                 {"port": "wallow"}, {"port": "wother"}],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_wait"), require_xinetd(),
                             mount=True, case=CASE)


def refusals(program: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in program.splitlines()
            if "libwrap refused" in line]


def test_tables_decide_whether_a_wait_server_starts(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for result in results:
        served = [answer == "served\n" for answer in result["answers"]]
        assert served == [False, False, True, True], result["answers"]


def test_each_refusal_is_logged_in_xinetds_words(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    expected = [f"INFO: libwrap refused connection to {name} (libwrap=in.{name}) "
                "from <no address>" for name in ("wdeny", "wunknown")]
    # xinetd repeats its line for as long as the connection stays queued.
    assert sorted(set(refusals(xinetd["program"]))) == expected
    assert refusals(pyxinetd["program"]) == expected


def test_the_fail_lines_are_xinetds(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results

    def fails(log: str) -> list[str]:
        return [line.split(": ", 1)[1] for line in log.splitlines() if ": FAIL: " in line]
    assert fails(pyxinetd["services"]) == ["FAIL: wdeny libwrap from=<no address>",
                                           "FAIL: wunknown libwrap from=<no address>"]
    assert set(fails(pyxinetd["services"])) <= set(fails(xinetd["services"]))


# pyxinetd alone: rules whose verdict waits (an aclexec check), and a twist, which
# xinetd runs on the listening socket (its output fails, the request is judged again
# until cps trips) and pyxinetd on the queued connection.
WAITED = dict(CASE, deny="in.wdeny: ALL: aclexec /bin/true\n"
                         "in.wunknown: ALL: twist echo twisted\n",
              allow="in.wallow: ALL: aclexec /bin/true\n")


@pytest.fixture(scope="module")
def waited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("wrap_wait_waited")
    (folder / "case.json").write_text(json.dumps(WAITED))
    return run_scenario(SCENARIO, folder / "case.json", sys.executable, "-m", "pyxinetd",
                        mount=True)


def test_a_verdict_that_waits_for_an_aclexec_check_decides(
        waited: dict[str, Any]) -> None:
    wdeny, _, wallow, wother = waited["answers"]
    assert (wdeny, wallow, wother) == ("", "served\n", "served\n")
    assert refusals(waited["program"]) == [
        "INFO: libwrap refused connection to wdeny (libwrap=in.wdeny) from <no address>"]


def test_a_twist_answers_the_queued_client_once(waited: dict[str, Any]) -> None:
    assert waited["answers"][1] == "twisted\n"
    twists = [line for line in waited["program"].splitlines() if "twist unknown" in line]
    assert len(twists) == 1, waited["program"]
    assert "Deactivating" not in waited["program"]
