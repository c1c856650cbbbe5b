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
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

IDENT_PORT = 113
PORT = 7100
CLIENTS = 3
DEADLINE = 20.0


def main() -> int:
    workdir, logprocs = Path(sys.argv[1]), sys.argv[2]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    identd = socket.socket()
    identd.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    identd.bind(("127.0.0.1", IDENT_PORT))
    identd.listen(16)
    identd.settimeout(0.2)
    queries: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        # Accepts and never answers: each lookup lasts until the daemon gives up.
        while not stop.is_set():
            try:
                queries.append(identd.accept()[0])
            except TimeoutError:
                continue
    threading.Thread(target=hold, daemon=True).start()

    conf = workdir / "logprocs.conf"
    log = workdir / "service.log"
    conf.write_text(
        "service refused\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = root\n\tserver = /bin/echo\n\tport = {PORT}\n\tbind = 127.0.0.1\n"
        "\tonly_from = 10.0.0.1\n\tinstances = UNLIMITED\n\tcps = 0 0\n"
        f"\tlog_type = FILE {log}\n\tlog_on_failure = HOST USERID\n}}\n")
    program_log = workdir / "program.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork", "-filelog",
         str(program_log), "-logprocs", logprocs],
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while "Started working" not in _read(program_log):
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the daemon did not start:\n{_read(program_log)}")
            time.sleep(0.05)
        clients = [socket.create_connection(("127.0.0.1", PORT), timeout=DEADLINE)
                   for _ in range(CLIENTS)]
        # The refusals are logged at once; their lookups start meanwhile (each one
        # running is held by the identd until the daemon's timeout). All the lookups
        # that will ever start have by the end of that timeout: wait for all three
        # or for its end, whichever comes first.
        lookups_over = time.monotonic() + float(os.environ["PYXINETD_IDENT_TIMEOUT"]) + 1
        while len(queries) < CLIENTS and time.monotonic() < min(lookups_over, deadline):
            time.sleep(0.05)
        while _read(log).count("FAIL: refused") < CLIENTS and time.monotonic() < deadline:
            time.sleep(0.05)
        for client in clients:
            client.close()
        print(json.dumps({"queries": len(queries), "log": _read(log),
                          "program": _read(program_log)}))
    finally:
        stop.set()
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(5)
        for query in queries:
            query.close()
        identd.close()
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
