"""Refusals and log limits, run against one daemon in private network and mount namespaces.

    unshare -n -m python3 refusal_lines_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, makes /proc/loadavg read 9.50 (a bind mount, in this mount namespace
only), writes a configuration whose services log to the daemon's own program log file
(`log_type = FILE` on the `-filelog` path, so the file keeps the order of the lines):
`busy` (max_load = 1), `rate` (cps = 1 3), `echo-dgram` (only_from another host), and
`chatty`, logging to a file of its own with a 300-byte soft and 500-byte hard limit,
and `full`, whose log is past such limits before the daemon starts. Each is asked until
it refuses (or, for `chatty`, past its hard limit). Prints one JSON object: the lines of
the shared file without their stamps and pids, in order, the program-log lines about
`chatty`'s log, and whether `full`'s log was left as it was. Standard library only; every wait bounded.
"""

import json
import os
import re
import socket
import sys
import time

from scenario_support import (
    begin, fake_load, free_port, read, running, second_to_spare, wait_for, wait_settled)

PEER = "127.0.0.1"


def ask(port: int) -> None:
    """One connection, read to the end; a refused or reset one is an answer too."""
    try:
        with socket.create_connection((PEER, port), timeout=5) as conn:
            while conn.recv(4096):
                pass
    except OSError:
        pass


def service(name: str, port: int, log: str, extra: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n"
            f"\tbind = {PEER}\n\tport = {port}\n\tlog_type = FILE {log}\n"
            f"\tlog_on_success = HOST PID\n\tlog_on_failure = HOST\n{extra}}}\n")


def stripped(text: str) -> list[str]:
    """`YY/M/D@hh:mm:ss xinetd[PID]: LEVEL: text` -> `LEVEL: text`; a service line
    `YY/M/D@hh:mm:ss: ENTRY` -> `ENTRY`; pids -> N."""
    out = []
    for line in text.splitlines():
        rest = line.split(": ", 1)[1] if ": " in line else line
        out.append(re.sub(r"pid=\d+", "pid=N", rest))
    return out


def main() -> int:
    run = begin()
    workdir = os.path.dirname(run.conf)
    fake_load(workdir, "9.50")
    shared, chatty_log = run.program_log, os.path.join(workdir, "chatty.log")
    busy, rate, echo, chatty, full = (free_port() for _ in range(5))
    full_log, full_text = os.path.join(workdir, "full.log"), "x" * 599 + "\n"
    with open(full_log, "w") as f:
        f.write(full_text)
    with open(run.conf, "w") as f:
        f.write(service("busy", busy, shared, "\tmax_load = 1\n")
                + service("rate", rate, shared, "\tcps = 1 3\n")
                + f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = echo-dgram\n"
                  f"\tsocket_type = dgram\n\twait = yes\n\tbind = {PEER}\n\tport = {echo}\n"
                  f"\tonly_from = 10.1.2.3\n\tlog_type = FILE {shared}\n"
                  f"\tlog_on_failure = HOST\n}}\n"
                + service("chatty", chatty, f"{chatty_log} 300 500", "\tcps = 0 0\n")
                + service("full", full, f"{full_log} 300 500", ""))
    with running(run.daemon, run.conf, shared) as daemon:
        ask(busy)
        wait_for(shared, r"FAIL: busy", time.monotonic() + 10)
        # The first two connections in one cps second of both clocks: the second trips.
        second_to_spare(0.3)
        for _ in range(10):
            ask(rate)
            if re.search(r"FAIL: rate", read(shared)):
                break
        first, second = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for sock in (first, second):
            sock.bind((PEER, 0))
        # first, first again within the minute, second, first (no longer the last one)
        for sock in (first, first, second, first):
            sock.sendto(b"x", (PEER, echo))
            time.sleep(0.2)
        for _ in range(12):     # about 50 bytes a line: past 500 bytes
            ask(chatty)
            time.sleep(0.05)
        ask(full)
        # A daemon logs a START (or its log's error) as it starts a server, before it
        # reaps it: once the servers are reaped, every line is written.
        wait_settled(daemon.pid, time.monotonic() + 10)
    lines = [line for line in stripped(read(shared))
             if not line.startswith(("NOTICE", "WARNING: Exiting"))]
    print(json.dumps({
        "refusals": [line for line in lines if "chatty" not in line and "full" not in line],
        "full_untouched": read(full_log) == full_text,
        "chatty": [re.sub(r"log: -?\d+$", "log: NUMBER", line)
                   for line in lines if "chatty log" in line],
        "chatty_lines": len(read(chatty_log).splitlines()),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
