"""hosts.allow/hosts.deny `banners` for TCPMUX services, pyxinetd against the real
xinetd 2.3.15.3 linked with Debian's libwrap (tests/helpers/wrap_scenario.py, as
tests/compat/test_wrap_banners_oracle.py).

A client of the `tcpmux` service is checked twice: under `tcpmux` when it connects,
then under its TCPMUX service once the name is read. The second check's daemon name is
the service's libwrap name, as for any server (the `libwrap` attribute, else the
basename of `server`, or of argv[0] with NAMEINARGS), never the name the client sent.
xinetd's wire order, kept: the tcpmux rule's banners, the service rule's banners, then
`+Go` for TCPMUXPLUS, then the service's banner_success. A refused client gets its
rule's banners and banner_fail, and no `+Go` (xinetd sends `+Go` before a banner_fail,
and none when there is no banner_fail).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wrap_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


def _client(name: str, kind: str, server: str, extra: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = {kind} UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = {{dir}}/{server}\n"
            f"{extra}}}\n")


SERVICES = (
    "defaults\n{\n\tlog_type = FILE {dir}/services.log\n"
    "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}\n"
    "service tcpmux\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
    "\tprotocol = tcp\n\twait = no\n\tuser = root\n\tbind = 127.0.0.1\n"
    "\tport = {port:tcpmux}\n}\n"
    + _client("plusa", "TCPMUXPLUS", "in.probe")
    + _client("muxb", "TCPMUX", "in.probe")
    + _client("plusl", "TCPMUXPLUS", "probe", "\tlibwrap = lw.name\n"
              "\tbanner_success = {dir}/bs\n\tbanner = {dir}/bb\n")
    # flags before server_args: the other order crashes xinetd's child (see
    # docs/compatibility.md, NAMEINARGS).
    + _client("plusn", "TCPMUXPLUS", "probe", "\tflags = NAMEINARGS\n"
              "\tserver_args = in.named x\n")
    + _client("plusd", "TCPMUXPLUS", "probe", "\tlibwrap = in.denied\n")
    + _client("plusdb", "TCPMUXPLUS", "probe", "\tlibwrap = in.denied\n"
              "\tbanner_fail = {dir}/bf\n")
    + _client("plusf", "TCPMUXPLUS", "in.probe", "\tonly_from = 10.0.0.1\n"))

# A rule for the name the client sends (plusa) is never consulted.
ALLOW = ("tcpmux: ALL: banners /mnt/banners\n"
         "in.probe, lw.name, in.named: ALL: banners /mnt/banners\n"
         "plusa, muxb: ALL: banners /mnt/banners\n")
DENY = "in.denied: ALL: banners /mnt/banners\n"

NAMES = ["plusa", "muxb", "plusl", "plusn", "plusd", "plusdb", "plusf"]
CASE = {
    "allow": ALLOW, "deny": DENY, "services": SERVICES,
    "banners": {name: f"<{name}>\n" for name in
                ["tcpmux", "in.probe", "lw.name", "in.named", "in.denied", "plusa", "muxb"]},
    "files": {"bf": "<banner_fail>\n", "bs": "<banner_success>\n", "bb": "<banner>\n"},
    "requests": [{"port": "tcpmux", "send": f"{name}\r\n"} for name in NAMES],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("tcpmux_banners"),
                             require_xinetd(), mount=True, case=CASE)


def answers(result: dict[str, Any]) -> dict[str, str]:
    """What each client received before the probe server's own output, xinetd's NUL
    after `+Go` dropped (docs/compatibility.md: pyxinetd sends none)."""
    return {name: str(text).split("uid=", 1)[0].replace("+Go\r\n\x00", "+Go\r\n")
            for name, text in zip(NAMES, result["answers"])}


def served(result: dict[str, Any]) -> set[str]:
    return {name for name, text in zip(NAMES, result["answers"]) if "uid=" in text}


ADMITTED = {
    "plusa": "<tcpmux>\r\n<in.probe>\r\n+Go\r\n",
    "muxb": "<tcpmux>\r\n<in.probe>\r\n",
    "plusl": "<tcpmux>\r\n<lw.name>\r\n+Go\r\n<banner_success>\n",
    "plusn": "<tcpmux>\r\n<in.named>\r\n+Go\r\n",
}


def test_the_same_clients_are_served(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert served(xinetd) == served(pyxinetd) == set(ADMITTED)


@pytest.mark.parametrize("name", sorted(ADMITTED))
def test_an_admitted_client_gets_its_libwrap_names_banner_before_go(
        results: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    xinetd, pyxinetd = results
    assert answers(pyxinetd)[name] == answers(xinetd)[name] == ADMITTED[name]


def test_a_client_refused_by_its_service_rules_gets_no_go(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    ours, theirs = answers(pyxinetd), answers(xinetd)
    assert ours["plusd"] == theirs["plusd"] == "<tcpmux>\r\n<in.denied>\r\n"
    assert ours["plusdb"] == "<tcpmux>\r\n<in.denied>\r\n<banner_fail>\n"
    assert theirs["plusdb"] == "<tcpmux>\r\n<in.denied>\r\n+Go\r\n<banner_fail>\n"
    assert ours["plusf"] == theirs["plusf"] == "<tcpmux>\r\n"


def test_refusals_name_the_libwrap_name(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    line = "libwrap refused connection to plusdb (libwrap=in.denied) from 127.0.0.1"
    assert line in xinetd["program"] and line in pyxinetd["program"]
    assert "FAIL: plusdb libwrap" in pyxinetd["services"]
