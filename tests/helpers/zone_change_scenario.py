"""The system's time zone changed under a running daemon (TZ unset): do its logs,
`daytime` and `access_times` follow /etc/localtime?

    unshare -n -m --propagation private python3 zone_change_scenario.py WORKDIR DAEMON [ARG...]

Puts private writable layers over /dev and /etc (/dev/log becomes this script's socket,
/etc/localtime its file), makes /etc/localtime UTC, starts the daemon without TZ, asks
each service, then replaces /etc/localtime with Asia/Kolkata (UTC+5:30, as
`timedatectl set-timezone` does: a new file in its place), reloads (SIGHUP, for a
program-log line) and asks again.

Prints one JSON object with, before and after the change: the zone `daytime` names, and
for each stamp (daytime's text, the FILE service log, the syslog service log, the
program log) its offset from UTC in minutes, rounded to a half hour, so the seconds
between the request and the stamp do not matter; and what a service whose
access_times window is open only around the present time of UTC+5:30 answers.
Standard library only; every wait bounded.
"""

import json
import os
import re
import shutil
import signal
import socket
import sys
import time

from scenario_support import (
    SyslogSink, begin, free_port, private_dev_and_etc, read, running, seen, wait_for)

ZONEINFO = "/usr/share/zoneinfo"
NEW_ZONE, NEW_OFFSET = "Asia/Kolkata", 330
DAY = 24 * 60


def set_system_zone(name: str) -> None:
    """Replace /etc/localtime by a copy of the zone (a new file, as tools write it)."""
    shutil.copy(os.path.join(ZONEINFO, name), "/etc/localtime.new")
    os.replace("/etc/localtime.new", "/etc/localtime")


def offset(stamp_hhmm: str, utc: float) -> int:
    """Minutes from UTC (at `utc`) to the stamp's `HH:MM`, to the nearest half hour."""
    hour, minute = (int(x) for x in stamp_hhmm.split(":")[:2])
    t = time.gmtime(utc)
    diff = (hour * 60 + minute - (t.tm_hour * 60 + t.tm_min)) % DAY
    return round(diff / 30) * 30 % DAY


def window_around(minutes: int) -> str:
    """access_times intervals covering `minutes` after midnight +-30, split at
    midnight. An interval left empty by the split (`00:00-00:00`, `23:59-23:59`) is
    left out: both daemons refuse it."""
    start, end = minutes - 30, minutes + 30
    if start < 0:
        parts = [(start + DAY, DAY - 1), (0, end)]
    elif end >= DAY:
        parts = [(start, DAY - 1), (0, end - DAY)]
    else:
        parts = [(start, end)]
    return " ".join(f"{clock(a)}-{clock(b)}" for a, b in parts if a < b)


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def service(name: str, port: int, body: str, kind: str = "UNLISTED") -> str:
    return (f"service {name}\n{{\n\ttype = {kind}\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = root\n\tport = {port}\n\tbind = 127.0.0.1\n{body}}}\n")


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return seen(conn, wait=5)


def syslog_starts(sink: SyslogSink) -> list[str]:
    """The `START: syslog` messages the sink got (waiting up to 10 s for the first);
    the sink is emptied for the next round."""
    deadline = time.monotonic() + 10
    syslog: list[str] = []
    while not syslog and time.monotonic() < deadline:
        sink.drain()
        syslog = [m for m in sink.messages if "START: syslog" in m]
        time.sleep(0.02)
    sink.messages.clear()
    return syslog


def main() -> int:
    run = begin()
    private_dev_and_etc()
    set_system_zone("Etc/UTC")
    os.environ.pop("TZ", None)
    sink = SyslogSink()
    ports = {name: free_port() for name in ("daytime", "file", "syslog", "window")}
    t = time.gmtime(time.time() + NEW_OFFSET * 60)
    window = window_around(t.tm_hour * 60 + t.tm_min)
    echo = "\tserver = /bin/echo\n\tserver_args = hi\n"
    with open(run.conf, "w") as f:
        f.write("defaults\n{\n\tlog_on_success = HOST\n\tlog_on_failure = HOST\n}\n"
                + service("daytime", ports["daytime"], "", "INTERNAL UNLISTED")
                + service("file", ports["file"], echo + f"\tlog_type = FILE {run.service_log}\n")
                + service("syslog", ports["syslog"], echo + "\tlog_type = SYSLOG daemon\n")
                + service("window", ports["window"], echo + f"\taccess_times = {window}\n"
                          f"\tlog_type = FILE {run.service_log}\n"))
    result: dict[str, dict[str, object]] = {}
    with running(run.daemon, run.conf, run.program_log) as proc:
        for step in ("before", "after"):
            if step == "after":
                set_system_zone(NEW_ZONE)
                proc.send_signal(signal.SIGHUP)
                if not wait_for(run.program_log, "Reconfigured", time.monotonic() + 10):
                    raise SystemExit("no reload")
            lines = len(read(run.service_log).splitlines())
            now = time.time()
            daytime = ask(ports["daytime"])
            ask(ports["file"])
            ask(ports["syslog"])
            window_answer = ask(ports["window"])
            wait_for(run.service_log, r"(START|FAIL): window", time.monotonic() + 10)
            syslog = syslog_starts(sink)
            day = re.search(r"(\d\d:\d\d):\d\d (\S*)\\r\\n", daytime)
            file_line = read(run.service_log).splitlines()[lines]
            program = read(run.program_log).splitlines()[-1]
            stamp = re.search(r"(\d\d:\d\d):\d\d xinetd\[", syslog[0]) if syslog else None
            result[step] = {
                "daytime zone": day.group(2) if day else daytime,
                "daytime": offset(day.group(1), now) if day else None,
                "service file log": offset(file_line.split("@")[1], now),
                "syslog": offset(stamp.group(1), now) if stamp else None,
                "program log": offset(program.split("@")[1], now),
                "access_times": window_answer,
            }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
