"""How `log_on_success`/`log_on_failure` are put together, and how servers end, as the
service log shows them, against one daemon.

    unshare -n python3 log_flags_scenario.py WORKDIR DAEMON [ARG...]

One FILE log (the one of `defaults`, or a service's own), one client per service:
- the flags, each case a stream nowait /bin/echo: services before the `defaults` block
  (they get its flags after every file is read) using `+=`, `-=` and an empty `=`;
  a `defaults` block with `=` twice (cumulative there), `-=` and `+=`; services after
  it with flags in lower case, repeated, a second `=` line, `+=` with nothing, `=`
  then `+=` then `-=`, DURATION or EXIT alone; `log_on_failure` cases refused by
  `instances = 0` (refused before xinetd forks, so both daemons log the FAIL alone);
- how a server ends: stopped by SIGSTOP then continued (one EXIT, with its own
  status, when it really exits), `exit 255`, SIGABRT with a core file;
- a reload while servers run, which changes one service's flags, moves another's log
  to a file of its own and takes EXIT out of a third's: their EXIT lines follow the
  new configuration, and the next clients too. Those servers are /bin/cat, which ends
  when its client closes: each one outlasts the reload however long the daemon takes
  to apply it (a server that ended first would rightly be logged by the old flags).

Prints one JSON object: "lines", for each service id its service-log entries (stamp
dropped, pids made N) in order, from every log file; "moved" the lines of the file the
reload moved a service to; "program" the program log's lines. Standard library only;
every wait bounded.
"""

import json
import os
import re
import signal
import socket
import sys
import time

from scenario_support import begin, free_port, read, running, wait_settled, write_file

PEER = "127.0.0.1"

BEFORE = {          # services that come before `defaults` in the file
    "early_plus": "\tlog_on_success += DURATION\n",
    "early_minus": "\tlog_on_success -= HOST\n",
    "early_none": "",
    "early_empty": "\tlog_on_success =\n",
}
DEFAULTS = ("\tlog_on_success = HOST\n\tlog_on_success = PID EXIT\n\tlog_on_success -= EXIT\n"
            "\tlog_on_success += DURATION\n\tlog_on_failure = HOST\n")
AFTER = {
    "inherited": "",
    "lower": "\tlog_on_success = host pid exit\n",
    "repeated": "\tlog_on_success = PID PID HOST PID\n",
    "second": "\tlog_on_success = HOST\n\tlog_on_success = PID\n",
    "plus_nothing": "\tlog_on_success +=\n",
    "steps": "\tlog_on_success = HOST\n\tlog_on_success += PID EXIT\n\tlog_on_success -= HOST\n",
    "duration_only": "\tlog_on_success = DURATION\n",
    "exit_only": "\tlog_on_success = EXIT\n",
    "minus_all": "\tlog_on_success -= HOST PID DURATION\n",
    "fail_inherited": "\tinstances = 0\n",
    "fail_attempt": "\tinstances = 0\n\tlog_on_failure = ATTEMPT\n",
    "fail_minus": "\tinstances = 0\n\tlog_on_failure -= HOST\n",
    "fail_plus": "\tinstances = 0\n\tlog_on_failure += ATTEMPT USERID\n",
    "fail_empty": "\tinstances = 0\n\tlog_on_failure =\n",
}
EVERY = "\tlog_on_success = HOST PID EXIT DURATION\n"
# Running across the reload (until their clients close), then once more after it.
RELOADED = {
    "changed": (EVERY, "\tlog_on_success = PID DURATION\n"),
    "moved": (EVERY, EVERY + "\tlog_type = FILE {moved}\n"),
    "no_exit": ("\tlog_on_success = HOST PID EXIT\n", "\tlog_on_success = HOST PID\n"),
}


def service(sid, port, body, server="/bin/echo", args="hi"):
    return (f"service {sid}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = {server}\n"
            + (f"\tserver_args = {args}\n" if args else "") + f"{body}"
            f"\tbind = {PEER}\n\tport = {port}\n}}\n")


def config(ports, scripts, service_log, moved, after_reload):
    text = "".join(service(sid, ports[sid], body) for sid, body in BEFORE.items())
    text += f"defaults\n{{\n\tlog_type = FILE {service_log}\n{DEFAULTS}}}\n"
    text += "".join(service(sid, ports[sid], body) for sid, body in AFTER.items())
    for sid, (path, args) in scripts.items():
        text += service(sid, ports[sid], EVERY, server=path, args=args)
    for sid, bodies in RELOADED.items():
        text += service(sid, ports[sid], bodies[after_reload].format(moved=moved),
                        server="/bin/cat", args="")
    return text


def client(port, until_eof=True):
    """Connect and read to EOF (or just connect, for a server that runs a while)."""
    conn = socket.create_connection((PEER, port), timeout=5)
    if not until_eof:
        return conn
    with conn:
        conn.settimeout(5)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
    return None


def finished_client(port):
    """Connect, send EOF at once and read to EOF: a /bin/cat server ends."""
    with socket.create_connection((PEER, port), timeout=5) as conn:
        conn.shutdown(socket.SHUT_WR)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass


def wait_for_line(path, pattern, deadline, count=1):
    while time.monotonic() < deadline:
        if len(re.findall(pattern, read(path))) >= count:
            return True
        time.sleep(0.02)
    return False


def entries(path):
    # Split on LF only: a line is what the daemon ended with "\n".
    return [re.sub(r"pid=[1-9]\d*", "pid=N", line.split(": ", 1)[1])
            for line in read(path).split("\n") if ": " in line]


def main():
    run = begin()
    workdir = os.path.dirname(run.conf)
    moved = os.path.join(workdir, "moved.log")
    scripts = {
        # Prints its pid, stops itself; the scenario continues it.
        "stopped": (write_file(os.path.join(workdir, "stopped.sh"),
                               "#!/bin/sh\necho $$\nkill -STOP $$\nexit 7\n", 0o755), ""),
        "status255": (write_file(os.path.join(workdir, "s255.sh"),
                                 "#!/bin/sh\nexit 255\n", 0o755), ""),
        "aborted": (write_file(os.path.join(workdir, "abort.sh"),
                               "#!/bin/sh\nulimit -c unlimited\ncd \"$1\"\nkill -ABRT $$\n",
                               0o755), workdir),
    }
    ids = [*BEFORE, *AFTER, *scripts, *RELOADED]
    ports = {sid: free_port() for sid in ids}
    with open(run.conf, "w") as f:
        f.write(config(ports, scripts, run.service_log, moved, 0))
    with running(run.daemon, run.conf, run.program_log) as proc:
        for sid in [*BEFORE, *AFTER, "status255", "aborted"]:
            client(ports[sid])
        with client(ports["stopped"], until_eof=False) as conn:
            conn.settimeout(5)
            pid = int(conn.recv(64).split()[0])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                        break
                time.sleep(0.02)
            time.sleep(0.3)     # an EXIT line for the stop would be written by now
            os.kill(pid, signal.SIGCONT)
            wait_for_line(run.service_log, r"EXIT: stopped ", time.monotonic() + 5)
        held = [client(ports[sid], until_eof=False) for sid in RELOADED]
        deadline = time.monotonic() + 5
        for sid in RELOADED:
            wait_for_line(run.service_log, rf"START: {sid}\b", deadline)
        with open(run.conf, "w") as f:
            f.write(config(ports, scripts, run.service_log, moved, 1))
        proc.send_signal(signal.SIGHUP)
        wait_for_line(run.program_log, "Reconfigured", time.monotonic() + 10)
        for conn in held:
            conn.close()                    # their servers end now, after the reload
        deadline = time.monotonic() + 10
        for sid in ("changed", "moved"):
            wait_for_line(run.service_log if sid != "moved" else moved,
                          rf"EXIT: {sid}\b", deadline)
        # no_exit's server too has ended; its EXIT line (if any) is written once the
        # daemon has reaped it.
        wait_settled(proc.pid, time.monotonic() + 10)
        for sid in RELOADED:
            finished_client(ports[sid])
        deadline = time.monotonic() + 10
        wait_for_line(run.service_log, r"EXIT: changed\b", deadline, count=2)
        wait_for_line(moved, r"EXIT: moved\b", deadline, count=2)
        wait_settled(proc.pid, time.monotonic() + 10)     # no_exit's server reaped
    lines = {sid: [] for sid in ids}
    for entry in entries(run.service_log) + entries(moved):
        sid = entry.split()[1]
        lines.setdefault(sid, []).append(entry)
    print(json.dumps({"lines": lines, "moved": entries(moved),
                      "program": [line.split(": ", 1)[1]
                                  for line in read(run.program_log).split("\n")
                                  if ": " in line]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
