"""Finding a free loopback port, shared by tests/daemon.py and the scenario scripts run in
namespaces (which import it as a sibling module)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Container


def free_port(handed_out: Container[int],
              also_free: Callable[[int], None] | None = None) -> int:
    """A port that the kernel gave a TCP bind(0) on 127.0.0.1, that UDP can bind there
    too, that is not in `handed_out`, and for which `also_free` raises no OSError. The
    kernel may give the same port to two bind(0) calls in a row, and a test asking for
    several ports before starting its daemons would then configure two services on one
    port: the caller records what it handed out and passes it back in."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            if port in handed_out:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        if also_free is not None:
            try:
                also_free(port)     # once the TCP probe has let go of the port
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")
