"""instances, per_source, -limit and max_load, run against one daemon in private
network and mount namespaces.

    unshare -n -m python3 limits_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, makes /proc/loadavg read 9.50 (a bind mount, in this mount namespace
only), writes a configuration of services that each trip one limit or several at once
(stream external servers, forked and in-loop builtins, datagram builtins, a stream
wait = yes service with `per_source = 0`), starts the daemon with `-limit 4`, and asks
each in turn. Prints one JSON object: what every client saw, and the lines the
services logged (to the daemon's own program log file, so the order is kept) without
stamps and pids. Standard library only; every wait bounded.
"""

import json
import os
import re
import socket
import sys
import time

from scenario_support import (
    begin, children_of, fake_load, free_port, read, running, seen, wait_children, wait_for)

PEER = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))


def ask(port: int, data: bytes = b"", wait: float = 1.0) -> str:
    """What a client of `port` sees; `wait`: how long it waits for more (a server that
    must be started has the time its fork and exec take on a busy machine)."""
    try:
        conn = socket.create_connection((PEER, port), timeout=5)
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    with conn:
        return seen(conn, data, wait)


def datagram(port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(b"x", (PEER, port))
        try:
            return f"{len(sock.recv(4096))} bytes"
        except OSError as exc:
            return type(exc).__name__


def service(name: str, port: int, extra: str, *, kind: str = "stream", wait: str = "no",
            server: str | None = "/bin/cat", type_: str = "UNLISTED") -> str:
    text = (f"service {name}\n{{\n\ttype = {type_}\n\tsocket_type = {kind}\n"
            f"\twait = {wait}\n\tuser = root\n\tbind = {PEER}\n\tport = {port}\n")
    if server is not None:
        text += f"\tserver = {server}\n"
    return text + extra + "}\n"


def stripped(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        rest = line.split(": ", 1)[1] if ": " in line else line
        if rest.startswith(("NOTICE", "WARNING")):
            continue        # start-up, shutdown (xinetd also signals its forked builtins)
        out.append(re.sub(r"pid=\d+", "pid=N", rest))
    return out


def main() -> int:
    run = begin()
    workdir = os.path.dirname(run.conf)
    fake_load(workdir, "9.50")
    banner = os.path.join(workdir, "banner_fail")
    with open(banner, "w") as f:
        f.write("GO AWAY\n")
    log = run.program_log
    if os.path.exists(log):
        os.unlink(log)      # a line of an earlier run would say it started already
    ports = {name: free_port() for name in (
        "ext", "echo", "zero", "pszero", "echo-dgram", "ps", "load", "time", "both",
        "daytime", "waiter", "other")}
    hour = (time.localtime().tm_hour + 2) % 24
    outside = f"\taccess_times = {hour:02d}:00-{hour:02d}:59\n"
    internal = {"server": None, "type_": "INTERNAL UNLISTED"}
    with open(run.conf, "w") as f:
        f.write(f"defaults\n{{\n\tlog_type = FILE {log}\n\tlog_on_success = HOST PID\n"
                f"\tlog_on_failure = HOST\n\tcps = 0 0\n}}\n"
                + service("ext", ports["ext"], f"\tinstances = 2\n\tbanner_fail = {banner}\n")
                + service("echo", ports["echo"],
                          f"\tinstances = 1\n\tbanner_fail = {banner}\n", **internal)
                + service("zero", ports["zero"], "\tinstances = 0\n")
                + service("pszero", ports["pszero"], "\tper_source = 0\n")
                + service("echo", ports["echo-dgram"], "\tid = echo-dgram\n\tinstances = 0\n",
                          kind="dgram", wait="yes", **internal)
                + service("ps", ports["ps"], "\tper_source = 1\n")
                # Several limits at once: the first in xinetd's order is the reason.
                + service("load", ports["load"], f"\tmax_load = 9.5\n{outside}"
                                                 "\tinstances = 0\n")
                + service("time", ports["time"], f"{outside}\tinstances = 0\n"
                                                 "\tper_source = 0\n")
                + service("both", ports["both"], "\tinstances = 0\n\tper_source = 0\n")
                # Not forked by xinetd, never counted: only -limit refuses it.
                + service("daytime", ports["daytime"], "\tinstances = 1\n", **internal)
                + service("waiter", ports["waiter"],
                          f"\tserver_args = -I -S {HERE}/wait_stream_server.py\n"
                          "\tper_source = 0\n", wait="yes", server=sys.executable)
                + service("other", ports["other"], "\tserver_args = hi\n",
                          server="/bin/echo"))
    seen_by = {}
    with running(run.daemon, run.conf, log, "-limit", "4") as daemon:
        held = [socket.create_connection((PEER, ports["ext"]), timeout=5) for _ in range(2)]
        wait_for(log, r"(START: ext.*\n.*){2}", time.monotonic() + 10)
        seen_by["ext"] = ask(ports["ext"])
        echo = socket.create_connection((PEER, ports["echo"]), timeout=5)
        seen_by["echo held"] = seen(echo, b"hi\n", 0.5)
        seen_by["echo"] = ask(ports["echo"])
        for name in ("zero", "pszero", "load", "time", "both"):
            seen_by[name] = ask(ports[name])
        seen_by["echo-dgram"] = datagram(ports["echo-dgram"])
        first = socket.create_connection((PEER, ports["ps"]), timeout=5)
        wait_for(log, r"START: ps", time.monotonic() + 10)
        seen_by["ps"] = ask(ports["ps"])
        # -limit 4: ext, ext, echo and ps hold every slot.
        held_daytime = socket.create_connection((PEER, ports["daytime"]), timeout=5)
        seen_by["daytime held"] = seen(held_daytime, wait=0.5)[:5]
        seen_by["other"] = ask(ports["other"])
        serving = len(children_of(daemon.pid))     # the ps server (cat) among them
        first.close()
        wait_for(log, r"EXIT: ps|START: ps.*\n(?!.*FAIL: ps)", time.monotonic() + 2)
        # The ps server sees EOF and exits: a slot is free once the daemon reaped it.
        wait_children(daemon.pid, serving - 1, time.monotonic() + 10)
        # Served now, by /bin/echo: xinetd's was once seen still silent after a second
        # in a full parallel test run.
        seen_by["other again"] = ask(ports["other"], wait=10.0)
        # Its server (echo) has exited (the client saw EOF): wait until it is reaped.
        wait_children(daemon.pid, serving - 1, time.monotonic() + 10)
        seen_by["daytime"] = ask(ports["daytime"])[:5]
        # Last: xinetd 2.3.15.3 then never serves this service again.
        waiter = socket.create_connection((PEER, ports["waiter"]), timeout=5)
        wait_for(log, r"FAIL: waiter", time.monotonic() + 10)
        waiter.close()
        time.sleep(0.3)
        for conn in (*held, echo, held_daytime):
            conn.close()
    print(json.dumps({"clients": seen_by, "lines": stripped(read(log))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
