"""`instances` after a cps deactivation (xinetd-org issue 21), run against one daemon
in a private network namespace.

    unshare -n python3 cps_instances_scenario.py WORKDIR DAEMON [ARG...]

One service, `instances = 1` and `cps = 2 3`. A first client is held (its server, cat,
keeps running); two more follow at once: the second is refused by `instances`, the
third trips cps (three requests within the window). Once the service is activated
again (three seconds later, past the window, so the next request starts a fresh one),
one more client asks while the first client's server still runs. Prints one JSON
object: what that client saw, and the service's log lines without stamps and pids.
Standard library only; every wait bounded.
"""

import json
import re
import socket
import sys
import time

from scenario_support import (
    begin, free_port, read, running, second_to_spare, seen, wait_children, wait_for)

PEER = "127.0.0.1"


def stripped(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        rest = line.split(": ", 1)[1] if ": " in line else line
        if rest.startswith(("NOTICE", "WARNING")):
            continue        # start-up and shutdown
        out.append(re.sub(r"pid=\d+", "pid=N", rest))
    return out


def main() -> int:
    run = begin()
    port = free_port()
    with open(run.conf, "w") as f:
        f.write(f"defaults\n{{\n\tlog_type = FILE {run.program_log}\n"
                "\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n}\n"
                f"service capped\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                f"\twait = no\n\tuser = root\n\tbind = {PEER}\n\tport = {port}\n"
                "\tserver = /bin/cat\n\tinstances = 1\n\tcps = 2 3\n}\n")
    result = {}
    with running(run.daemon, run.conf, run.program_log) as daemon:
        # The three requests trip `cps = 2` only within the window's first two seconds
        # of the daemon's clock (xinetd's wall clock, pyxinetd's monotonic one; after
        # those, 3 // 2 is not more than 2). Begun with half a second to spare in both,
        # they have at least 1.5 s for one cat server and two refusals; the held
        # client's reply is read (with its half second of quiet) after them.
        second_to_spare(0.5)
        held = socket.create_connection((PEER, port), timeout=5)
        held.sendall(b"hi\n")
        for name in ("over instances", "over cps"):
            try:
                conn = socket.create_connection((PEER, port), timeout=5)
            except OSError as exc:
                result[name] = f"connect {type(exc).__name__}"
                continue
            with conn:
                result[name] = seen(conn, wait=5)
        result["held"] = seen(held, wait=0.5)
        if not wait_for(run.program_log, r"Activating service capped",
                        time.monotonic() + 30):
            raise SystemExit(f"never activated again: {read(run.program_log)!r}")
        after = socket.create_connection((PEER, port), timeout=5)
        result["after reactivation"] = seen(after, b"again\n", 1.0)
        after.close()
        # Its server (if any) sees EOF and exits: reaped before the held one ends.
        wait_children(daemon.pid, 1, time.monotonic() + 10)
        result["held still"] = seen(held, b"still\n", 0.5)
        held.close()
        wait_children(daemon.pid, 0, time.monotonic() + 10)
        wait_for(run.program_log, r"EXIT: capped(.*\n)*.*running servers|"
                 r"FAIL: capped service_limit(.*\n)+.*EXIT: capped", time.monotonic() + 10)
    result["lines"] = stripped(read(run.program_log))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
