"""The least a Python master can do per exec'd connection: a yardstick, not a daemon.

`python3 bench/serve.py --cases exec-root --pyxinetd-cmd "python3 /abs/path/bench/floor_master.py"`
measures it in pyxinetd's place (the benchmark starts daemons with cwd /, hence the
absolute path). It reads the benchmark configuration only to find the services whose
server is /bin/echo and user is root, listens on their ports and, per connection, does
nothing but accept, one native spawn (pyxinetd._spawn: the same C checklist pyxinetd
uses, with the whole environment plus REMOTE_HOST) and close; children are reaped on
SIGCHLD through a wakeup pipe. No access checks, limits, logging or bookkeeping.
Whatever rate it reaches is a ceiling for any master written in Python that starts its
servers this way.

With `--handoff` the master never waits for a spawn at all: it passes each connection
(SCM_RIGHTS) to a second process that does the native spawn (and lets the kernel reap,
SIGCHLD ignored), so the master only accepts, sends and closes. That is the best a
design that does not suspend the master during the spawn could give.
docs/performance.md compares both with pyxinetd.
"""

from __future__ import annotations

import array
import os
import re
import select
import signal
import socket
import sys
from typing import NoReturn

from pyxinetd import _spawn

_SERVICE = re.compile(r"service\s+\S+\s*\{(.*?)\}", re.S)
_ECHO_ARGV = [b"echo", b"hello"]


def _listeners(conf: str) -> dict[int, socket.socket]:
    out: dict[int, socket.socket] = {}
    with open(conf) as f:
        text = f.read()
    for body in _SERVICE.findall(text):
        port = re.search(r"\bport\s*=\s*(\d+)", body)
        if port is None or "/bin/echo" not in body or not re.search(r"\buser\s*=\s*root\b", body):
            continue
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port.group(1))))
        s.listen(64)
        s.setblocking(False)
        out[s.fileno()] = s
    return out


def _spawner(channel: socket.socket, env: list[bytes]) -> NoReturn:
    """--handoff: the process that spawns; the kernel reaps its children."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        peer, ancillary, _, _ = channel.recvmsg(64, socket.CMSG_SPACE(4))
        fds = array.array("i")
        for _, _, data in ancillary:
            fds.frombytes(data[:fds.itemsize])
        _spawn.spawn(b"/bin/echo", _ECHO_ARGV, env + [b"REMOTE_HOST=" + peer], fds[0])
        os.close(fds[0])


def main(argv: list[str]) -> None:
    handoff = "--handoff" in argv
    conf = argv[argv.index("-f") + 1]
    log = argv[argv.index("-filelog") + 1]
    listeners = _listeners(conf)
    env = [os.fsencode(f"{k}={v}") for k, v in os.environ.items()]
    channel = None
    if handoff:
        channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        if os.fork() == 0:
            channel.close()
            for s in listeners.values():
                s.close()
            _spawner(theirs, env)
        theirs.close()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    poller = select.epoll()
    for fd in listeners:
        poller.register(fd, select.EPOLLIN)
    poller.register(wake_r, select.EPOLLIN)
    with open(log, "a") as f:  # the benchmark waits for this line
        f.write(f"Started working: {len(listeners)} available services\n")
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                os.read(wake_r, 512)
                while True:
                    try:
                        pid, _status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                continue
            listener = listeners[fd]
            while True:
                try:
                    conn, peer = listener.accept()
                except BlockingIOError:
                    break
                if channel is not None:
                    channel.sendmsg([peer[0].encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                          array.array("i", [conn.fileno()]))])
                else:
                    _spawn.spawn(b"/bin/echo", _ECHO_ARGV,
                                 env + [os.fsencode("REMOTE_HOST=" + peer[0])], conn.fileno())
                conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
