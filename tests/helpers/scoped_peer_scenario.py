"""A client with a link-local (scoped) IPv6 address, against one daemon inside a private
network namespace.

    unshare -n python3 scoped_peer_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up and gives it fe80::1 (no duplicate address detection), writes a nowait
stream service running tests/helpers/env_probe.py with a FILE service log
(`log_on_success = HOST`), connects from fe80::1%lo to fe80::1%lo and prints one JSON
object: the server's REMOTE_HOST and the service's START line. Standard library only;
every wait bounded.
"""

import json
import os
import socket
import subprocess
import sys
import time

from scenario_support import begin, free_port, read, running, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ADDRESS = "fe80::1"


def main() -> int:
    run = begin()
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/64", "dev", "lo", "nodad"], check=True)
    port = free_port()
    with open(run.conf, "w") as f:
        f.write(f"""service probe
{{
    type = UNLISTED
    port = {port}
    socket_type = stream
    wait = no
    user = root
    flags = IPv6
    server = {sys.executable}
    server_args = -I -S {os.path.join(HERE, "env_probe.py")} stream
    log_type = FILE {run.service_log}
    log_on_success = HOST
}}
""")
    index = socket.if_nametoindex("lo")
    entries = []
    with running(run.daemon, run.conf, run.program_log):
        with socket.socket(socket.AF_INET6) as conn:
            conn.settimeout(10)
            conn.bind((ADDRESS, 0, 0, index))
            conn.connect((ADDRESS, port, 0, index))
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        entries = json.loads(data)
        wait_for(run.service_log, "START", time.monotonic() + 10)
    remote = [e.split("=", 1)[1] for e in entries if e.startswith("REMOTE_HOST=")]
    start = [line for line in read(run.service_log).splitlines() if "START:" in line]
    print(json.dumps({"remote_host": remote, "start": start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
