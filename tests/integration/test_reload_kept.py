"""What a reload does to the services it keeps, and in which order, as xinetd does it.

Real daemon, real servers that hold their connection (tests/helpers/reload_server.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon import DaemonFactory, free_port
from tests.integration.test_reload import defaults, reload, service


def test_running_services_are_readjusted_or_deactivated_in_their_order(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    a, b, c, d = (free_port() for _ in range(4))
    daemon = daemons.start_config(defaults(tmp_path) + service("a", a, "A")
                                  + service("b", b, "B") + service("c", c, "C")
                                  + service("d", d, "D"))
    # c changes, a does not: xinetd's order is still the running one, a b c d.
    log = reload(daemon, defaults(tmp_path) + service("c", c, "C2") + service("a", a, "A"), 1)
    lines = [line.split(": ", 2)[-1] for line in log.splitlines()
             if "readjusting" in line or "deactivated" in line]
    assert lines == ["readjusting service a", "service b deactivated",
                     "readjusting service c", "service d deactivated"]
    assert "Reconfigured: new=0 old=2 dropped=2 (services)" in log
