"""The serving cases and their targets (rate ratio pyxinetd/xinetd, p99 no worse)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    service: str  # key of a bench.confgen.BenchService
    concurrency: int
    min_ratio: float  # pyxinetd rate / xinetd rate must be at least this
    what: str
    # Measured for --duration times this: a slow case needs longer for a p99 worth
    # comparing (at ~60 requests/s, 5 s give 300 samples, and the p99 is the 3rd worst).
    duration_factor: float = 1.0


CASES: tuple[Case, ...] = (
    Case("exec-root-c1", "exec-root", 1, 1.3,
         "nowait TCP, fork+exec /bin/echo as root, 1 client"),
    Case("exec-root-c8", "exec-root", 8, 1.3,
         "nowait TCP, fork+exec /bin/echo as root, 8 clients"),
    Case("exec-nobody-c1", "exec-nobody", 1, 1.0,
         "nowait TCP, fork+exec /bin/echo as nobody, 1 client"),
    Case("exec-nobody-c8", "exec-nobody", 8, 1.0,
         "nowait TCP, fork+exec /bin/echo as nobody, 8 clients"),
    Case("echo-tcp-c1", "echo-tcp", 1, 3.0,
         "internal echo over TCP (one connection per request), 1 client"),
    Case("echo-tcp-c8", "echo-tcp", 8, 3.0,
         "internal echo over TCP (one connection per request), 8 clients"),
    Case("echo-udp-c1", "echo-udp", 1, 1.0,
         "internal echo over UDP, 1 client"),
    Case("echo-udp-c8", "echo-udp", 8, 1.0,
         "internal echo over UDP, 8 clients"),
    Case("wait-c1", "wait", 1, 1.0,
         "wait=yes TCP, server accepts one connection and exits, 1 client",
         duration_factor=4.0),
)


def select(patterns: str | None) -> list[Case]:
    """Cases whose name matches any comma-separated glob (a bare word matches a prefix)."""
    if not patterns:
        return list(CASES)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [c for c in CASES
              if any(fnmatch.fnmatchcase(c.name, p if any(ch in p for ch in "*?[") else p + "*")
                     for p in wanted)]
    if not chosen:
        names = ", ".join(c.name for c in CASES)
        raise ValueError(f"no case matches {patterns!r}; cases: {names}")
    return chosen
