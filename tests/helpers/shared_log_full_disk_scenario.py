"""Services sharing one log file on a full file system, and a reload meanwhile.

    unshare -n -m --propagation private python3 shared_log_full_disk_scenario.py WORKDIR DAEMON [ARG...]

In its private namespaces it brings `lo` up and mounts a 16 KiB tmpfs on WORKDIR/full.
Services aa and bb (/bin/echo, `log_on_success = HOST`: one START entry a client) log
to full/shared.log, service cc to full/other.log; the program log is outside. With the
file system full it asks aa, bb, aa, bb, aa, bb and cc; then reloads (SIGHUP) a
configuration that keeps aa, removes bb and cc, and adds dd, also logging to
full/shared.log; once reconfigured it asks dd and aa, frees the disk and asks aa a
last time. Prints one JSON object: the entries of shared.log and other.log and the
program log's lines (stamps dropped, pids made N, empty lines left out). Standard
library only; every wait bounded.
"""

import json
import os
import time

from full_disk_scenario import ask, echo_service, fill_disk, full_folder, lines
from scenario_support import begin, free_port, running, wait_count, write_file


def service(name, port, log):
    return echo_service(name, port, log, "\tlog_on_success = HOST\n")


def main():
    run = begin()
    with full_folder(run) as folder:
        shared, other = os.path.join(folder, "shared.log"), os.path.join(folder, "other.log")
        ports = {name: free_port() for name in ("aa", "bb", "cc", "dd")}
        write_file(run.conf, service("aa", ports["aa"], shared)
                   + service("bb", ports["bb"], shared) + service("cc", ports["cc"], other))
        answers = []
        with running(run.daemon, run.conf, run.program_log) as proc:
            fill_disk(folder, shared, other)
            for name in ("aa", "bb", "aa", "bb", "aa", "bb", "cc"):
                answers.append(ask(ports[name]))
            write_file(run.conf, service("aa", ports["aa"], shared)
                       + service("dd", ports["dd"], shared))
            proc.send_signal(1)     # SIGHUP
            wait_count(run.program_log, "Reconfigured", 1, time.monotonic() + 10)
            answers += [ask(ports["dd"]), ask(ports["aa"])]
            os.unlink(os.path.join(folder, "filler"))
            answers.append(ask(ports["aa"]))
            wait_count(shared, "START", 9, time.monotonic() + 10)
        print(json.dumps({"answers": answers, "shared": lines(shared),
                          "other": lines(other), "program_log": lines(run.program_log)}))


if __name__ == "__main__":
    main()
