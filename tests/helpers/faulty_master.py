"""Run a Master whose connection handling fails, as a bug would, for one client address.

Usage: python faulty_master.py SPEC.pickle ADDRESS, SPEC as run_master.py's. Every
connection from ADDRESS raises RuntimeError in the dispatcher's per-connection handling,
before any check: the stand-in for a bug no real input is known to reach, to show that
such a bug costs that client alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pyxinetd.dispatch import Dispatcher

sys.path.insert(0, str(Path(__file__).parent))
import run_master  # noqa: E402  (tests/helpers is not a package)

FAULTY_PEER = sys.argv.pop(2)
_handle = Dispatcher._handle_connection


def _failing(self: Dispatcher, rt: Any, conn: Any, addr: Any, peer: str) -> None:
    if peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {peer}")
    _handle(self, rt, conn, addr, peer)


Dispatcher._handle_connection = _failing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(run_master.main())
