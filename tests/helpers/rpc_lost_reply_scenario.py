"""SIGTERM while a portmapper SET is unanswered: the version must not stay registered.

Run inside a private network namespace (it brings `lo` up itself):

    unshare -n python3 rpc_lost_reply_scenario.py DIR [DAEMON ARGV...]

A small portmapper on 127.0.0.1:111 (a thread here, real UDP) takes every SET into its
table without answering it, as a busy portmapper whose answers come late or are lost
would; it answers UNSET (dropping the program version) and nothing else. The daemon
(DAEMON ARGV, default pyxinetd; -dontfork -filelog) starts with one RPC service; once the portmapper has
taken its SET, the daemon gets SIGTERM. Prints one JSON object: the table left once the
daemon has exited, the procedures received in order, the exit status and the log.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rpc_scenario import read, rpc_service, wait_for  # noqa: E402

PROGRAM = 0x20000117
DEADLINE = 30.0
SET, UNSET = 1, 2


class SilentSetPortmapper:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 111))
        self.sock.settimeout(0.2)
        self.table: set[tuple[int, int, int, int]] = set()
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            words = struct.unpack(f">{len(data) // 4}I", data[:len(data) // 4 * 4])
            xid, procedure = words[0], words[5]
            program, version, protocol, port = words[10:14]
            with self.lock:
                self.calls.append(procedure)
                if procedure == SET:
                    self.table.add((program, version, protocol, port))
                    continue        # taken, never answered
                if procedure == UNSET:
                    self.table = {m for m in self.table
                                  if (m[0], m[1]) != (program, version)}
            # An accepted, successful reply carrying TRUE.
            self.sock.sendto(struct.pack(">7I", xid, 1, 0, 0, 0, 0, 1), peer)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


def main() -> None:
    work = Path(sys.argv[1])
    argv = sys.argv[2:] or [sys.executable, "-m", "pyxinetd"]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    portmapper = SilentSetPortmapper()
    conf, log = work / "rpc.conf", work / "daemon.log"
    conf.write_text(rpc_service("lostset", PROGRAM, "1", "tcp"))
    result: dict[str, object] = {}
    with open(work / "daemon.err", "wb") as err:
        daemon = subprocess.Popen(
            [*argv, "-dontfork", "-f", str(conf), "-filelog", str(log)], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
            start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        wait_for(lambda: SET in portmapper.calls or daemon.poll() is not None,
                 "the SET call", deadline)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=DEADLINE)
    except (SystemExit, subprocess.TimeoutExpired) as stop:
        result["error"] = str(stop)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
        portmapper.close()
        result["table"] = sorted(portmapper.table)
        result["calls"] = portmapper.calls
        result["returncode"] = daemon.returncode
        result["log"] = read(log) + read(work / "daemon.err")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
