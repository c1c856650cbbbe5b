"""A server for reload_diff_scenario.py: greets its client, holds it, and writes down
what happened to it, so that the scenario sees which signal a reload sent.

Usage: reload_diff_server.py TAG RECORD stream|wait|dgram SCENARIO_PID [report [ARG...]]
  stream  fd 0 is the connection
  wait    fd 0 is the listening socket (stream wait = yes): accept one connection
  dgram   fd 0 is the datagram socket (wait = yes): answer one datagram

It answers `TAG\n` (with `report`: `TAG report ARG... uid=UID exe=PROGRAM FUZZ=VALUE
FUZZPASS=VALUE\n`, what it was started with: PROGRAM from /proc/self/exe, as argv[0]
is only a name; `-` for a variable not set), appends `TAG start PID` to RECORD, then
stays until its client closes (`TAG eof PID`) or a catchable signal arrives
(`TAG sig=NAME PID`, then it exits); a SIGKILL leaves no line. It never outlives the scenario (SCENARIO_PID) by
more than a second: a fixed lifetime would end the servers started first while a
loaded machine still runs the scenario's later steps, which then see their clients
closed and their EXIT lines as if a reload had ended them.
"""

import os
import select
import signal
import socket
import sys
import time

tag, record, mode, scenario = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
greeting = tag
if sys.argv[5:6] == ["report"]:
    greeting = " ".join([tag, *sys.argv[5:], f"uid={os.getuid()}",
                         f"exe={os.readlink('/proc/self/exe')}",
                         *(f"{k}={os.environ.get(k, '-')}" for k in ("FUZZ", "FUZZPASS"))])


def scenario_running() -> bool:
    try:
        with open(f"/proc/{scenario}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def note(what: str) -> None:
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{tag} {what} {os.getpid()}\n".encode())
    os.close(fd)


def on_signal(signum: int, _frame: object) -> None:
    note(f"sig={signal.Signals(signum).name}")
    os._exit(0)


for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1,
            signal.SIGUSR2, signal.SIGPIPE, signal.SIGQUIT):
    signal.signal(sig, on_signal)

sock = socket.socket(fileno=0)
if mode == "dgram":
    _data, peer = sock.recvfrom(65535)
    note("start")   # before the answer: a client that has it finds the line
    sock.sendto(f"{greeting}\n".encode(), peer)
    while scenario_running():
        time.sleep(1)
    os._exit(0)
conn = sock.accept()[0] if mode == "wait" else sock
note("start")
conn.sendall(f"{greeting}\n".encode())
while scenario_running():
    if select.select([conn], [], [], 1)[0]:
        try:
            if not conn.recv(4096):
                break
        except OSError:
            break
note("eof")
os._exit(0)
