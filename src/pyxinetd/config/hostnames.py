"""Whether the host names of `only_from`/`no_access` resolve, asked at load time for a
diagnostic only.

xinetd resolves each name when it reads the list and drops one that does not resolve,
with `failed to parse NAME`; pyxinetd keeps such an entry (it matches the client's
reverse name, whatever the name's own addresses are), but a typo (`localhots`) must
still be reported at its line. The lookups run side by side on a few daemon threads
while the rest of the configuration is read, and the loader waits for them a bounded
time at the end: with the DNS down, a load is late by that bound, not by the
resolver's timeout per name; a name not answered by then is not reported.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

from pyxinetd.textbytes import as_written

# Threads asking at once, and how long the load waits for the answers still missing.
WORKERS = 8
WAIT_SECONDS = 2.0


class HostNameCheck:
    def __init__(self) -> None:
        self._todo: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._asked: set[str] = set()
        self._failed: dict[str, str] = {}
        self._pending = 0
        self._workers = 0
        self._done = threading.Condition()

    def ask(self, name: str) -> None:
        """Start the lookup of `name` (once per name)."""
        if name in self._asked:
            return
        self._asked.add(name)
        self._todo.put(name)
        with self._done:
            self._pending += 1
            if self._workers >= WORKERS:
                return
            self._workers += 1
        try:
            threading.Thread(target=self._work, name="hostname-check", daemon=True).start()
        except RuntimeError:
            # No thread to be had (a pids cgroup, RLIMIT_NPROC): the check is only a
            # diagnostic, the load goes on without it. Left to no worker, the names
            # queued are not checked.
            with self._done:
                self._workers -= 1
                if self._workers == 0:
                    while True:
                        try:
                            self._todo.get_nowait()
                        except queue.Empty:
                            break
                        self._pending -= 1
                    self._done.notify_all()

    def failures(self, wait: float = WAIT_SECONDS) -> dict[str, str]:
        """The names that did not resolve, with why; waits at most `wait` seconds for the
        lookups still running (those are left out)."""
        deadline = time.monotonic() + wait
        with self._done:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._done.wait(left)
            return dict(self._failed)

    def _work(self) -> None:
        # A worker ends when it finds nothing to do: a process that loads in-process
        # again and again (`check`, the tests) keeps no idle threads.
        while True:
            with self._done:
                try:
                    name = self._todo.get_nowait()
                except queue.Empty:
                    self._workers -= 1
                    return
            why = _resolve(name)
            with self._done:
                if why is not None:
                    self._failed[name] = why
                self._pending -= 1
                self._done.notify_all()


def _resolve(name: str) -> str | None:
    """None when `name` has an address, else why not (the resolver's words)."""
    try:
        # As bytes, as for a bind host: a name with bytes that are not UTF-8 is looked
        # up as written.
        socket.getaddrinfo(as_written(name), None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    except (OSError, UnicodeError, ValueError) as exc:
        return str(exc)
    return None
