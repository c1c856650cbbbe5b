"""Identity lookups count in the daemon's in-loop share of descriptors.

Run as `unshare -n python3 userid_share_scenario.py WORKDIR` (a private network
namespace: the identd must have port 113 of the client's address). An identd that
accepts and never answers holds each lookup until the daemon's timeout; the daemon runs
under a descriptor limit of 64. Many clients of a service that logs USERID on success
each hold their connection and an ident socket; another service, exec'd, must still be
served meanwhile. Prints, as JSON, what that service answered, how many lookups the
identd saw and the program log. Every wait is bounded; everything started here is
stopped here.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

from silent_identd import SilentIdentd, read, start_daemon, stop_daemon

USERID_PORT, PLAIN_PORT = 7200, 7201
CLIENTS = 60
LIMIT = 64
DEADLINE = 20.0


def service(name: str, port: int, extra: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = {name}\n\tport = {port}\n"
            f"\tbind = 127.0.0.1\n\tinstances = UNLIMITED\n\tper_source = UNLIMITED\n"
            f"\tcps = 0 0\n{extra}}}\n")


def main() -> int:
    workdir = Path(sys.argv[1])
    identd = SilentIdentd()
    conf = workdir / "userid.conf"
    conf.write_text(service("identified", USERID_PORT,
                            f"\tlog_type = FILE {workdir / 'service.log'}\n"
                            "\tlog_on_success = HOST USERID\n")
                    + service("plain", PLAIN_PORT, ""))
    program_log = workdir / "program.log"
    clients: list[socket.socket] = []
    try:
        daemon = start_daemon(conf, program_log,
                              prefix=("prlimit", f"--nofile={LIMIT}:{LIMIT}", "--"))
        try:
            deadline = time.monotonic() + DEADLINE
            for _ in range(CLIENTS):
                # Connected all: the ones beyond the share wait in the listen queue.
                clients.append(socket.create_connection(("127.0.0.1", USERID_PORT),
                                                        timeout=DEADLINE))
            while "identity lookups hold" not in read(program_log):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            try:
                with socket.create_connection(("127.0.0.1", PLAIN_PORT), timeout=5) as conn:
                    answer = conn.makefile("rb").read().decode(errors="replace")
            except OSError as err:
                answer = f"failed: {err}"
            print(json.dumps({"plain": answer, "lookups": identd.queries,
                              "program": read(program_log)}))
        finally:
            for client in clients:
                client.close()
            stop_daemon(daemon)
    finally:
        identd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
