"""RPC services whose portmapper SETs are applied but never answered.

Run inside a private network namespace (it brings `lo` up itself):

    unshare -n python3 rpc_lost_reply_scenario.py DIR CASE [DAEMON ARGV...]

A portmapper on 127.0.0.1:111 (tests/helpers/fake_portmapper.py) takes some SETs into
its table without answering them, as a portmapper whose answers are lost would. The
daemon (DAEMON ARGV, default pyxinetd; -dontfork -filelog) starts, and CASE is:

- `sigterm`: one tcp service, none of whose SETs is answered; once the portmapper has
  taken its SET, the daemon gets SIGTERM (before the SET is given up on).
- `no-answer`: the SETs of tcp services are left unanswered for version 1 of
  LOST_PROGRAM (service `lostset`, its only version: it fails) and version 2 of
  PARTIAL_PROGRAM (service `partial`, versions 1-2: it serves with version 1); every
  other call is answered. A udp service `shareudp` of LOST_PROGRAM (versions 1-2)
  registers normally. Once the daemon logged that `lostset` failed, the table is read
  when the portmapper has had the UNSET of each unanswered version and the SET that
  puts `shareudp`'s version 1 back (or at the deadline); then SIGTERM.

Prints one JSON object: the table at that point (`deactivated`, no-answer only), the
table left once the daemon has exited, the calls received in order, the exit status
and the log.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_portmapper import (ANSWER, SET, SILENT, TCP, UDP, UNSET, Call,  # noqa: E402
                             FakePortmapper)
from rpc_scenario import (fake_portmapper_run, read, reported, rpc_service,  # noqa: E402
                          start_daemon, wait_for)

PROGRAM = 0x20000117
LOST_PROGRAM = 0x20000118
PARTIAL_PROGRAM = 0x20000119
DEADLINE = 30.0


def silent_sets(call: Call) -> str:
    return SILENT if call[0] == SET else ANSWER


def lost_versions(call: Call) -> str:
    procedure, program, version, protocol, _ = call
    if procedure == SET and protocol == TCP and (program, version) in (
            (LOST_PROGRAM, 1), (PARTIAL_PROGRAM, 2)):
        return SILENT
    return ANSWER


def restored(calls: list[Call]) -> bool:
    """Both UNSETs received, and shareudp's version 1 SET again after the first."""
    unsets = [i for i, c in enumerate(calls) if c[0] == UNSET]
    if not any(calls[i][1:3] == (LOST_PROGRAM, 1) for i in unsets) or \
            not any(calls[i][1:3] == (PARTIAL_PROGRAM, 2) for i in unsets):
        return False
    first = min(i for i in unsets if calls[i][1:3] == (LOST_PROGRAM, 1))
    return any(c[:4] == (SET, LOST_PROGRAM, 1, UDP) for c in calls[first:])


def main() -> None:
    work, case, argv, conf, log = fake_portmapper_run()
    if case == "sigterm":
        portmapper = FakePortmapper(silent_sets)
        conf.write_text(rpc_service("lostset", PROGRAM, "1", "tcp"))
    else:
        portmapper = FakePortmapper(lost_versions)
        conf.write_text(rpc_service("lostset", LOST_PROGRAM, "1", "tcp")
                        + rpc_service("shareudp", LOST_PROGRAM, "1-2", "udp")
                        + rpc_service("partial", PARTIAL_PROGRAM, "1-2", "tcp"))
    result: dict[str, object] = {}
    daemon = start_daemon(argv, conf, log, work / "daemon.err")
    with reported(result, daemon, portmapper, log, work / "daemon.err"):
        deadline = time.monotonic() + DEADLINE
        if case == "sigterm":
            wait_for(lambda: any(c[0] == SET for c in portmapper.snapshot()[0])
                     or daemon.poll() is not None, "the SET call", deadline)
        else:
            wait_for(lambda: "Service lostset failed to start" in read(log)
                     or daemon.poll() is not None, "the failure of lostset", deadline)
            try:
                wait_for(lambda: restored(portmapper.snapshot()[0]), "the UNSET calls",
                         time.monotonic() + 10.0)
            except SystemExit:
                pass        # the table shows what is missing
            result["deactivated"] = portmapper.snapshot()[2]
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=DEADLINE)


if __name__ == "__main__":
    main()
