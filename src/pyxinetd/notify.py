"""Telling a service manager how the daemon is doing (systemd's sd_notify protocol).

When systemd starts the daemon with `Type=notify`, `$NOTIFY_SOCKET` names a datagram
socket (a path, or `@name` in the abstract namespace) and the daemon reports, one
datagram of `KEY=value` lines each:

- `READY=1` with `STATUS=Started working: N available services` and `MAINPID`, once
  the start-up binds have settled (systemd holds back units ordered after it until then);
- `RELOADING=1` (with `MONOTONIC_USEC`, as systemd 253+ asks) when a reload starts, and
  `READY=1` with the outcome as `STATUS` when it has been applied or refused; both
  statuses end with the reload's number, `(reload N)`, so that each reload changes
  the status text, even one whose outcome reads as the last one's: the unit's reload
  command waits for that change (systemd 252 would otherwise end the reload job
  before the daemon has taken the signal);
- `STOPPING=1` when the daemon begins to exit;
- `WATCHDOG=1` every half `$WATCHDOG_USEC` when the unit sets `WatchdogSec=` (a timer
  in the loop, so a wedged loop stops the pings and systemd restarts the daemon).

The variables are removed from the daemon's environment as soon as they are read, so
servers never inherit them: xinetd's servers never had them either. Sending is best
effort and never blocks: a full or vanished socket only loses that notification (the
first failure is logged, once).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from pyxinetd.log import strerror
from pyxinetd.loop import Loop


@dataclass(frozen=True)
class NotifyTarget:
    """Where to send notifications, from the environment the daemon was started with."""

    address: str  # a path, or "\0name" for an abstract socket
    watchdog_interval: float | None = None  # seconds between WATCHDOG=1


def take_from_environment(environ: MutableMapping[str, str],
                          pid: int | None = None) -> NotifyTarget | None:
    """Read and remove $NOTIFY_SOCKET and the watchdog variables; None without a socket.

    `pid` is the process the service manager started (default: this one): the watchdog
    is not for it when $WATCHDOG_PID names another process (sd_watchdog_enabled).
    """
    name = environ.pop("NOTIFY_SOCKET", None)
    usec = environ.pop("WATCHDOG_USEC", None)
    watchdog_pid = environ.pop("WATCHDOG_PID", None)
    if not name or name[0] not in "/@" or len(name) < 2:
        return None  # unset, or a kind this daemon does not speak (vsock:...)
    address = "\0" + name[1:] if name[0] == "@" else name
    interval = None
    if usec is not None and (watchdog_pid is None
                             or watchdog_pid == str(os.getpid() if pid is None else pid)):
        try:
            micros = int(usec)
        except ValueError:
            micros = 0
        if micros > 0:
            interval = micros / 2 / 1_000_000
    return NotifyTarget(address, interval)


class Notifier:
    """Sends the daemon's state changes to the service manager; a no-op without target."""

    def __init__(self, target: NotifyTarget | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self._target = target
        self._warn = warn
        self._sock: socket.socket | None = None
        self._stopping = False
        self._warned = False
        self._reloads = 0  # reloads begun; the statuses from the first one on say which

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={self._numbered(status)}\nMAINPID={os.getpid()}")

    def reloading(self) -> None:
        self._reloads += 1
        monotonic = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nSTATUS={self._numbered('Reloading the configuration')}\n"
                   f"MONOTONIC_USEC={monotonic}")

    def _numbered(self, status: str) -> str:
        return f"{status} (reload {self._reloads})" if self._reloads else status

    def stopping(self, status: str) -> None:
        if not self._stopping:
            self._stopping = True
            self._send(f"STOPPING=1\nSTATUS={status}")

    def start_watchdog(self, loop: Loop) -> None:
        """Ping every half watchdog period from a loop timer, if the unit asked for it."""
        target = self._target
        if target is None or target.watchdog_interval is None:
            return
        interval = target.watchdog_interval

        def ping() -> None:
            self._send("WATCHDOG=1")
            loop.call_later(interval, ping)

        ping()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        if self._target is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM
                                           | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8", "replace"), self._target.address)
        except OSError as err:
            # EAGAIN (the manager is behind), ENOENT/ECONNREFUSED (it went away), ...:
            # that notification is lost; serving is not affected.
            if not self._warned and self._warn is not None:
                self._warned = True
                where = self._target.address.replace("\0", "@", 1)
                self._warn(f"cannot notify the service manager at {where} "
                           f"({strerror(err)}); further failures are not logged")
