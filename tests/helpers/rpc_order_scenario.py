"""Portmapper calls for one program whose answers come back in an awkward order.

Run inside a private network namespace (it brings `lo` up itself):

    unshare -n python3 rpc_order_scenario.py DIR CASE [DAEMON ARGV...]

A portmapper on 127.0.0.1:111 (tests/helpers/fake_portmapper.py) holds the calls this
script picks until it releases them, which is how a lost datagram that a
retransmission delivers late looks from the daemon. The daemon's retransmissions are
60 s apart ($PYXINETD_PORTMAP_INTERVAL), so no held call is given up on meanwhile, and
no step waits for a time to pass: the daemon's loop has gone past a step once it
served a request to the plain service that came after the step's log line, and the
portmapper has seen what the daemon sent then once its sync() returns. CASE is:

- `inflight-set`: `shareudp` (udp, version 1) and `sharetcp` (tcp, version 1) of one
  program are registered. A reload gives `sharetcp` versions 1-2, and the SET of its
  version 2 is held; a second reload removes `shareudp` (whose UNSET of version 1 the
  daemon may send meanwhile: it is answered at once) while that SET is held. Then the
  SET is released.
- `cps-reopen`: `cpstcp` (tcp, version 1, `cps = 1 2`) is registered; connections trip
  its cps limit, and the UNSET that follows is held until the service has reopened on
  a new socket (whose registration the daemon may have sent meanwhile).
- `readd`: `moving` (tcp, version 1) is registered; a reload removes it, and its UNSET
  is held; a second reload adds it again (a new socket), then the UNSET is released.
- `readd-fixed`: a reload adds `moving` (tcp, version 1, `port = 4711`), and its SET
  is held; a second reload removes it, a third adds it again (bound at the same port)
  while that SET is still held; then the SET is released. Every reload must complete
  (`Reconfigured` three times) and the service serve.

After the release every call is answered; the table is read once it holds exactly
what the configuration wants (`expected`), or at the deadline, and a client talks to
the port registered (`answer`); then SIGTERM. Prints one JSON object: the table then
(`settled`), `expected`, the client's answer, the calls received in order, the table
left after the exit, the exit status and the log.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_portmapper import (ANSWER, HOLD, SET, TCP, UDP, UNSET, Call,  # noqa: E402
                             FakePortmapper)
from rpc_scenario import (FIXED_PORT, PLAIN_PORT, fake_portmapper_run,  # noqa: E402
                          plain_service, read, reported, rpc_service, settle_and_ask,
                          start_daemon, talk_tcp, wait_for, wait_started)

PROGRAM = 0x2000011b
DEADLINE = 30.0


class Holder:
    """The portmapper's policy: hold the calls `hold` picks, answer the others."""

    def __init__(self) -> None:
        self.hold: tuple[int, int, int] | None = None    # procedure, version, protocol

    def __call__(self, call: Call) -> str:
        procedure, program, version, protocol, _ = call
        if self.hold is not None and program == PROGRAM and \
                (procedure, version) == self.hold[:2] and \
                (procedure == UNSET or protocol == self.hold[2]):
            return HOLD
        return ANSWER


def main() -> None:
    work, case, argv, conf, log = fake_portmapper_run()
    holder = Holder()
    portmapper = FakePortmapper(holder)
    shareudp = rpc_service("shareudp", PROGRAM, "1", "udp")
    cps = rpc_service("cpstcp", PROGRAM, "1", "tcp", "\tcps = 1 2\n")
    if case == "inflight-set":
        conf.write_text(shareudp + rpc_service("sharetcp", PROGRAM, "1", "tcp")
                        + plain_service())
    elif case == "cps-reopen":
        conf.write_text(cps + plain_service())
    elif case == "readd-fixed":
        conf.write_text(plain_service())
    else:
        conf.write_text(rpc_service("moving", PROGRAM, "1", "tcp") + plain_service())
    env = dict(os.environ, PYXINETD_PORTMAP_INTERVAL="60")
    result: dict[str, object] = {}
    daemon = start_daemon(argv, conf, log, work / "daemon.err", env)

    reloads = [0]

    def reload(text: str, count: int) -> None:
        conf.write_text(text)
        daemon.send_signal(signal.SIGHUP)
        reloads[0] = count
        wait_for(lambda: read(log).count("Swapping defaults") >= count, f"reload {count}",
                 deadline)

    def barrier() -> None:
        """Once the loop went past the steps logged so far (it served a request to the
        plain service sent after them), and the portmapper handled every call the
        daemon sent until then."""
        assert talk_tcp(PLAIN_PORT) == "tcp-rpc\n"
        portmapper.sync()

    with reported(result, daemon, portmapper, log, work / "daemon.err"):
        deadline = time.monotonic() + DEADLINE
        wait_started(daemon, log, deadline)
        result["started"] = portmapper.snapshot()[2]
        if case == "inflight-set":
            expected = [(PROGRAM, 1, TCP), (PROGRAM, 2, TCP)]
            holder.hold = (SET, 2, TCP)
            reload(shareudp + rpc_service("sharetcp", PROGRAM, "1-2", "tcp")
                   + plain_service(), 1)
            wait_for(lambda: portmapper.holds(SET, PROGRAM, 2), "the SET of version 2",
                     deadline)
            reload(rpc_service("sharetcp", PROGRAM, "1-2", "tcp") + plain_service(), 2)
            barrier()
        elif case == "cps-reopen":
            expected = [(PROGRAM, 1, TCP)]
            port = result["started"][0][3]  # type: ignore[index]
            holder.hold = (UNSET, 1, TCP)
            # cps = 1 2: the second connection within one second trips it, and the
            # socket closes (refused from then on); connect until then, at most 20 times.
            for _ in range(20):
                if talk_tcp(port).startswith("error:"):
                    break
            wait_for(lambda: portmapper.holds(UNSET, PROGRAM, 1),
                     "the UNSET of the cps deactivation", deadline)
            wait_for(lambda: "Activating service cpstcp" in read(log), "the reactivation",
                     deadline)
            barrier()
        elif case == "readd-fixed":
            expected = [(PROGRAM, 1, TCP)]
            fixed = rpc_service("moving", PROGRAM, "1", "tcp", f"\tport = {FIXED_PORT}\n")
            holder.hold = (SET, 1, TCP)
            reload(fixed + plain_service(), 1)
            wait_for(lambda: portmapper.holds(SET, PROGRAM, 1),
                     "the SET of the added service", deadline)
            reload(plain_service(), 2)
            reload(fixed + plain_service(), 3)
            barrier()
        else:
            expected = [(PROGRAM, 1, TCP)]
            holder.hold = (UNSET, 1, TCP)
            reload(plain_service(), 1)
            wait_for(lambda: portmapper.holds(UNSET, PROGRAM, 1),
                     "the UNSET of the removal", deadline)
            reload(rpc_service("moving", PROGRAM, "1", "tcp") + plain_service(), 2)
            barrier()
        result["before_release"] = portmapper.snapshot()[0]
        holder.hold = None
        portmapper.release()
        settle_and_ask(result, portmapper, PROGRAM, expected,
                       "the configuration's registrations")
        result["expected"] = expected
        try:
            wait_for(lambda: read(log).count("Reconfigured") >= reloads[0],
                     "every reload's completion", time.monotonic() + 10.0)
        except SystemExit:
            pass        # the count shows what is missing
        result["reconfigured"] = read(log).count("Reconfigured")
        result["reloads"] = reloads[0]
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=DEADLINE)


if __name__ == "__main__":
    main()
