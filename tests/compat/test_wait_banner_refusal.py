"""A stream wait = yes service with a banner_fail, refused by its daemon: the services
after it, in pyxinetd and in the real xinetd 2.3.15.3.

xinetd writes the refused request's banner_fail to the listening socket; the write
fails and the bytes stay in its output buffer, where every child forked later finds
them: an internal service's child writes them again, fails and exits before echoing
anything. pyxinetd ignores banners of stream wait = yes services (docs/compatibility.md,
"Banners of a stream wait = yes server are ignored"), so the echo service after it
serves. Both daemons run tests/helpers/serve_fuzz_scenario.py (one daemon, in a private
network namespace) on the same two services.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "serve_fuzz_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))

REFUSED = {
    "id": "waiting", "name": "waiting", "kind": "wait-stream", "dgram": False,
    "unread": True,
    "body": ("\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n\twait = yes\n"
             "\tuser = root\n\tserver = /usr/bin/python3\n"
             f"\tserver_args = {HELPERS / 'env_probe.py'} wait-stream\n"
             "\tbanner_fail = {W}/waiting.banner_fail\n"
             # {FAR}: an access_times window away from now; the daemon refuses.
             "\taccess_times = {FAR}\n\tlog_on_failure = HOST\n"),
    "files": {"waiting.banner_fail": "refused\n"},
    "waves": [[{"src": "127.0.0.2", "data": "", "half_close": False}]],
}
ECHO = {
    "id": "later-echo", "name": "echo", "kind": "echo", "dgram": False, "unread": False,
    "body": ("\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n"
             "\twait = no\n\tuser = root\n\tlog_on_success = PID\n"),
    "files": {},
    "waves": [[{"src": "127.0.0.3", "data": b"ping\n".hex(), "half_close": False}]],
}


def run(tmp_path: Path, *daemon: str) -> dict[str, Any]:
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"services": [REFUSED, ECHO]}))
    result: dict[str, Any] = run_scenario(SCENARIO, case, *daemon)
    assert result["waiting"]["log"] == ["FAIL: waiting time from=<no address>"]
    return result


def test_pyxinetd_serves_the_services_after_a_refused_wait_banner(tmp_path: Path) -> None:
    result = run(tmp_path, sys.executable, "-m", "pyxinetd")
    assert result["later-echo"]["clients"] == ["b'ping\\n' open"]


def test_xinetd_children_after_a_refused_wait_banner_serve_nothing(tmp_path: Path) -> None:
    # The deviation, shown on the real binary: the echo child starts and exits at once.
    result = run(tmp_path, require_xinetd())
    assert result["later-echo"]["log"] == ["START: later-echo pid=N"]
    [client] = result["later-echo"]["clients"]
    assert client.startswith("b'' ") and not client.endswith(" open"), client
