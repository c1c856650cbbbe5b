"""What the USERID scenarios run in their private network namespace share: an identity
server that accepts and never answers, and the daemon they start and stop.

Imported by the scenario scripts beside it (logprocs_scenario.py,
userid_share_scenario.py), which run as `unshare -n python3 SCRIPT ...`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

IDENT_PORT = 113


class SilentIdentd:
    """Accepts on 127.0.0.1:113 and never answers: each lookup lasts until the daemon
    gives up (PYXINETD_IDENT_TIMEOUT)."""

    def __init__(self) -> None:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", IDENT_PORT))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._hold, daemon=True).start()

    @property
    def queries(self) -> int:
        """How many lookups reached it."""
        return len(self._held)

    def _hold(self) -> None:
        while not self._stop.is_set():
            try:
                self._held.append(self._sock.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._sock.close()


def start_daemon(conf: Path, program_log: Path, *options: str,
                 prefix: tuple[str, ...] = (), deadline: float = 20.0
                 ) -> subprocess.Popen[bytes]:
    """The daemon on `conf`, in its own session, once it has started working."""
    daemon = subprocess.Popen(
        [*prefix, sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
         "-filelog", str(program_log), *options],
        stdin=subprocess.DEVNULL, start_new_session=True)
    until = time.monotonic() + deadline
    while "Started working" not in read(program_log):
        if time.monotonic() > until or daemon.poll() is not None:
            stop_daemon(daemon)
            raise SystemExit(f"the daemon did not start:\n{read(program_log)}")
        time.sleep(0.05)
    return daemon


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group, SIGKILL after 5 s."""
    try:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(5)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(5)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
