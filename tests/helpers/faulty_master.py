"""Run a Master whose connection handling fails, as a bug would, for one client address.

Usage: python faulty_master.py SPEC.pickle ADDRESS, SPEC as run_master.py's. Every
connection or datagram from ADDRESS raises RuntimeError in the dispatcher's first check
(`parent_check`, run for stream connections, internal datagrams and dgram/nowait
datagrams alike): the stand-in for a bug no real input is known to reach, to show that
such a bug costs that client alone. With $FAULT_AT=access_wait the failure is raised
instead where an admitted request has taken its instance slot and starts waiting for
its client's name (`AccessGate.wait`), to show that the slot is given back; with
$FAULT_AT=name_lookup, where a name lookup for the client is asked (`Resolver.lookup`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pyxinetd.access.gate import AccessGate
from pyxinetd.access.resolver import Resolver
from pyxinetd.dispatch import Dispatcher

sys.path.insert(0, str(Path(__file__).parent))
import run_master  # noqa: E402  (tests/helpers is not a package)

FAULTY_PEER = sys.argv.pop(2)
_check = Dispatcher.parent_check


def _failing(self: Dispatcher, rt: Any, peer: str) -> str | None:
    if peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {peer}")
    return _check(self, rt, peer)


_wait = AccessGate.wait


def _failing_wait(self: AccessGate, svc: Any, peer: str, *args: Any, **kwargs: Any) -> None:
    if peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {peer}")
    _wait(self, svc, peer, *args, **kwargs)


_lookup = Resolver.lookup


def _failing_lookup(self: Resolver, address: str, *args: Any, **kwargs: Any) -> None:
    if address == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {address}")
    _lookup(self, address, *args, **kwargs)


if os.environ.get("FAULT_AT") == "access_wait":
    AccessGate.wait = _failing_wait  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "name_lookup":
    Resolver.lookup = _failing_lookup  # type: ignore[method-assign]
else:
    Dispatcher.parent_check = _failing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(run_master.main())
