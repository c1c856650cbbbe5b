"""Starting one external server for an admitted request, and what surrounds the spawn.

The spawn itself is pyxinetd.spawner; around it: the `stderr` file the server gets
instead of its socket, the child recorded in the table at once (with its client, for
the limits and the state dump), the START line, and a failed fork either held for a
retry (pyxinetd.forkretry) or reported with a FAIL line.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from pyxinetd.children import Child, ChildTable, ExitStatus
from pyxinetd.config.model import ServiceConfig
from pyxinetd.errors import SpawnError
from pyxinetd.filerights import append_for, rights_of
from pyxinetd.forkretry import REASON_FORK, ForkRetry, Hold, Outcome
from pyxinetd.log import ProgramLog, strerror
from pyxinetd.servicelog import ServiceLogs, fail_entry, start_entry
from pyxinetd.spawner import spawn


class ServerStarter:
    """Starts servers and records them in the child table."""

    def __init__(self, children: ChildTable, program: ProgramLog, logs: ServiceLogs,
                 retries: ForkRetry, *, as_root: bool, clock: Callable[[], float],
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.children = children
        self.program = program
        self.logs = logs
        self.retries = retries
        self.as_root = as_root
        self._clock = clock
        self._wall = wall_clock

    def start(self, svc: ServiceConfig, sock: socket.socket, peer: str,
              on_reap: Callable[[Child, ExitStatus], None] | None = None, *,
              hold: Hold | None = None, announce: bool = True,
              remote_name: str | None = None, sender: object = None,
              client: tuple[object, ...] | None = None,
              addresses: socket.socket | None = None) -> int | Outcome | None:
        """Start svc's server on `sock`: its pid, or None after a failure (logged).
        With `hold`, a failed fork is retried later (Outcome.HELD) or given up
        (Outcome.RELEASED, hold.release has run); see pyxinetd.forkretry. `announce`:
        write the START line (an intercepted server's clients get their own);
        `remote_name`: the client's confirmed name, and `sender` the datagram's source
        when `sock` cannot tell it (dgram wait = no), for PEERENV; `client`: the
        address of the request (the state dump shows its port); `addresses`: the
        socket whose addresses PEERENV tells, when not `sock` (an intercepted server's
        service socket)."""
        stderr_fd = -1
        try:
            if svc.stderr is not None:
                stderr_fd = self._stderr_for(svc)
            pid = spawn(svc, sock, peer, as_root=self.as_root, remote_name=remote_name,
                        stderr_fd=stderr_fd, sender=sender, addresses=addresses)
        except SpawnError as err:
            if hold is not None and err.no_process:
                return self.retries.failed(hold, svc, peer, err)
            self.program.error("spawn", str(err))
            if svc.log_type is not None:
                self.logs.write(svc, fail_entry(svc, REASON_FORK, peer))
            return None
        finally:
            if stderr_fd >= 0:
                os.close(stderr_fd)     # the server has its own copy
        if hold is not None and hold.rt.fork_failures:
            self.retries.succeeded(hold.rt)
        self.children.add(Child(pid, svc, peer, self._clock(), self._wall(), on_reap,
                                peer_port=_client_port(sock, client or sender)))
        if announce and svc.log_type is not None:
            self.logs.write(svc, start_entry(svc, pid, peer))
        return pid

    def _stderr_for(self, svc: ServiceConfig) -> int:
        """`stderr = FILE`: the file, opened for this start (appending; created 0640 by
        the daemon, so a server running as nobody can write it too), with the service's
        rights where a user other than root can change the path (pyxinetd.filerights).
        A file that cannot be opened is reported and the server's stderr goes to
        /dev/null: never to the client, which the service asked not to have it."""
        assert svc.stderr is not None
        try:
            # Without waiting: a FIFO with no reader is an error here, not a stall.
            return append_for(svc.stderr, 0o640, rights_of(svc))
        except OSError as err:
            self.program.error("spawn", f"{svc.id}: cannot open stderr file {svc.stderr} "
                                        f"({strerror(err)}); the server's stderr goes to "
                                        f"/dev/null")
        try:
            return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            raise SpawnError(f"{svc.id}: cannot open /dev/null for stderr: {strerror(err)}",
                             errno=err.errno or 0, step="descriptors") from err


def _client_port(sock: socket.socket, address: object) -> int:
    """The client's port: from the request's address when given, else from a connected
    stream socket; 0 when neither tells (a wait = yes stream server accepts itself)."""
    if not isinstance(address, tuple):
        try:
            address = sock.getpeername()
        except OSError:
            return 0
    port = address[1] if isinstance(address, tuple) and len(address) > 1 else 0
    return port if isinstance(port, int) else 0
