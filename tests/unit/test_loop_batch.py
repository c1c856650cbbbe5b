"""One turn of the loop delivers a batch of readiness events: what an earlier handler of
the batch did to a descriptor (closed it, re-armed it) decides whether and to whom its
event is still delivered."""

from __future__ import annotations

import socket

from pyxinetd.loop import READ, WRITE, Loop


def pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    made = [socket.socketpair() for _ in range(n)]
    for _, writer in made:
        writer.send(b"x")   # every reader is readable before the turn
    return made


def test_a_descriptor_closed_by_an_earlier_handler_gets_no_event() -> None:
    loop = Loop()
    (a, a_w), (b, b_w) = pairs(2)
    calls: list[str] = []

    def close_the_other(other: socket.socket) -> None:
        calls.append("closer")
        loop.unregister(other)
        other.close()

    # Whichever of the two the selector reports first closes the other one.
    loop.register(a, READ, lambda mask: close_the_other(b) if b.fileno() != -1 else None)
    loop.register(b, READ, lambda mask: close_the_other(a) if a.fileno() != -1 else None)
    try:
        loop.run_once()
        assert calls == ["closer"]
    finally:
        for sock in (a, a_w, b, b_w):
            sock.close()
        loop.close()


def test_a_re_armed_descriptor_gets_its_new_handler_and_only_its_new_events() -> None:
    loop = Loop()
    (a, a_w), (b, b_w) = pairs(2)
    calls: list[tuple[str, int]] = []

    def first(name: str, other: socket.socket, mask: int) -> None:
        calls.append((name, mask))
        if len(calls) == 1:
            # Re-arm the other one: a new handler, and writability only.
            loop.modify(other, WRITE, lambda m: calls.append(("new", m)))

    loop.register(a, READ | WRITE, lambda mask: first("a", b, mask))
    loop.register(b, READ | WRITE, lambda mask: first("b", a, mask))
    try:
        loop.run_once()
        assert len(calls) == 2
        assert calls[1] == ("new", WRITE)   # not its READ, not its old handler
    finally:
        for sock in (a, a_w, b, b_w):
            sock.close()
        loop.close()


def test_the_first_descriptor_is_handled_before_the_rest_of_its_batch() -> None:
    loop = Loop()
    made = pairs(5)
    order: list[int] = []
    try:
        for number, (reader, _) in enumerate(made):
            loop.register(reader, READ, lambda mask, n=number: order.append(n))
        # Readable last, registered last: without first() it comes last.
        loop.first(made[4][0])
        loop.run_once()
        assert order[0] == 4 and sorted(order) == [0, 1, 2, 3, 4]
    finally:
        for reader, writer in made:
            reader.close()
            writer.close()
        loop.close()


def test_a_descriptor_the_kernel_refused_to_re_arm_gets_no_event() -> None:
    # The selector drops a descriptor whose epoll modify fails (EBADF: closed behind
    # its back); the rest of the turn, and later turns, must not deliver it.
    loop = Loop()
    (a, a_w), (b, b_w) = pairs(2)
    calls: list[str] = []
    gone: list[int] = []

    def break_the_other(other: socket.socket, name: str) -> None:
        calls.append(name)
        if gone:
            return
        fd = other.detach()
        gone.append(fd)
        socket.close(fd)
        try:
            loop.modify(fd, READ | WRITE, lambda mask: calls.append("re-armed"))
        except OSError:
            pass

    loop.register(a, READ, lambda mask: break_the_other(b, "a"))
    loop.register(b, READ, lambda mask: break_the_other(a, "b"))
    try:
        loop.run_once()
        assert len(calls) == 1
        assert not loop.is_registered(gone[0])
    finally:
        for sock in (a, a_w, b, b_w):
            sock.close()
        loop.close()
