"""The stamps and `daytime` under several TZ values.

    unshare -n -m --propagation private python3 zone_stamps_scenario.py WORKDIR DAEMON [ARG...]

For each TZ value (a name, POSIX strings with a half-hour offset, invalid values),
starts the daemon with it, asks `daytime` and two services logging to a FILE and to
syslog (/dev/log is this script's socket, on a private layer over /dev), and stops it.

Prints one JSON object, per TZ value: the zone `daytime` names, and the offset from UTC
(minutes, to the nearest half hour) of daytime's time, of the FILE service log's stamp,
of the syslog line's and of the program log's last line. Standard library only; every
wait bounded.
"""

import json
import os
import re
import sys
import time

from scenario_support import (
    SyslogSink, begin, free_port, private_dev_and_etc, read, running, wait_for)
from zone_change_scenario import ask, offset, syslog_starts

ZONES = ("UTC", "XXX-5:30", "<+0530>-5:30", "America/St_Johns", "Asia/Kolkata",
         "garbage!!", "Foo/Bar", ":/nonexistent", "")


def service(name: str, port: int, body: str) -> str:
    return (f"service {name}\n{{\n\tsocket_type = stream\n\twait = no\n\tuser = root\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n{body}}}\n")


def main() -> int:
    run = begin()
    private_dev_and_etc()
    sink = SyslogSink()
    ports = {name: free_port() for name in ("daytime", "file", "syslog")}
    echo = "\ttype = UNLISTED\n\tserver = /bin/echo\n\tserver_args = hi\n"
    with open(run.conf, "w") as f:
        f.write("defaults\n{\n\tlog_on_success = HOST\n}\n"
                + service("daytime", ports["daytime"], "\ttype = INTERNAL UNLISTED\n")
                + service("file", ports["file"], echo + f"\tlog_type = FILE {run.service_log}\n")
                + service("syslog", ports["syslog"], echo + "\tlog_type = SYSLOG daemon\n"))
    result: dict[str, dict[str, object]] = {}
    for zone in ZONES:
        os.environ["TZ"] = zone
        for path in (run.service_log, run.program_log):
            if os.path.exists(path):
                os.unlink(path)
        with running(run.daemon, run.conf, run.program_log):
            now = time.time()
            daytime = ask(ports["daytime"])
            ask(ports["file"])
            ask(ports["syslog"])
            wait_for(run.service_log, "START: file", time.monotonic() + 10)
            syslog = syslog_starts(sink)
            program = read(run.program_log).splitlines()[-1]
        day = re.search(r"(\d\d:\d\d):\d\d ([^\\]*)\\r\\n", daytime)
        stamp = re.search(r"(\d\d:\d\d):\d\d xinetd\[", syslog[0]) if syslog else None
        result[zone] = {
            "daytime zone": day.group(2) if day else daytime,
            "daytime": offset(day.group(1), now) if day else None,
            "service file log": offset(read(run.service_log).split("@")[1], now),
            "syslog": offset(stamp.group(1), now) if stamp else None,
            "program log": offset(program.split("@")[1], now),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
