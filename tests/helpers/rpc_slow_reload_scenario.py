"""Reloads that change `rpc_version` while the portmapper has not answered yet.

Run inside a private network namespace (it brings `lo` up itself):

    unshare -n python3 rpc_slow_reload_scenario.py DIR [DAEMON ARGV...]

A portmapper on 127.0.0.1:111 (tests/helpers/fake_portmapper.py) holds its answers
whenever this script says so, and gives them when it says so: no step here waits for
a time to pass, and the daemon's retransmissions are 60 s apart
($PYXINETD_PORTMAP_INTERVAL), so none is given up on meanwhile. The daemon (pyxinetd
by default; -dontfork -filelog) serves one tcp RPC service, `moving`, with
`rpc_version = 1`. Then:

1. the portmapper holds; a reload gives `rpc_version = 2`: the daemon UNSETs version
   1 and SETs version 2 (versions do not wait for each other), both held;
2. while they are held, a second reload gives `rpc_version = 3`;
3. the portmapper answers the held calls, and everything from then on;
4. the table is read once it holds version 3 and nothing else of the program (or at
   the deadline), and a client talks to the port registered; then SIGTERM.

Prints one JSON object: the table after step 4 (`settled`), the client's answer, the
calls received in order, the table left after the exit, the exit status and the log.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_portmapper import (ANSWER, HOLD, SET, UNSET, Call,  # noqa: E402
                             FakePortmapper)
from rpc_scenario import (fake_portmapper_run, read, reported, rpc_service,  # noqa: E402
                          settle_and_ask, start_daemon, wait_for, wait_started)

PROGRAM = 0x2000011a
DEADLINE = 30.0


class Switch:
    """The portmapper's policy: hold every call while `holding`."""

    def __init__(self) -> None:
        self.holding = False

    def __call__(self, call: Call) -> str:
        return HOLD if self.holding else ANSWER


def main() -> None:
    work, _, argv, conf, log = fake_portmapper_run(cases=False)
    switch = Switch()
    portmapper = FakePortmapper(switch)
    conf.write_text(rpc_service("moving", PROGRAM, "1", "tcp"))
    env = dict(os.environ, PYXINETD_PORTMAP_INTERVAL="60")
    result: dict[str, object] = {}
    daemon = start_daemon(argv, conf, log, work / "daemon.err", env)

    def reload(rpc_version: str, count: int) -> None:
        conf.write_text(rpc_service("moving", PROGRAM, rpc_version, "tcp"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: read(log).count("Reconfigured") >= count, f"reload {count}",
                 deadline)

    with reported(result, daemon, portmapper, log, work / "daemon.err"):
        deadline = time.monotonic() + DEADLINE
        wait_started(daemon, log, deadline)
        result["started"] = portmapper.snapshot()[2]
        switch.holding = True
        reload("2", 1)
        wait_for(lambda: portmapper.holds(UNSET, PROGRAM, 1)
                 and portmapper.holds(SET, PROGRAM, 2),
                 "the UNSET of version 1 and the SET of version 2", deadline)
        reload("3", 2)
        switch.holding = False
        portmapper.release()
        settle_and_ask(result, portmapper, PROGRAM, [(PROGRAM, 3, 6)], "version 3 alone")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=DEADLINE)


if __name__ == "__main__":
    main()
