"""A server that misbehaves on purpose, for any dispatch model (stream nowait, stream
wait = yes, dgram wait = yes), for tests/helpers/misbehaving_scenario.py.

argv: MODE PIDDIR. The server first records its pid in PIDDIR/<pid> (so the scenario
can kill whatever is left, by pid), then takes its request as its model asks, unless
the mode says not to: on a listening socket it accepts one connection, on a datagram
socket it reads one datagram; a connected socket is the request itself. It answers
`hi MODE[ got=DATA]` and then does what MODE says:
- exit0, exit3: exit with that status;
- segv, kill, term: die of that signal (no core file);
- noaccept, noread: exit 0 without taking the request;
- partial: answer one datagram of a burst, exit;
- hold: keep the listening socket and the connection for 0.6 s, then exit;
- daemon: fork a grandchild in its own session that keeps the request and the service
  socket, writes `late` 0.3 s later, exits 0.3 s after that; exit 0 at once;
- closeout: close descriptors 0-2 at once, keep running for 0.6 s;
- stderr: write `out` on descriptor 1 and `err` on descriptor 2, exit 0;
- long: keep running until killed.
Standard library only.
"""

import os
import resource
import signal
import socket
import sys
import time

mode, piddir = sys.argv[1], sys.argv[2]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with open(os.path.join(piddir, str(os.getpid())), "w"):
    pass

service = socket.socket(fileno=0)
kind = service.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
listening = service.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)


def reply_to_request():
    """Take the request and answer it; returns a function writing to the client."""
    if kind == socket.SOCK_DGRAM:
        data, peer = service.recvfrom(65535)
        service.sendto(f"hi {mode} got={data.decode()}".encode(), peer)
        return lambda text: service.sendto(text, peer)
    conn = service.accept()[0] if listening else service
    conn.sendall(f"hi {mode}\n".encode())
    return conn.sendall


if mode in ("noaccept", "noread"):
    os._exit(0)
write = reply_to_request()
if mode == "exit0" or mode == "partial":
    os._exit(0)
if mode == "exit3":
    os._exit(3)
if mode in ("segv", "kill", "term"):
    signum = {"segv": signal.SIGSEGV, "kill": signal.SIGKILL, "term": signal.SIGTERM}[mode]
    if signum != signal.SIGKILL:
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(5)
if mode == "hold":
    time.sleep(0.6)
    os._exit(0)
if mode == "daemon":
    if os.fork() == 0:
        os.setsid()
        with open(os.path.join(piddir, str(os.getpid())), "w"):
            pass
        time.sleep(0.3)
        write(b"late\n")
        time.sleep(0.3)
        os._exit(0)
    os._exit(0)
if mode == "closeout":
    for fd in (0, 1, 2):
        os.close(fd)
    time.sleep(0.6)
    os._exit(0)
if mode == "stderr":
    os.write(1, b"out\n")
    os.write(2, b"err\n")
    os._exit(0)
if mode == "long":
    while True:
        time.sleep(60)
sys.exit(f"unknown mode {mode}")
