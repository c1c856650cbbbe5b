"""The words of a `/file` list, pyxinetd against the real xinetd 2.3.15.3 linked with
Debian's libwrap.

Both daemons run the same scenario (tests/helpers/wrap_scenario.py) in private network
and mount namespaces; /etc/hosts names the loopback address `except`. libwrap hands
every word of a file to host_match, which compares it with the client's address and
then its name: `EXCEPT` there is no operator but a host name like any other.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario_both
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wrap_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

STREAMS = ("fexc", "fother")


def _stream(name: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n"
            "\tsocket_type = stream\n\twait = no\n\tuser = root\n"
            f"\tserver = {{dir}}/in.probe\n\tlibwrap = in.{name}\n"
            f"\tport = {{port:{name}}}\n}}\n")


CASE = {
    "allow": "",
    # A file whose one word is EXCEPT: the client named `except` is refused. The rule
    # for in.fexc alone does not concern in.fother.
    "deny": "in.fexc: /mnt/lists/except\n",
    "services": "".join(_stream(name) for name in STREAMS),
    "etc": {"hosts": "127.0.0.1 except localhost\n"},
    "files": {"lists/except": "EXCEPT\n"},
    "requests": [{"port": name} for name in STREAMS],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's), one run each for the whole module."""
    return run_scenario_both(SCENARIO, tmp_path_factory.mktemp("wrap_file_words"),
                             require_xinetd(), mount=True, case=CASE)


def served(result: dict[str, Any]) -> set[str]:
    return {name for name, text in zip(STREAMS, result["answers"]) if "uid=" in text}


def test_except_in_a_file_is_a_host_name_compared_with_the_clients(
        results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    xinetd, pyxinetd = results
    assert served(xinetd) == {"fother"}
    assert served(pyxinetd) == served(xinetd)
