"""A minimal appliance's system: read-only root, no /etc/protocols, no /etc/services
(tests/helpers/appliance_scenario.py builds it in private namespaces)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))


def test_without_etc_protocols_services_naming_no_protocol_still_serve(
        tmp_path: Path) -> None:
    # xinetd 2.3.15.3 disables all of them: `Service implied missing attribute
    # protocol`, `Protocol tcp not in /etc/protocols`, and serves nothing.
    result = run_scenario(HELPERS / "appliance_scenario.py", tmp_path,
                          sys.executable, "-m", "pyxinetd", mount=True)
    assert result["protocols_gone"]
    assert result["answers"] == {"implied": "implied\n", "named": "named\n",
                                 "echo": "ping"}
    # The listed service needs /etc/services for its port: refused, saying why and where.
    assert [line for line in result["log"] if line.startswith("ERROR")] == [
        "ERROR: Port not specified and can't find service: telnet with getservbyname "
        "(telnet/tcp is not in /etc/services: add type = UNLISTED and a port) - service "
        f"disabled [file={tmp_path}/xinetd.conf] [line=29]"]
