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
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ANSWER_WAIT = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(path: str, pattern: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if re.search(pattern, f.read()):
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return False


def served(conn: socket.socket) -> bool:
    conn.settimeout(ANSWER_WAIT)
    try:
        return conn.recv(100).startswith(b"pid=")
    except OSError:
        return False


def main() -> int:
    workdir, daemon = sys.argv[1], sys.argv[2:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    holder_port, waiter_port = free_port(), free_port()
    service_log = os.path.join(workdir, "services.log")
    program_log = os.path.join(workdir, "program.log")
    conf = os.path.join(workdir, "xinetd.conf")
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
    proc = subprocess.Popen([*daemon, "-f", conf, "-dontfork", "-limit", "1",
                             "-filelog", program_log], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = {}
    try:
        if not wait_for(program_log, "Started working", time.monotonic() + 20):
            raise SystemExit("the daemon did not start")
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
        with open(service_log, errors="replace") as f:
            result["fail_lines"] = f.read().count("FAIL: waiter")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
