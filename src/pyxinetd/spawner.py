"""Starting external servers (minimal version: to be replaced by the full checklist).

This covers the contract the master relies on: the socket on fds 0-2 and nothing
else inherited, a new session, default signal dispositions, user/group/groups/umask,
the environment with REMOTE_HOST, and exec failures reported as SpawnError with the
child already gone. It does not apply `nice` or rlimits yet.

The master reaps every child itself with waitpid(-1), so the Popen object must never
wait: its returncode is set at once, which keeps subprocess from collecting the
child behind the master's back (subprocess._cleanup would otherwise steal the status).
"""

from __future__ import annotations

import os
import socket
import subprocess

from pyxinetd.config.model import ServiceConfig
from pyxinetd.errors import SpawnError


def spawn(service: ServiceConfig, sock: socket.socket, remote_host: str, *,
          as_root: bool) -> int:
    """Start the service's server on `sock`; return its pid. Raises SpawnError."""
    if service.server is None:
        raise SpawnError(f"service {service.id} has no server")
    base = service.environment if service.environment is not None else tuple(
        f"{k}={v}" for k, v in os.environ.items())
    env: dict[str, str] = {}
    for item in base:
        name, _, value = item.partition("=")
        env[name] = value
    env["REMOTE_HOST"] = remote_host
    fd = sock.fileno()
    change_ids = as_root and (service.user is not None or service.group is not None)
    try:
        proc = subprocess.Popen(
            list(service.server_argv), executable=service.server, env=env,
            stdin=fd, stdout=fd, stderr=fd, close_fds=True, start_new_session=True,
            restore_signals=True,
            user=service.user if change_ids else None,
            group=service.group if change_ids else None,
            extra_groups=list(service.supplementary_groups) if change_ids else None,
            umask=service.umask if service.umask is not None else -1,
        )
    except OSError as err:
        raise SpawnError(f"{service.id}: exec of {service.server} failed: {err.strerror}"
                         ) from err
    except (ValueError, subprocess.SubprocessError) as err:
        raise SpawnError(f"{service.id}: could not start {service.server}: {err}") from err
    proc.returncode = 0
    return proc.pid
