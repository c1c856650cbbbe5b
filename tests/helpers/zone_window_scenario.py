"""access_times at the edges of its intervals, with "now" moved by TZ.

    unshare -n python3 zone_window_scenario.py WORKDIR DAEMON [ARG...]

Starts the daemon with a POSIX TZ (`XXX-H:MM:SS`, a zone whose offset has seconds)
chosen so that its local time is about 10:05:30 during the run: half a minute from
either edge of the minute, so the run has that long before a client is judged by
another minute. Services with windows that end or start at 10:05 (both ends are
inclusive, at minute resolution), end just before or start just after it, several
intervals, the whole day, `24:00`, an empty interval (`10:05-10:05`) and one across
midnight; then `daytime` under the same zone.

Prints one JSON object: what each client got, the FAIL lines (without stamps), and
daytime's zone and minute. Standard library only; every wait bounded.
"""

import json
import os
import re
import socket
import sys
import time

from scenario_support import begin, free_port, read, running, seen, wait_count

# Local time wanted at the start of the run, in seconds after midnight: 10:05:25.
TARGET = 10 * 3600 + 5 * 60 + 25

WINDOWS = {
    "ends_now": "10:00-10:05",
    "starts_now": "10:05-10:06",
    "ended": "09:00-10:04",
    "not_yet": "10:06-11:00",
    "several": "01:00-02:00 10:04-10:05 12:00-13:00",
    "several_out": "01:00-02:00 10:06-10:07",
    "whole_day": "00:00-23:59",
    "to_24": "10:00-24:00",
    "empty": "10:05-10:05",
    "across_midnight": "22:00-10:30",
}


def zone_for(target: int) -> str:
    """A POSIX TZ under which local time is `target` seconds after midnight now."""
    offset = (int(time.time()) % 86400 - target) % 86400
    if offset > 43200:
        offset -= 86400
    sign, size = ("+" if offset >= 0 else "-"), abs(offset)
    return f"XXX{sign}{size // 3600}:{size % 3600 // 60:02d}:{size % 60:02d}"


def service(name: str, port: int, body: str) -> str:
    return (f"service {name}\n{{\n\tsocket_type = stream\n\twait = no\n\tuser = root\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n{body}}}\n")


def ask(port: int) -> str:
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    with conn:
        return seen(conn, wait=5)


def main() -> int:
    run = begin()
    os.environ["TZ"] = zone_for(TARGET)
    ports = {name: free_port() for name in [*WINDOWS, "daytime"]}
    body = "\ttype = UNLISTED\n\tserver = /bin/echo\n\tserver_args = hi\n"
    with open(run.conf, "w") as f:
        f.write(f"defaults\n{{\n\tlog_type = FILE {run.service_log}\n"
                "\tlog_on_success =\n\tlog_on_failure = HOST\n}\n"
                + "".join(service(name, ports[name], body + f"\taccess_times = {window}\n")
                          for name, window in WINDOWS.items())
                + service("daytime", ports["daytime"], "\ttype = INTERNAL UNLISTED\n"))
    with running(run.daemon, run.conf, run.program_log):
        got = {name: ask(ports[name]) for name in WINDOWS}
        daytime = ask(ports["daytime"])
        refused = sum(1 for answer in got.values() if answer == "b'' EOF")
        wait_count(run.service_log, "FAIL: ", refused, time.monotonic() + 10)
    fails = sorted(line.split(": ", 1)[1] for line in read(run.service_log).splitlines())
    day = re.search(r"(\d\d:\d\d):\d\d (\w*)", daytime)
    print(json.dumps({"clients": got, "fails": fails,
                      "daytime": day.groups() if day else daytime}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
