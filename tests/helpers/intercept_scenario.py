"""flags = INTERCEPT on a stream wait = yes service, run against one daemon inside a
private network namespace.

    unshare -n python3 intercept_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, writes a configuration (one stream wait = yes service with INTERCEPT and
`no_access = 127.0.0.3`, its server tests/helpers/intercept_server.py serving three
clients, cps off, a FILE service log), starts `DAEMON ARG... -f CONF -dontfork -filelog
LOG`, then connects from 127.0.0.2, 127.0.0.3 and 127.0.0.2 again, one after the other.
Prints one JSON object: what each client got first (the server's greeting, or "" when it
was closed or reset), the service log's START and FAIL lines and the program log.
Standard library only; every wait bounded.

xinetd's interceptor can leave the daemon's process group and outlive the daemon, so
the scenario adopts its orphaned descendants (a child subreaper) and, at the end, kills
and reaps every process still below it, by pid; their pids go to stderr.
"""

import json
import os
import re
import socket
import sys
import time

from scenario_support import (
    become_subreaper, begin, children_of, end_descendants, free_port, read, running,
    settled)

HERE = os.path.dirname(os.path.abspath(__file__))


def first_reply(source: str, port: int) -> str:
    conn = socket.socket()
    conn.settimeout(5)
    try:
        conn.bind((source, 0))
        conn.connect(("127.0.0.1", port))
        data = conn.recv(200).decode(errors="replace")
        if data:
            conn.sendall(b"bye\n")
            conn.recv(200)
        return data
    except OSError:
        return ""
    finally:
        conn.close()


def main() -> int:
    if not become_subreaper():
        raise SystemExit("cannot become a child subreaper (prctl)")
    try:
        return scenario()
    finally:
        left = end_descendants()
        if left:
            print(f"ended leftover processes: {left}", file=sys.stderr)


def scenario() -> int:
    run = begin()
    service_log, program_log, conf = run.service_log, run.program_log, run.conf
    port = free_port()
    with open(conf, "w") as f:
        f.write(f"""defaults
{{
\tlog_type = FILE {service_log}
\tlog_on_success = PID HOST
\tlog_on_failure = HOST
\tcps = 0 0
}}
service icept
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = yes
\tuser = root
\tserver = {sys.executable}
\tserver_args = -I -S {os.path.join(HERE, "intercept_server.py")} 3 3
\tbind = 127.0.0.1
\tport = {port}
\tflags = INTERCEPT
\tno_access = 127.0.0.3
}}
""")
    result = {}
    with running(run.daemon, conf, program_log) as daemon:
        before = children_of(daemon.pid)    # what a wrapper may have left (a test's)
        result["replies"] = [first_reply(source, port)
                             for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2")]
        # The log lines and xinetd's dup2 errors are written by processes that may
        # still run when the clients have their replies: wait for a line for each
        # client, or, as xinetd logs fewer, until its interceptors and their children
        # have exited (pyxinetd's server, refused one client, idles for 3 s first).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not settled(daemon.pid, before):
            if len(re.findall(r"(?:START|FAIL): icept ", read(service_log))) >= 3:
                break
            time.sleep(0.02)
        result["lines"] = re.findall(r"(?:START|FAIL): icept .*", read(service_log))
    result["program_log"] = read(program_log)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
