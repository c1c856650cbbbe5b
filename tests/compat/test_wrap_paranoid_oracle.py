"""libwrap's PARANOID warnings, against the real xinetd 2.3.15.3 linked with Debian's
libwrap: when a rule first reads a client's name whose forward lookup does not give
it back, libwrap logs why, at that rule (`/etc/hosts.deny, line 1: host name/name
mismatch: x7 != y8`, `... host name/address mismatch: 127.0.0.6 != dup.example.com`):
the spoofing signal admins grep for. pyxinetd writes them to its program log (as
libwrap's other warnings; xinetd's go to syslog).

Both daemons run tests/helpers/wrap_scenario.py in private network and mount
namespaces, with a private /etc/hosts (and /etc/host.conf `multi off`, so that a name
of two lines gives the first line's addresses only).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wrap_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

CASE = {
    "allow": "",
    "deny": "in.other: ALL\nALL: PARANOID\n",
    "etc": {"hosts": "127.0.0.1 localhost\n127.0.0.8 y8 x7\n127.0.0.7 x7\n"
                     "127.0.0.9 dup.example.com\n127.0.0.6 dup.example.com\n"
                     "127.0.0.5 fine.example\n",
            "host.conf": "multi off\n"},
    "services": ("service p\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tflags = IPv4\n"
                 "\tsocket_type = stream\n\twait = no\n\tuser = root\n"
                 "\tserver = /bin/echo\n\tserver_args = served\n\tport = {port:p}\n}\n"),
    "requests": [{"port": "p", "source": "127.0.0.7"}, {"port": "p", "source": "127.0.0.6"},
                 {"port": "p", "source": "127.0.0.5"}],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_paranoid"),
                             require_xinetd(), mount=True, case=CASE)


def test_paranoid_clients_are_refused_and_a_confirmed_one_served(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for result in results:
        assert result["answers"] == ["", "", "served\n"], result["answers"]


def test_the_mismatch_warnings_are_libwraps(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    expected = ["/etc/hosts.deny, line 2: host name/name mismatch: x7 != y8",
                "/etc/hosts.deny, line 2: host name/address mismatch: 127.0.0.6 != "
                "dup.example.com"]
    syslog = [m.split("xinetd: warning: ", 1)[1] for m in xinetd["syslog"]
              if "xinetd: warning: " in m and "mismatch" in m]
    assert syslog == expected
    ours = [line.split("WARNING: ", 1)[1] for line in pyxinetd["program"].splitlines()
            if "WARNING: " in line and "mismatch" in line]
    assert ours == expected
