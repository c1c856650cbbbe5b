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
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

IDENT_PORT = 113
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
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    identd = socket.socket()
    identd.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    identd.bind(("127.0.0.1", IDENT_PORT))
    identd.listen(128)
    identd.settimeout(0.2)
    queries: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                queries.append(identd.accept()[0])
            except TimeoutError:
                continue
    threading.Thread(target=hold, daemon=True).start()

    conf = workdir / "userid.conf"
    conf.write_text(service("identified", USERID_PORT,
                            f"\tlog_type = FILE {workdir / 'service.log'}\n"
                            "\tlog_on_success = HOST USERID\n")
                    + service("plain", PLAIN_PORT, ""))
    program_log = workdir / "program.log"
    daemon = subprocess.Popen(
        ["prlimit", f"--nofile={LIMIT}:{LIMIT}", "--", sys.executable, "-m", "pyxinetd",
         "-f", str(conf), "-dontfork", "-filelog", str(program_log)],
        stdin=subprocess.DEVNULL, start_new_session=True)
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + DEADLINE
        while "Started working" not in _read(program_log):
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the daemon did not start:\n{_read(program_log)}")
            time.sleep(0.05)
        for _ in range(CLIENTS):
            # Connected all: the ones beyond the share wait in the listen queue.
            clients.append(socket.create_connection(("127.0.0.1", USERID_PORT),
                                                    timeout=DEADLINE))
        while "identity lookups hold" not in _read(program_log):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        try:
            with socket.create_connection(("127.0.0.1", PLAIN_PORT), timeout=5) as conn:
                answer = conn.makefile("rb").read().decode(errors="replace")
        except OSError as err:
            answer = f"failed: {err}"
        print(json.dumps({"plain": answer, "lookups": len(queries),
                          "program": _read(program_log)}))
    finally:
        stop.set()
        for client in clients:
            client.close()
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
