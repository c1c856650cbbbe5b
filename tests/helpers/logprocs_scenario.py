"""`-logprocs N` end to end: at most N identity lookups for refused connections at once.

Run as `unshare -n python3 logprocs_scenario.py WORKDIR LOGPROCS` (a private network
namespace: the identd must have port 113 of the client's address). An identd that
accepts and never answers holds each lookup until its timeout (PYXINETD_IDENT_TIMEOUT,
set by the caller); a service that refuses 127.0.0.1 and logs USERID on failure gets
three clients at once. Prints, as JSON, how many connections the identd received and
the service log. Every wait is bounded; everything started here is stopped here.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from silent_identd import SilentIdentd, read, start_daemon, stop_daemon

PORT = 7100
CLIENTS = 3
DEADLINE = 20.0


def main() -> int:
    workdir, logprocs = Path(sys.argv[1]), sys.argv[2]
    identd = SilentIdentd()
    conf = workdir / "logprocs.conf"
    log = workdir / "service.log"
    conf.write_text(
        "service refused\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = root\n\tserver = /bin/echo\n\tport = {PORT}\n\tbind = 127.0.0.1\n"
        "\tonly_from = 10.0.0.1\n\tinstances = UNLIMITED\n\tcps = 0 0\n"
        f"\tlog_type = FILE {log}\n\tlog_on_failure = HOST USERID\n}}\n")
    program_log = workdir / "program.log"
    try:
        daemon = start_daemon(conf, program_log, "-logprocs", logprocs)
        try:
            deadline = time.monotonic() + DEADLINE
            clients = [socket.create_connection(("127.0.0.1", PORT), timeout=DEADLINE)
                       for _ in range(CLIENTS)]
            # The refusals are logged at once; their lookups start meanwhile (each one
            # running is held by the identd until the daemon's timeout). All the
            # lookups that will ever start have by the end of that timeout: wait for
            # all three or for its end, whichever comes first.
            lookups_over = (time.monotonic() + float(os.environ["PYXINETD_IDENT_TIMEOUT"])
                            + 1)
            while (identd.queries < CLIENTS
                   and time.monotonic() < min(lookups_over, deadline)):
                time.sleep(0.05)
            while read(log).count("FAIL: refused") < CLIENTS and time.monotonic() < deadline:
                time.sleep(0.05)
            for client in clients:
                client.close()
            print(json.dumps({"queries": identd.queries, "log": read(log),
                              "program": read(program_log)}))
        finally:
            stop_daemon(daemon)
    finally:
        identd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
