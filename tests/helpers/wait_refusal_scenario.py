"""A refused wait = yes request, run against one daemon inside a private network namespace.

    unshare -n python3 wait_refusal_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, writes a configuration (a nowait `holder` running /bin/cat, a stream
wait = yes `waiter` running tests/helpers/wait_stream_server.py, cps off, a FILE service
log), starts `DAEMON ARG... -f CONF -dontfork -limit 1 -filelog LOG`, then: a client
holds the one process slot through `holder`; a second connects to `waiter` (refused:
process_limit) and stays queued; the holder lets go; the queued client and then a new
one wait a bounded time for `waiter`'s reply. Prints one JSON object: whether each was
served and how many FAIL lines `waiter` got. Standard library only; every wait bounded.
"""

import json
import os
import socket
import sys
import time

from scenario_support import begin, free_port, read, running, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ANSWER_WAIT = 3.0


def served(conn: socket.socket) -> bool:
    conn.settimeout(ANSWER_WAIT)
    try:
        return conn.recv(100).startswith(b"pid=")
    except OSError:
        return False


def main() -> int:
    run = begin()
    service_log, program_log, conf = run.service_log, run.program_log, run.conf
    holder_port, waiter_port = free_port(), free_port()
    with open(conf, "w") as f:
        f.write(f"""defaults
{{
\tlog_type = FILE {service_log}
\tlog_on_success = PID
\tlog_on_failure = HOST
\tcps = 0 0
}}
service holder
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tuser = root
\tserver = /bin/cat
\tbind = 127.0.0.1
\tport = {holder_port}
}}
service waiter
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = yes
\tuser = root
\tserver = {sys.executable}
\tserver_args = -I -S {os.path.join(HERE, "wait_stream_server.py")}
\tbind = 127.0.0.1
\tport = {waiter_port}
}}
""")
    result = {}
    with running(run.daemon, conf, program_log, "-limit", "1"):
        holder = socket.create_connection(("127.0.0.1", holder_port), timeout=5)
        wait_for(service_log, r"START: holder", time.monotonic() + 10)
        queued = socket.create_connection(("127.0.0.1", waiter_port), timeout=5)
        queued.sendall(b"queued\n")
        result["refused"] = wait_for(service_log, r"FAIL: waiter process_limit",
                                     time.monotonic() + 10)
        holder.close()  # cat sees EOF and exits: the slot is free
        result["queued_served"] = served(queued)
        queued.close()
        later = socket.create_connection(("127.0.0.1", waiter_port), timeout=5)
        later.sendall(b"later\n")
        result["later_served"] = served(later)
        later.close()
        result["fail_lines"] = read(service_log).count("FAIL: waiter")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
