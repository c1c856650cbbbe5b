"""Paths through /proc's own links (`/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`) open
what the descriptor is, as the kernel's open() does (pyxinetd.files).

The walk that checks every symlink for a planted one read such a link's text and took
it for a path: `pipe:[N]` named nothing, so a log on a container's stderr (a pipe)
could not be opened.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from pyxinetd.files import append_problem, open_for_append


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("template", ["/proc/self/fd/{}", "/dev/fd/{}", "/proc/{pid}/fd/{}"])
def test_a_pipe_behind_a_proc_link_is_opened(pipe: tuple[int, int], template: str) -> None:
    r, w = pipe
    path = template.format(w, pid=os.getpid())
    assert append_problem(path) is None
    fd = open_for_append(path)
    try:
        os.write(fd, b"line\n")
    finally:
        os.close(fd)
    assert os.read(r, 100) == b"line\n"


def test_a_file_behind_a_proc_link_is_the_file_even_once_deleted(tmp_path: object) -> None:
    # The link's text then ends in " (deleted)": no path, but the kernel still has it.
    path = os.path.join(str(tmp_path), "gone.log")
    held = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.unlink(path)
        fd = open_for_append(f"/proc/self/fd/{held}")
        try:
            os.write(fd, b"kept\n")
        finally:
            os.close(fd)
        assert os.pread(held, 100, 0) == b"kept\n"
    finally:
        os.close(held)


def test_a_socket_behind_a_proc_link_cannot_be_opened() -> None:
    # As for xinetd: the kernel refuses to open a socket by path (the journal's stream).
    left, right = socket.socketpair()
    with left, right:
        path = f"/proc/self/fd/{left.fileno()}"
        assert append_problem(path) == os.strerror(errno.ENXIO)
        with pytest.raises(OSError) as caught:
            open_for_append(path)
        assert caught.value.errno == errno.ENXIO
