"""banners.py with real files and sockets: read afresh, open failures, never blocking."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from internal_support import DEADLINE, LoopThread, make_service, recv_all

from pyxinetd import banners, internal


def test_each_moment_reads_its_file_afresh(tmp_path: Path) -> None:
    first, ok, fail = tmp_path / "b", tmp_path / "ok", tmp_path / "fail"
    first.write_bytes(b"banner 1\r\n")
    ok.write_bytes(b"welcome\r\n")
    fail.write_bytes(b"go away\r\n")
    svc = make_service("echo", banner=str(first), banner_success=str(ok),
                       banner_fail=str(fail))
    errors: list[str] = []
    a, b = socket.socketpair()
    with a, b:
        assert banners.banner(svc, a, errors.append) == b""
        first.write_bytes(b"banner 2\r\n")      # edited: the next use sees it
        assert banners.banner(svc, a, errors.append) == b""
        assert banners.banner_success(svc, a, errors.append) == b""
        assert banners.banner_fail(svc, a, errors.append) == b""
        a.close()
        assert recv_all(b) == b"banner 1\r\nbanner 2\r\nwelcome\r\ngo away\r\n"
    assert errors == []


def test_missing_file_is_reported_and_skipped(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    svc = make_service("echo", id="echo-stream", banner_fail=missing)
    errors: list[str] = []
    a, b = socket.socketpair()
    with a, b:
        assert banners.banner_fail(svc, a, errors.append) == b""
        assert banners.banner(svc, a, errors.append) == b""     # none configured
    assert errors == [f"service = echo-stream, open of banner {missing} failed: "
                      "No such file or directory (errno = 2)"]


def test_full_socket_returns_the_rest_instead_of_blocking(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"z" * (8 * 1024 * 1024))
    svc = make_service("echo", banner=str(big))
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(True)         # even a blocking socket is not waited on
        rest = banners.banner(svc, a, [].append)
        assert 0 < len(rest) < 8 * 1024 * 1024


def test_dgram_socket_fails_silently(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_bytes(b"hi")
    svc = make_service("echo", banner=str(path))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        assert banners.banner(svc, s, [].append) == b"hi"


def test_in_loop_session_keeps_the_whole_banner_in_order(tmp_path: Path) -> None:
    """A banner too big for the socket is queued in the session, before the service."""
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 8192)        # 2 MiB
    ok = tmp_path / "ok"
    ok.write_bytes(b"-- success --\r\n")
    svc = make_service("daytime", banner=str(big), banner_success=str(ok))
    errors: list[str] = []

    def start(loop: object, conn: socket.socket, peer: object) -> object:
        rest = banners.banner(svc, conn, errors.append)
        greeting = rest + banners.load(svc, banners.Moment.SUCCESS, errors.append)
        return internal.start_stream(loop, svc, conn, peer, lambda: None,  # type: ignore[arg-type]
                                     greeting=greeting)
    lt = LoopThread()
    addr = lt.listen(start)
    with lt, socket.create_connection(addr[:2], timeout=DEADLINE) as c:
        got = recv_all(c)
    head = bytes(range(256)) * 8192 + b"-- success --\r\n"
    assert got.startswith(head)
    assert got[len(head):].endswith(b"\r\n") and len(got) > len(head) + 20
    assert errors == []


def test_a_banner_that_is_no_regular_file_never_stalls_the_loop(tmp_path: Path) -> None:
    # A FIFO nobody writes to would block an open() or read() for ever; /dev/zero would
    # never end. Both are refused like an unreadable file.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    errors: list[str] = []
    for path in (str(fifo), "/dev/zero"):
        svc = make_service("echo", id="echo-stream", banner=path)
        a, b = socket.socketpair()
        with a, b:
            assert banners.banner(svc, a, errors.append) == b""
    assert errors == [f"service = echo-stream, open of banner {fifo} failed: "
                      "not a regular file",
                      "service = echo-stream, open of banner /dev/zero failed: "
                      "not a regular file"]


def test_a_banner_is_read_up_to_its_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (banners.BANNER_LIMIT + 10))
    assert banners.read_banner(str(big)) == b"x" * banners.BANNER_LIMIT


def test_a_banner_held_by_a_session_stays_shared_whatever_else_is_read(
        tmp_path: Path) -> None:
    # Clients that never read hold their banner in their session: one copy of each file
    # for them all, however many other banner files are read meanwhile. Only a copy no
    # session holds is dropped, beyond the last few files read.
    paths = []
    for n in range(10):
        path = tmp_path / f"banner{n}"
        path.write_bytes(b"banner %d\n" % n * 1000)
        paths.append(str(path))
    held = [memoryview(banners.read_banner(path) or b"") for path in paths]
    for path, view in zip(paths, held):
        again = banners.read_banner(path)
        assert again is view.obj, path     # the very object the session holds
    unheld = tmp_path / "unheld"
    unheld.write_bytes(b"nobody holds this\n")
    assert banners.read_banner(str(unheld)) == b"nobody holds this\n"
    for path in paths[:5]:
        banners.read_banner(path)          # more than four files read since
    assert str(unheld) not in banners._shared
    assert all(path in banners._shared for path in paths)
    del held
