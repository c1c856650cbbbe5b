"""Taking over the sockets of systemd's socket activation: the variables and descriptors
(pyxinetd.handover.take_from_environment) and which service a socket belongs to
(matches)."""

from __future__ import annotations

import os
import socket

from pyxinetd.config.model import SocketType
from pyxinetd.handover import LISTEN_VARIABLES, matches, take_from_environment
from tests.factories import make_service


def test_variables_for_another_process_are_removed_and_nothing_is_taken() -> None:
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2",
               "LISTEN_FDNAMES": "a:b", "PATH": "/bin"}
    handed = take_from_environment(environ)
    assert not handed and not handed.problems
    assert environ == {"PATH": "/bin"}


def test_a_bad_count_is_reported() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"}
    handed = take_from_environment(environ)
    assert not handed
    assert handed.problems == ["LISTEN_FDS='two' is not a number: no socket taken over"]
    assert not any(name in environ for name in LISTEN_VARIABLES)


def test_a_descriptor_that_is_not_a_socket_is_reported_and_left_open() -> None:
    # Descriptor 3 here may be anything; put a pipe there for the duration.
    saved = os.dup(3) if _is_open(3) else None
    read_end, write_end = os.pipe()
    os.dup2(read_end, 3)
    try:
        handed = take_from_environment({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"})
        assert not handed
        assert handed.problems[0].startswith(
            "descriptor 3 passed by the service manager is not a usable socket")
        os.fstat(3)     # still open: not ours to close
    finally:
        os.close(read_end)
        os.close(write_end)
        if saved is not None:
            os.dup2(saved, 3)
            os.close(saved)
        else:
            os.close(3)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_which_service_a_socket_belongs_to() -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET6) as wildcard6, \
            socket.socket(type=socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        wildcard6.bind(("::", 0))
        udp.bind(("127.0.0.1", 0))
        port, port6, uport = (s.getsockname()[1] for s in (tcp, wildcard6, udp))
        assert matches(tcp, make_service(port=port, bind="127.0.0.1"))
        assert not matches(tcp, make_service(port=port + 1, bind="127.0.0.1"))
        assert not matches(tcp, make_service(port=port, bind="127.0.0.2"))
        assert not matches(tcp, make_service(port=port, bind=None))  # not a wildcard
        assert matches(wildcard6, make_service(port=port6, bind=None))
        assert not matches(wildcard6, make_service(port=port6, bind="127.0.0.1"))
        assert matches(udp, make_service(port=uport, bind="127.0.0.1",
                                         socket_type=SocketType.DGRAM, protocol="udp",
                                         protocol_number=17, wait=True))
        assert not matches(udp, make_service(port=uport, bind="127.0.0.1"))  # stream
