"""Run a Master whose connection handling fails, as a bug would, for one client address.

Usage: python faulty_master.py SPEC.pickle ADDRESS, SPEC as run_master.py's. Every
connection or datagram from ADDRESS raises RuntimeError in the dispatcher's first check
(`parent_check`, run for stream connections, internal datagrams and dgram/nowait
datagrams alike): the stand-in for a bug no real input is known to reach, to show that
such a bug costs that client alone. With $FAULT_AT=access_wait the failure is raised
instead where an admitted request has taken its instance slot and starts waiting for
its client's name (`AccessGate.wait`), to show that the slot is given back; with
$FAULT_AT=name_lookup, where a name lookup for the client is asked (`Resolver.lookup`);
with $FAULT_AT=peerenv_lookup, only where the lookup is the one PEERENV asks for once
the access checks admitted the client (`Dispatcher._name_then_launch`); with
$FAULT_AT=judge_again_wait, only where a request admitted by rules a reload replaced
waits for the new rules' checks (`AccessGate.wait` from `Dispatcher.judge_again`);
with $FAULT_AT=verdict_refuse, only where a verdict that came after a wait (the
callback `AccessGate.wait` was given, run from the name resolver's socket's handler)
refuses the client (`Dispatcher.refuse`); with $FAULT_AT=intercept_refuse, only where
such a verdict refuses a client of an intercepted server (`Interception.fail` for a
stream client, `Dispatcher.refuse` for a datagram sender); with
$FAULT_AT=retry_judge, the client's forks fail (no process, as at a process limit;
retried every $PYXINETD_FORK_RETRY_INTERVAL seconds, never given up) until a reload
kept its service, and the new rules' judging of it at the retry fails
(`Dispatcher.judge_again`); with $FAULT_AT=retry_judge_held, the client's forks
always fail, and the new rules' judging at the retry fails once it has admitted the
request and its new fork failed (held again); with $FAULT_AT=resolver_unread, the name resolver's
socket is never watched: its answers stay unread until the master meets the socket
again, sending a request (a stand-in for a turn whose other handlers run first);
with $FAULT_AT=intercept_relayed, an intercepted server's client fails once its relay
to the server is set up (`StreamInterception._relay`: a failure after the connection
was handed on); with $FAULT_AT=session_started, once its in-loop session (a redirect,
a stream builtin) has the connection (`Sessions.start`); with $FAULT_AT=server_started,
once its server is forked (`ServerStarter.start` gave its pid); with
$FAULT_AT=intercept_handed, once an intercepted server's client is handed to the registry
(`StreamInterception._hand_late`: its verdict came after its server exited); with
$FAULT_AT=intercept_unsaturate, where an intercepted server's service socket is read
again once a client's verdict came (`StreamInterception._unsaturate`), for the faulty
client's verdict only; with $FAULT_AT=intercept_sender_admitted, once an intercepted
server's sender is admitted and handed on (a channel to the running server, or the
registry: `DatagramInterception._admit_sender`); with $FAULT_AT=fork_held, the faulty
client's first fork fails (no process: it is held for a retry), and its handling fails
once it is held (`Dispatcher._start_on` returned); with $FAULT_AT=ident_held, once the
client is handed to its ident lookup before its server starts (`UserIds.before_start`
returned); with $FAULT_AT=access_parked, once the client is parked for its access checks'
names or aclexec verdict (`AccessGate.wait` returned); with $FAULT_AT=peerenv_named, once an
admitted PEERENV client waits for its name before its server starts
(`Dispatcher._name_then_launch` returned); with $FAULT_AT=names_skipped, the access
checks never ask for the client's or the server's name (`AccessGate._wants` answers
"no name needed" for the faulty client, whatever its rules read).
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

from pyxinetd.access.gate import AccessGate
from pyxinetd.access.resolver import Resolver
from pyxinetd import forkretry, serverstart
from pyxinetd.dispatch import Dispatcher
from pyxinetd.errors import FORK_STEP, SpawnError
from pyxinetd.intercept.common import Interception
from pyxinetd.intercept.dgram import DatagramInterception
from pyxinetd.intercept.stream import StreamInterception
from pyxinetd.serverstart import ServerStarter
from pyxinetd.sessions import Sessions
from pyxinetd.userid import UserIds

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


# Inside which of the dispatcher's steps the daemon is (the fault's scope).
_inside: set[str] = set()


def _within(step: str, method: Any) -> Any:
    def marked(*args: Any, **kwargs: Any) -> Any:
        _inside.add(step)
        try:
            return method(*args, **kwargs)
        finally:
            _inside.discard(step)
    return marked


def _failing_within(step: str, method: Any, client_at: int) -> Any:
    """`method`, failing while inside `step` for the client its argument `client_at`
    names."""
    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        if step in _inside and args[client_at] == FAULTY_PEER:
            raise RuntimeError(f"injected failure for {FAULTY_PEER}")
        return method(self, *args, **kwargs)
    return failing


def _marking_wait(self: AccessGate, svc: Any, peer: str, decided: Any, *args: Any,
                  **kwargs: Any) -> None:
    _wait(self, svc, peer, _within("verdict", decided), *args, **kwargs)


_spawn = serverstart.spawn
_rehome = Dispatcher.rehome
_judge_again = Dispatcher.judge_again
_reloaded: list[bool] = []


def _failing_fork(svc: Any, sock: Any, peer: str, **kwargs: Any) -> int:
    if peer == FAULTY_PEER and not _reloaded:
        raise SpawnError("fork failed", errno=errno.EAGAIN, step=FORK_STEP)
    return _spawn(svc, sock, peer, **kwargs)


def _failing_judge_again(self: Dispatcher, rt: Any, peer: str, **kwargs: Any) -> None:
    if peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {peer}")
    _judge_again(self, rt, peer, **kwargs)


def _failing_after_judge_again(self: Dispatcher, rt: Any, peer: str, **kwargs: Any) -> None:
    _judge_again(self, rt, peer, **kwargs)
    if peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {peer}")


def _marking_rehome(self: Dispatcher, *args: Any) -> None:
    _reloaded.append(True)
    _rehome(self, *args)


_start_resolver = Resolver._start


def _unwatched_start(self: Resolver, *args: Any) -> bool | None:
    started = _start_resolver(self, *args)
    if self._sock is not None:
        self.loop.unregister(self._sock)
    return started


_relay = StreamInterception._relay


def _failing_after_relay(self: StreamInterception, conn: Any, peer: str, *args: Any,
                         **kwargs: Any) -> None:
    _relay(self, conn, peer, *args, **kwargs)
    if peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {peer}")


def _failing_after(method: Any, peer_at: int, started: Any = lambda result: True) -> Any:
    """`method`, failing for the faulty client once it returned (and `started` says its
    result is a start)."""
    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        if args[peer_at] == FAULTY_PEER and started(result):
            raise RuntimeError(f"injected failure for {FAULTY_PEER}")
        return result
    return failing


def _failing_after_handed(self: StreamInterception, client: Any) -> None:
    _hand_late(self, client)
    if client.peer == FAULTY_PEER:
        raise RuntimeError(f"injected failure for {FAULTY_PEER}")


_hand_late = StreamInterception._hand_late

def _marking_peers_wait(self: AccessGate, svc: Any, peer: str, decided: Any, *args: Any,
                        **kwargs: Any) -> None:
    _wait(self, svc, peer, _within(f"verdict for {peer}", decided), *args, **kwargs)


_unsaturate = StreamInterception._unsaturate


def _failing_unsaturate(self: StreamInterception) -> None:
    if f"verdict for {FAULTY_PEER}" in _inside:
        raise RuntimeError(f"injected failure for {FAULTY_PEER}")
    _unsaturate(self)


_forks_failed: list[str] = []


def _failing_first_fork(svc: Any, sock: Any, peer: str, **kwargs: Any) -> int:
    if peer == FAULTY_PEER and not _forks_failed:
        _forks_failed.append(peer)
        raise SpawnError("fork failed", errno=errno.EAGAIN, step=FORK_STEP)
    return _spawn(svc, sock, peer, **kwargs)


_wants = AccessGate._wants


def _skipping_wants(svc: Any, plan: Any, wrap: bool, peer: str, *args: Any
                    ) -> tuple[bool, bool]:
    if peer == FAULTY_PEER:
        return False, False
    return _wants(svc, plan, wrap, peer, *args)


if os.environ.get("FAULT_AT") == "names_skipped":
    AccessGate._wants = staticmethod(_skipping_wants)  # type: ignore[method-assign,assignment]
elif os.environ.get("FAULT_AT") == "peerenv_named":
    Dispatcher._name_then_launch = _failing_after(  # type: ignore[method-assign]
        Dispatcher._name_then_launch, 4)
elif os.environ.get("FAULT_AT") == "ident_held":
    UserIds.before_start = _failing_after(  # type: ignore[method-assign]
        UserIds.before_start, 2)
elif os.environ.get("FAULT_AT") == "access_parked":
    AccessGate.wait = _failing_after(_wait, 1)  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "fork_held":
    serverstart.spawn = _failing_first_fork  # type: ignore[assignment]
    Dispatcher._start_on = _failing_after(  # type: ignore[method-assign]
        Dispatcher._start_on, 3, lambda result: len(_forks_failed) == 1
        and _forks_failed.append("held") is None)
elif os.environ.get("FAULT_AT") == "intercept_sender_admitted":
    DatagramInterception._admit_sender = _failing_after(  # type: ignore[method-assign]
        DatagramInterception._admit_sender, 1)
elif os.environ.get("FAULT_AT") == "intercept_unsaturate":
    AccessGate.wait = _marking_peers_wait  # type: ignore[method-assign]
    StreamInterception._unsaturate = _failing_unsaturate  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "intercept_handed":
    StreamInterception._hand_late = _failing_after_handed  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "session_started":
    Sessions.start = _failing_after(Sessions.start, 3)  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "server_started":
    ServerStarter.start = _failing_after(  # type: ignore[method-assign]
        ServerStarter.start, 2, lambda result: isinstance(result, int))
elif os.environ.get("FAULT_AT") == "intercept_relayed":
    StreamInterception._relay = _failing_after_relay  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "resolver_unread":
    Resolver._start = _unwatched_start  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "retry_judge_held":
    serverstart.spawn = _failing_fork  # type: ignore[assignment]
    forkretry.MAX_FORK_FAILURES = sys.maxsize
    Dispatcher.judge_again = _failing_after_judge_again  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "retry_judge":
    serverstart.spawn = _failing_fork  # type: ignore[assignment]
    forkretry.MAX_FORK_FAILURES = sys.maxsize
    Dispatcher.rehome = _marking_rehome  # type: ignore[method-assign]
    Dispatcher.judge_again = _failing_judge_again  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "intercept_refuse":
    AccessGate.wait = _marking_wait  # type: ignore[method-assign]
    Interception.fail = _failing_within(  # type: ignore[method-assign]
        "verdict", Interception.fail, 0)
    Dispatcher.refuse = _failing_within(  # type: ignore[method-assign]
        "verdict", Dispatcher.refuse, 1)
elif os.environ.get("FAULT_AT") == "verdict_refuse":
    AccessGate.wait = _marking_wait  # type: ignore[method-assign]
    Dispatcher.refuse = _failing_within(  # type: ignore[method-assign]
        "verdict", Dispatcher.refuse, 1)
elif os.environ.get("FAULT_AT") == "peerenv_lookup":
    Dispatcher._name_then_launch = _within(  # type: ignore[method-assign]
        "peerenv", Dispatcher._name_then_launch)
    Resolver.lookup = _failing_within("peerenv", _lookup, 0)  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "judge_again_wait":
    Dispatcher.judge_again = _within(  # type: ignore[method-assign]
        "judge_again", Dispatcher.judge_again)
    AccessGate.wait = _failing_within("judge_again", _wait, 1)  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "access_wait":
    AccessGate.wait = _failing_wait  # type: ignore[method-assign]
elif os.environ.get("FAULT_AT") == "name_lookup":
    Resolver.lookup = _failing_lookup  # type: ignore[method-assign]
else:
    Dispatcher.parent_check = _failing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(run_master.main())
