"""pyxinetd.userid: which services ask, and the -logprocs bound on lookups after
refusals (real sockets on loopback; the identd at port 113 is the namespace test's)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from pyxinetd.children import Occupancy
from pyxinetd.config.model import FileTarget, SocketType
from pyxinetd.log import ProgramLog, SyslogSender
from pyxinetd.servicelog import ServiceLogs
from pyxinetd.loop import Loop
from pyxinetd.userid import UserIds
from tests.factories import make_service


@pytest.fixture
def userids(tmp_path: Path) -> Iterator[UserIds]:
    program = ProgramLog.to_file(str(tmp_path / "program.log"))
    logs = ServiceLogs(program, SyslogSender(str(tmp_path / "no-syslog")))
    loop = Loop()
    ids = UserIds(loop, program, logs, Occupancy(),
                  lambda svc: not svc.is_internal, logprocs=2, timeout=30.0)
    yield ids
    ids.close()
    logs.close()
    program.close()
    loop.close()


def accepted(stack: ExitStack) -> socket.socket:
    srv = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
    stack.enter_context(socket.create_connection(srv.getsockname()))
    conn, _ = srv.accept()
    return conn


def test_which_services_ask(userids: UserIds, tmp_path: Path) -> None:
    log = FileTarget(str(tmp_path / "svc.log"))
    asks = make_service(log_type=log, log_on_success=frozenset({"HOST", "USERID"}))
    assert userids.wanted(asks)
    assert not userids.wanted(make_service(log_on_success=frozenset({"USERID"})))
    assert not userids.wanted(make_service(log_type=log, log_on_success=frozenset({"HOST"})))
    assert not userids.wanted(make_service(log_type=log, wait=True,
                                           log_on_success=frozenset({"USERID"})))
    assert not userids.wanted(make_service(log_type=log, socket_type=SocketType.DGRAM,
                                           log_on_success=frozenset({"USERID"})))


def test_logprocs_bounds_the_lookups_after_refusals(userids: UserIds, tmp_path: Path) -> None:
    svc = make_service(log_type=FileTarget(str(tmp_path / "svc.log")),
                       log_on_failure=frozenset({"HOST", "USERID"}))
    with ExitStack() as stack:
        conns = [accepted(stack) for _ in range(3)]
        taken = [userids.after_refusal(svc, conn, "127.0.0.1") for conn in conns]
        assert taken == [True, True, False]
        conns[2].close()
        # Lookups after refusals never count as running instances.
        assert userids.running() == 0
        assert userids.cancel(lambda s: s is svc) == 2
        assert all(conn.fileno() == -1 for conn in conns)
        assert userids.after_refusal(svc, accepted(stack), "127.0.0.1")


def test_a_held_connection_counts_until_cancelled(userids: UserIds, tmp_path: Path) -> None:
    svc = make_service(log_type=FileTarget(str(tmp_path / "svc.log")),
                       log_on_success=frozenset({"USERID"}))
    started: list[bool] = []
    with ExitStack() as stack:
        conn = accepted(stack)
        userids.before_start(svc, conn, "127.0.0.1", lambda: started.append(True))
        assert userids.running() == 1
        userids.close()
        assert userids.running() == 0 and conn.fileno() == -1
    assert started == []
