"""A wide `rpc_version` range: how many portmapper calls the daemon keeps in flight.

Run inside a private network namespace (it brings `lo` up itself):

    unshare -n python3 rpc_window_scenario.py DIR CASE [DAEMON ARGV...]

A portmapper on 127.0.0.1:111 (tests/helpers/fake_portmapper.py) holds the calls of
the wide program until this script releases them, so the calls it holds are calls the
daemon has in flight. The daemon (pyxinetd by default; -dontfork -filelog) starts
serving the plain service alone. CASE is:

- `rounds`: the retransmissions are 60 s apart ($PYXINETD_PORTMAP_INTERVAL), so no
  held call is given up on. A reload adds `wide` (tcp, versions 1-WIDE_VERSIONS) and
  then `narrow` (tcp, another program, version 1, answered at once). Then, in rounds
  until every version of `wide` is registered: once a call is held, the loop has gone
  past what the last answers let it send (it served a request to the plain service
  sent after them) and the portmapper has handled what the daemon sent until then,
  the number of calls held is recorded (`held`), and they are released. The table
  after the first release is `first_round`. Then the portmapper holds the UNSETs too,
  and the daemon gets SIGTERM: in rounds until it exits, the calls held (once at
  least one is, and every datagram sent before handled) are recorded
  (`held_at_exit`) and released.
- `silent-exit`: the retransmissions are 0.2 s apart. `wide` (versions 1-100) is
  registered, answered at once; then the portmapper holds every UNSET and never
  answers, and the daemon gets SIGTERM.
- `interrupt`: as `silent-exit`, but the daemon runs with -d and gets SIGINT, which
  ends it without waiting for the portmapper.

Prints one JSON object: the rounds' counts, the table after the reload's rounds
(`registered`), the calls received in order, the table left after the exit, the exit
status and the log.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_portmapper import ANSWER, HOLD, SET, UNSET, Call, FakePortmapper  # noqa: E402
from rpc_scenario import (PLAIN_PORT, fake_portmapper_run, plain_service,  # noqa: E402
                          read, reported, rpc_service, start_daemon, talk_tcp, wait_for,
                          wait_started)

WIDE_PROGRAM = 0x2000011C
NARROW_PROGRAM = 0x2000011D
WIDE_VERSIONS = 1000
SILENT_VERSIONS = 100
DEADLINE = 60.0


class Holder:
    """The portmapper's policy: hold the wide program's calls of the procedures in
    `hold`, answer the others."""

    def __init__(self) -> None:
        self.hold: set[int] = set()

    def __call__(self, call: Call) -> str:
        procedure, program = call[:2]
        return HOLD if program == WIDE_PROGRAM and procedure in self.hold else ANSWER


def main() -> None:
    work, case, argv, conf, log = fake_portmapper_run()
    holder = Holder()
    portmapper = FakePortmapper(holder)
    wide = rpc_service("wide", WIDE_PROGRAM, f"1-{WIDE_VERSIONS}", "tcp")
    narrow = rpc_service("narrow", NARROW_PROGRAM, "1", "tcp")
    interval = "60" if case == "rounds" else "0.2"
    if case == "interrupt":
        argv = [*argv, "-d"]
    if case == "rounds":
        conf.write_text(plain_service())
    else:
        conf.write_text(rpc_service("wide", WIDE_PROGRAM, f"1-{SILENT_VERSIONS}", "tcp")
                        + plain_service())
    env = dict(os.environ, PYXINETD_PORTMAP_INTERVAL=interval)
    result: dict[str, object] = {}
    daemon = start_daemon(argv, conf, log, work / "daemon.err", env)

    def wide_rows() -> int:
        return sum(1 for m in portmapper.snapshot()[2] if m[0] == WIDE_PROGRAM)

    with reported(result, daemon, portmapper, log, work / "daemon.err"):
        deadline = time.monotonic() + DEADLINE
        wait_started(daemon, log, deadline)
        if case != "rounds":
            holder.hold = {UNSET}
            daemon.send_signal(signal.SIGTERM if case == "silent-exit" else signal.SIGINT)
            daemon.wait(timeout=DEADLINE)
            return
        holder.hold = {SET, UNSET}
        conf.write_text(wide + narrow + plain_service())
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "Swapping defaults" in read(log), "the reload", deadline)
        held: list[int] = []
        while wide_rows() < WIDE_VERSIONS and time.monotonic() < deadline:
            wait_for(lambda: bool(portmapper.snapshot()[1]), "a SET", deadline)
            assert talk_tcp(PLAIN_PORT) == "tcp-rpc\n"
            portmapper.sync()
            held.append(len(portmapper.snapshot()[1]))
            portmapper.release()
            if len(held) == 1:
                assert talk_tcp(PLAIN_PORT) == "tcp-rpc\n"
                portmapper.sync()
                result["first_round"] = portmapper.snapshot()[2]
        result["held"] = held
        result["registered"] = portmapper.snapshot()[2]
        daemon.send_signal(signal.SIGTERM)
        at_exit: list[int] = []
        while daemon.poll() is None and time.monotonic() < deadline:
            wait_for(lambda: bool(portmapper.snapshot()[1]) or daemon.poll() is not None,
                     "an UNSET", deadline)
            portmapper.sync()
            at_exit.append(len(portmapper.snapshot()[1]))
            portmapper.release()
        result["held_at_exit"] = at_exit
        daemon.wait(timeout=DEADLINE)


if __name__ == "__main__":
    main()
