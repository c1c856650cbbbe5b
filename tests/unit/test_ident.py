"""The ident client: reply parsing (xinetd's verify_line/get_line rules) and one query
at a time against real loopback servers on an ephemeral port (the fixed port 113 is
exercised in tests/integration/test_userid.py, inside a network namespace)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pyxinetd.ident import MAX_REPLY, Endpoints, IdentQuery, IdentResult, Outcome, \
    endpoints_of, parse_reply, printable, split_reply
from pyxinetd.loop import Loop

R, L = 40001, 23


@pytest.mark.parametrize("line, text", [
    (b"40001 , 23 : USERID : UNIX : alice", b"UNIX : alice"),
    (b"40001,23:USERID:UNIX:alice", b"UNIX:alice"),
    (b"  40001\t,\t23  :   USERID\t:\tOTHER :x y  ", b"OTHER :x y  "),
    (b"+40001 , 23 : USERID : UNIX,US-ASCII : bob", b"UNIX,US-ASCII : bob"),
    # The text is everything after the colon: more colons are kept.
    (b"40001 , 23 : USERID : UNIX : a:b", b"UNIX : a:b"),
    # A C string: a NUL ends the line.
    (b"40001 , 23 : USERID : UNIX : carol\0trailing", b"UNIX : carol"),
])
def test_good_replies(line: bytes, text: bytes) -> None:
    assert parse_reply(line, R, L) == text


@pytest.mark.parametrize("line", [
    b"23 , 40001 : USERID : UNIX : alice",        # the pair the wrong way round
    b"40002 , 23 : USERID : UNIX : alice",        # another connection
    b"40001 , 24 : USERID : UNIX : alice",
    b"40001 , 23 : ERROR : NO-USER",
    b"40001 , 23 : ERROR : HIDDEN-USER",
    b"40001 , 23 : USERID",
    b"40001 , 23 : USERID :",
    b"40001 , 23 : USERID :   ",
    b"40001 , 23 : USERIDX : UNIX : alice",
    b"40001 , 23 : userid : UNIX : alice",        # the keyword is case-sensitive
    b"40001 , 23 USERID : UNIX : alice",          # no colon after the ports
    b"40001 23 : USERID : UNIX : alice",          # no comma
    b"4000l , 23 : USERID : UNIX : alice",
    b"-40001 , 23 : USERID : UNIX : alice",
    b"40001 , 2 3 : USERID : UNIX : alice",
    b"99999999999999999999 , 23 : USERID : UNIX : alice",
    b"garbage",
    b"",
    b"\0 40001 , 23 : USERID : UNIX : alice",
])
def test_bad_replies(line: bytes) -> None:
    assert parse_reply(line, R, L) is None


def test_a_line_ends_at_the_first_crlf_within_the_first_1024_bytes() -> None:
    assert split_reply(b"abc\r\ndef\r\n") == b"abc"
    assert split_reply(b"abc\ndef\r") is None               # a bare LF is not an end
    assert split_reply(b"abc\r") is None
    assert split_reply(b"x" * (MAX_REPLY - 2) + b"\r\n") == b"x" * (MAX_REPLY - 2)
    assert split_reply(b"x" * (MAX_REPLY - 1) + b"\r\n") is None
    assert split_reply(b"\r\n") == b""


def test_printable_replaces_control_characters() -> None:
    assert printable(b"UNIX : al\nice\x1b[31m\x7f\tok") == "UNIX : al?ice?[31m?\tok"
    assert printable("UNIX : jos\u00e9".encode()) == "UNIX : jos\u00e9"
    assert printable(b"UNIX : \xff") == "UNIX : \ufffd"


def test_printable_replaces_unicode_line_breaks() -> None:
    # NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR end a line for str.splitlines().
    text = printable("UNIX : a\u0085b\u2028c\u2029d".encode())
    assert text == "UNIX : a?b?c?d" and len(text.splitlines()) == 1


def test_printable_replaces_c1_controls_and_direction_marks() -> None:
    # A CSI a terminal would obey, and text shown reversed; accented letters stay.
    text = printable("UNIX : a\u009b31mb\u202ecba\u2066d\u00e9".encode())
    assert text == "UNIX : a?31mb?cba?d\u00e9"


def test_the_query_names_the_client_port_first() -> None:
    where = Endpoints(socket.AF_INET, "127.0.0.1", 23, "127.0.0.2", 40001)
    assert where.query() == b"40001,23\r\n"
    assert where.bind_address() == ("127.0.0.1", 0)
    assert where.ident_address() == ("127.0.0.2", 113)


def test_endpoints_of_an_ipv4_client_on_a_dual_stack_socket() -> None:
    with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as srv, \
            socket.create_connection(("127.0.0.1", srv.getsockname()[1])) as client:
        conn, _ = srv.accept()
        with conn:
            where = endpoints_of(conn)
        ports = (srv.getsockname()[1], client.getsockname()[1])
    assert (where.family, where.local_host, where.remote_host) == \
        (socket.AF_INET, "127.0.0.1", "127.0.0.1")
    assert (where.local_port, where.remote_port) == ports


# -- one query against a real server ------------------------------------------------

Reply = Callable[[socket.socket, bytes], object]
# Set when the test is over: servers that hold their connection let go then.
_over = threading.Event()


def hold(conn: socket.socket, query: bytes) -> None:
    _over.wait(5)


@contextmanager
def ident_server(reply: Reply) -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection identd on 127.0.0.1:<ephemeral>; `reply(conn, query)` answers."""
    srv = socket.create_server(("127.0.0.1", 0))
    queries: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = conn.recv(100)
                if not chunk:
                    break
                data += chunk
            queries.append(data)
            reply(conn, data)

    _over.clear()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], queries
    finally:
        _over.set()
        srv.close()
        thread.join(5)


def run_query(port: int, timeout: float = 5.0) -> tuple[IdentResult, list[tuple[str, str]]]:
    loop = Loop()
    results: list[IdentResult] = []
    reports: list[tuple[str, str]] = []
    where = Endpoints(socket.AF_INET, "127.0.0.1", L, "127.0.0.1", R, ident_port=port)
    query = IdentQuery(loop, where, timeout, results.append,
                       lambda func, text: reports.append((func, text)))
    query.start()
    assert not results            # never from start()
    deadline = time.monotonic() + 10
    while not results:
        assert time.monotonic() < deadline, "the query never ended"
        loop.run_once()
    assert query.finished and len(loop.selector.get_map()) == 0
    loop.close()
    return results[0], reports


def test_a_userid_reply() -> None:
    with ident_server(lambda c, q: c.sendall(b"40001 , 23 : USERID : UNIX : alice\r\n")) \
            as (port, queries):
        result, reports = run_query(port)
    assert queries == [b"40001,23\r\n"]
    assert result == IdentResult(Outcome.OK, "UNIX : alice")
    assert reports == []


def test_control_characters_never_reach_a_log_line() -> None:
    # What a server sends goes into the USERID line, or the program log's `Bad line`:
    # an escape sequence or a DEL from it is shown as `?` in both.
    reply = b"40001 , 23 : USERID : UNIX : al\x1b[31mice\x7f\tok\r\n"
    with ident_server(lambda c, q: c.sendall(reply)) as (port, _):
        result, reports = run_query(port)
    assert result == IdentResult(Outcome.OK, "UNIX : al?[31mice?\tok")
    assert reports == []
    with ident_server(lambda c, q: c.sendall(b"40001 , 23 : ERROR\x1b[2J : X\r\n")) \
            as (port, _):
        result, reports = run_query(port)
    assert result == IdentResult(Outcome.BAD_RESPONSE)
    assert reports == [("log_remote_user", "Bad line received from identity server at "
                                           "127.0.0.1: 40001 , 23 : ERROR?[2J : X")]


def test_a_reply_in_pieces_with_more_after_the_line() -> None:
    def slowly(conn: socket.socket, query: bytes) -> None:
        for piece in (b"40001 , 23 : US", b"ERID : UNIX : bob\r", b"\nextra\r\n"):
            conn.sendall(piece)
            time.sleep(0.05)
    with ident_server(slowly) as (port, _):
        result, _ = run_query(port)
    assert result == IdentResult(Outcome.OK, "UNIX : bob")


def test_an_error_reply_is_a_bad_response() -> None:
    with ident_server(lambda c, q: c.sendall(b"40001 , 23 : ERROR : NO-USER\r\n")) as (port, _):
        result, reports = run_query(port)
    assert result == IdentResult(Outcome.BAD_RESPONSE)
    assert reports == [("log_remote_user", "Bad line received from identity server at "
                                           "127.0.0.1: 40001 , 23 : ERROR : NO-USER")]


def test_a_reply_about_other_ports_is_a_bad_response() -> None:
    with ident_server(lambda c, q: c.sendall(b"23 , 40001 : USERID : UNIX : eve\r\n")) \
            as (port, _):
        result, _ = run_query(port)
    assert result.outcome is Outcome.BAD_RESPONSE


def test_end_of_file_before_crlf() -> None:
    with ident_server(lambda c, q: c.sendall(b"40001 , 23 : USERID : UNIX : x")) as (port, _):
        result, reports = run_query(port)
    assert result == IdentResult(Outcome.RESPONSE_ERROR)
    assert reports == [("get_line", "identd server reply missing ending CR-LF (client "
                                    f"127.0.0.1 port 40001, identity server 127.0.0.1 port {port})")]


def test_an_over_long_line() -> None:
    with ident_server(lambda c, q: (c.sendall(b"x" * 3000), hold(c, q))) as (port, _):
        result, reports = run_query(port)
    assert result == IdentResult(Outcome.RESPONSE_ERROR)
    # xinetd's wording first, then the client and the identity server it names.
    assert reports == [("get_line", "Too much input from identity server (client "
                                    f"127.0.0.1 port 40001, identity server 127.0.0.1 port {port})")]


def test_a_silent_server_times_out() -> None:
    with ident_server(hold) as (port, _):
        result, reports = run_query(port, timeout=0.3)
    assert result == IdentResult(Outcome.TIMEOUT)
    assert reports == []


def test_no_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]      # bound, never listening: refused
        result, reports = run_query(port)
    assert result == IdentResult(Outcome.NO_SERVER)
    assert reports == []


def test_a_cancelled_query_never_calls_back() -> None:
    with ident_server(hold) as (port, _):
        loop = Loop()
        called: list[IdentResult] = []
        where = Endpoints(socket.AF_INET, "127.0.0.1", L, "127.0.0.1", R, ident_port=port)
        query = IdentQuery(loop, where, 5.0, called.append, lambda f, t: None)
        query.start()
        loop.run_once()
        query.cancel()
        assert loop.timers.next_deadline() is None
        assert len(loop.selector.get_map()) == 0
        loop.close()
    assert called == []


def test_a_bind_failure_is_a_system_error() -> None:
    loop = Loop()
    results: list[IdentResult] = []
    reports: list[tuple[str, str]] = []
    # An address this host does not have.
    where = Endpoints(socket.AF_INET, "192.0.2.1", L, "127.0.0.1", R, ident_port=9)
    IdentQuery(loop, where, 5.0, results.append, lambda f, t: reports.append((f, t))).start()
    loop.run_once()
    loop.close()
    assert results == [IdentResult(Outcome.ERROR)]
    assert reports[0][0] == "log_remote_user" and reports[0][1].startswith("socket bind: ")
    assert reports[0][1].endswith(
        f"(client 127.0.0.1 port {R}, identity server 127.0.0.1 port 9)")
