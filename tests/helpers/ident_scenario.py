"""USERID/IDONLY scenarios against a real daemon, with an identd on the fixed port 113.

Run inside a private network namespace (it brings `lo` up itself):

    unshare -n python3 ident_scenario.py --workdir DIR [--xinetd PATH] [--only a,b]

Starts a small identd on 127.0.0.1:113 and [::1]:113 whose answer depends on the
service port asked about (the second number of the query), writes a configuration with
one service per scenario, starts the daemon (pyxinetd, or the real xinetd with
--xinetd) with `-dontfork -filelog`, runs one client per scenario, one after the other,
and prints a JSON object: the service log and program log lines, what each client
received, and the queries the identd read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

IDENT_PORT = 113
DEADLINE = 20.0


@dataclass(frozen=True)
class Scenario:
    name: str
    port: int
    mode: str                   # what the identd answers about this port
    flags: str = "IPv4"
    log_on_success: str = "HOST USERID"
    log_on_failure: str = "HOST"
    extra: str = ""             # more attribute lines
    server: str = "/bin/echo"   # None of these read their input
    client_host: str = "127.0.0.1"
    source: str | None = None   # the client's own address
    internal: bool = False
    # Connect twice: the second connection arrives while the first one is held.
    twice: bool = False


def _far_window() -> str:
    """An access_times window six hours from now: every connection is refused."""
    t = time.localtime(time.time() + 6 * 3600)
    start = min(t.tm_hour * 60 + t.tm_min, 23 * 60 + 58)
    return (f"access_times = {start // 60:02d}:{start % 60:02d}-"
            f"{(start + 1) // 60:02d}:{(start + 1) % 60:02d}")


SCENARIOS = [
    Scenario("ok", 7001, "userid"),
    Scenario("err", 7002, "error"),
    Scenario("only_ok", 7003, "userid", flags="IPv4 IDONLY"),
    Scenario("only_garbage", 7004, "garbage", flags="IPv4 IDONLY"),
    Scenario("only_ports", 7005, "wrongports", flags="IPv4 IDONLY"),
    Scenario("only_eof", 7006, "eof", flags="IPv4 IDONLY"),
    Scenario("only_long", 7007, "long", flags="IPv4 IDONLY"),
    Scenario("only_none", 7008, "userid", flags="IPv4 IDONLY", source="127.0.0.2"),
    Scenario("none", 7009, "userid", source="127.0.0.2"),
    Scenario("refused", 7010, "userid", log_on_success="HOST",
             log_on_failure="HOST USERID", extra=_far_window()),
    Scenario("refused_addr", 7011, "userid", log_on_success="HOST",
             log_on_failure="HOST USERID", extra="only_from = 10.0.0.1"),
    Scenario("dual", 7012, "userid", flags=""),
    Scenario("v6", 7013, "userid", flags="IPv6", client_host="::1"),
    Scenario("echo_only", 7014, "garbage", flags="IPv4 IDONLY", internal=True),
    Scenario("daytime_only", 7015, "garbage", flags="IPv4 IDONLY", internal=True),
    Scenario("only_silent", 7016, "silent", flags="IPv4 IDONLY"),
    Scenario("silent", 7017, "silent"),
    Scenario("held_limit", 7018, "silent", extra="instances = 1", twice=True),
    # An IPv4 client of a dual-stack service whose identd answers garbage: the
    # program log names it as the socket does (::ffff:127.0.0.1).
    Scenario("dual_garbage", 7019, "garbage", flags="IDONLY"),
    # An identd that resets the connection half way through its line.
    Scenario("only_reset", 7020, "reset", flags="IPv4 IDONLY"),
    # The server waits for its client's name too (PEERENV, pyxinetd's): the USERID
    # line still comes after its START line.
    Scenario("peerenv", 7021, "userid", flags="IPv4 PEERENV"),
    # A builtin whose session ends at once (the client's EOF already queued): its EXIT
    # line comes after the USERID line, as xinetd's child writes them.
    Scenario("echo_userid", 7022, "userid", log_on_success="HOST USERID EXIT",
             internal=True),
]
INTERNAL_NAMES = {"echo_only": "echo", "daytime_only": "daytime", "echo_userid": "echo"}


# -- the identd ---------------------------------------------------------------------

class Identd:
    def __init__(self, modes: dict[int, str],
                 hosts: tuple[str, str] = ("127.0.0.1", "::1")) -> None:
        self.modes = modes
        self.queries: list[str] = []
        self.stop = threading.Event()
        # Mode "held": the query has arrived (`held`); answered once `release` is set.
        self.held = threading.Event()
        self.release = threading.Event()
        self.listeners: list[socket.socket] = []
        for family, host in zip((socket.AF_INET, socket.AF_INET6), hosts):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, IDENT_PORT))
            sock.listen(16)
            self.listeners.append(sock)
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n" not in data and len(data) < 100:
                    chunk = conn.recv(100)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                return
            self.queries.append(data.decode(errors="replace"))
            m = re.fullmatch(rb"(\d+),(\d+)\r\n", data)
            if m is None:
                return
            remote, local = int(m.group(1)), int(m.group(2))
            mode = self.modes.get(local, "userid")
            replies = {
                "userid": f"{remote} , {local} : USERID : UNIX : alice\r\n",
                "error": f"{remote} , {local} : ERROR : NO-USER\r\n",
                "garbage": "garbage\r\n",
                "wrongports": f"{remote + 1} , {local} : USERID : UNIX : mallory\r\n",
                "eof": "no end of line",
                "long": "x" * 2000,
                "reset": f"{remote} , {local} : USERID",
            }
            if mode == "held":
                self.held.set()
                self.release.wait(DEADLINE)
                mode = "userid"
            try:
                if mode in replies:
                    conn.sendall(replies[mode].encode())
                if mode in ("long", "silent"):
                    self.stop.wait(60)
                if mode == "reset":
                    # Close with a reset (SO_LINGER 0) instead of a FIN: the reader
                    # gets the partial line, then ECONNRESET.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        for sock in self.listeners:
            sock.close()


IDENTD: Identd


# -- the daemon ---------------------------------------------------------------------

def write_config(workdir: Path, scenarios: list[Scenario]) -> Path:
    log = workdir / "service.log"
    blocks = []
    for s in scenarios:
        lines = [f"socket_type = stream", "wait = no", "protocol = tcp",
                 f"port = {s.port}", f"log_type = FILE {log}",
                 f"log_on_success = {s.log_on_success}",
                 f"log_on_failure = {s.log_on_failure}"]
        if s.flags:
            lines.append(f"flags = {s.flags}")
        if s.internal:
            lines += ["type = INTERNAL UNLISTED", f"id = {s.name}", "user = root"]
        else:
            lines += ["type = UNLISTED", "user = nobody", f"server = {s.server}",
                      f"server_args = {s.name}"]
        if s.extra:
            lines.append(s.extra)
        name = INTERNAL_NAMES.get(s.name, s.name)
        body = "".join(f"\t{line}\n" for line in lines)
        blocks.append(f"service {name}\n{{\n{body}}}\n")
    conf = workdir / "xinetd.conf"
    conf.write_text("\n".join(blocks))
    return conf


def start_daemon(conf: Path, workdir: Path, xinetd: str | None) -> subprocess.Popen[bytes]:
    program_log = workdir / "program.log"
    if xinetd:
        argv = [xinetd, "-dontfork", "-f", str(conf), "-filelog", str(program_log)]
    else:
        argv = [sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                "-filelog", str(program_log)]
    err = open(workdir / "daemon.err", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                            start_new_session=True, cwd=workdir)
    err.close()
    deadline = time.monotonic() + DEADLINE
    while "Started working" not in _read(program_log):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"daemon did not start: {_read(workdir / 'daemon.err')}"
                             f"{_read(program_log)}")
        time.sleep(0.02)
    return proc


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def run_client(s: Scenario) -> str:
    """Connect, half-close, read to EOF: what the client received, or an error word.
    With `twice`, both answers, joined by `|`."""
    family = socket.AF_INET6 if ":" in s.client_host else socket.AF_INET
    first = socket.socket(family, socket.SOCK_STREAM)
    second = socket.socket(family, socket.SOCK_STREAM) if s.twice else None
    with first:
        try:
            _connect(first, s)
            if second is None:
                return _read_all(first)
            with second:
                # The daemon accepted the first one once the identd saw its query.
                deadline = time.monotonic() + DEADLINE
                while not any(q.endswith(f",{s.port}\r\n") for q in IDENTD.queries):
                    if time.monotonic() > deadline:
                        return "<no query>"
                    time.sleep(0.01)
                _connect(second, s)
                later = _read_all(second)
                return f"{_read_all(first)}|{later}"
        except OSError as err:
            return f"<{type(err).__name__}>"


def _connect(sock: socket.socket, s: Scenario) -> None:
    sock.settimeout(DEADLINE)
    if s.source:
        sock.bind((s.source, 0))
    sock.connect((s.client_host, s.port))
    sock.shutdown(socket.SHUT_WR)


def _read_all(sock: socket.socket) -> str:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data.decode(errors="replace")
        data += chunk


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--xinetd")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    wanted = set(filter(None, args.only.split(",")))
    scenarios = [s for s in SCENARIOS if not wanted or s.name in wanted]
    global IDENTD
    identd = IDENTD = Identd({s.port: s.mode for s in scenarios})
    conf = write_config(args.workdir, scenarios)
    proc = start_daemon(conf, args.workdir, args.xinetd)
    clients: dict[str, str] = {}
    try:
        for s in scenarios:
            clients[s.name] = run_client(s)
        # Lines written after the client's EOF (a server's EXIT) are not compared.
        time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        identd.close()
    print(json.dumps({
        "service_log": _read(args.workdir / "service.log").splitlines(),
        "program_log": _read(args.workdir / "program.log").splitlines(),
        "clients": clients,
        "queries": identd.queries,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
