"""One log file for two services, with size limits, against one daemon.

    unshare -n python3 shared_log_scenario.py WORKDIR DAEMON [ARG...]

Two runs: `common`, where the file is the log of `defaults` (one log for both
services), and `shared`, where each service names the same file itself (a log each).
Services `aa` and `bb` (/bin/echo, `log_on_success = HOST PID`) are asked in turn
until far past the 300/500-byte limits. Prints one JSON object: for each run, the
program-log lines about the limits (a number in `Error in ID log: N` made `N`; runs of
the same line kept once) and how many START lines of each service the file got.
Standard library only; every wait bounded.
"""

import json
import os
import re
import socket
import sys
import time

from scenario_support import begin, free_port, read, running, wait_settled


def service(name, port, log):
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"{log}\tlog_on_success = HOST PID\n\tcps = 0 0\n}}\n")


def one_run(run, kind):
    folder = os.path.join(os.path.dirname(run.conf), kind)
    os.mkdir(folder)
    conf, program, log = (os.path.join(folder, name)
                          for name in ("xinetd.conf", "program.log", "shared.log"))
    ports = {"aa": free_port(), "bb": free_port()}
    limits = f"\tlog_type = FILE {log} 300 500\n"
    if kind == "common":
        text = f"defaults\n{{\n{limits}}}\n" + "".join(
            service(name, port, "") for name, port in ports.items())
    else:
        text = "".join(service(name, port, limits) for name, port in ports.items())
    with open(conf, "w") as f:
        f.write(text)
    with running(run.daemon, conf, program) as daemon:
        for _ in range(14):
            for port in ports.values():
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.settimeout(5)
                    conn.recv(10)
                time.sleep(0.02)
        # The last lines are written as the daemon reaps the last servers.
        wait_settled(daemon.pid, time.monotonic() + 10)
    lines = []
    for line in read(program).splitlines():
        m = re.search(r"((?:ALERT|ERROR): (?:Size|Error) .*)", line)
        if m:
            text = re.sub(r"log: (-?\d+|size limit reached)$", "log: N", m.group(1))
            if text not in lines:
                lines.append(text)
    written = read(log)
    return {"lines": lines,
            "starts": {name: len(re.findall(rf"START: {name} ", written)) for name in ports}}


def main():
    run = begin()
    print(json.dumps({kind: one_run(run, kind) for kind in ("common", "shared")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
