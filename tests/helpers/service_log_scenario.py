"""Service log lines of every kind of service and refusal, against one daemon, with a
real syslog socket.

    unshare -n -m python3 service_log_scenario.py WORKDIR DAEMON [ARG...]

In its private namespaces it brings `lo` up, overlays /dev and /etc with private
writable layers (so /dev/log can be a socket this script reads, and /etc/hosts.deny a
file it writes, without touching the host), makes /proc/loadavg read 9.50, writes a
configuration with one service per case (tests/compat/test_service_log_oracle.py
describes them) and drives one client per case. Services log to one FILE log, or to
syslog at the facility and level the case names. Prints one JSON object: for each
service id, its FILE lines and its syslog messages (`<PRI>xinetd[N]: text`), in order,
with the stamps dropped and pids, durations and ports made N. No identd runs: USERID
queries are refused. Standard library only; every wait bounded.
"""

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from scenario_support import (
    SyslogSink, begin, far_window, free_port, private_dev_and_etc, read, running, settled,
    wait_for, write_file)

PEER = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
SUCCESS_FLAGS = ("HOST", "PID", "USERID", "EXIT", "DURATION", "TRAFFIC")
FAILURE_FLAGS = ("HOST", "USERID", "ATTEMPT")


def subsets(flags):
    return [" ".join(c) for n in range(len(flags) + 1) for c in itertools.combinations(flags, n)]


_TAKEN = set()


def unique_port():
    """A free port no other case has: free_port() may answer the same one twice."""
    while True:
        port = free_port()
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


class Case:
    def __init__(self, sid, body, action, name=None, log=None):
        self.sid, self.body, self.action = sid, body, action
        self.name = name or sid
        self.log = log          # None: the FILE log; else "SYSLOG ..."
        self.port = unique_port()


def stream(port, data=b"", hold=0.0, read_all=True):
    try:
        with socket.create_connection((PEER, port), timeout=5) as conn:
            if data:
                conn.sendall(data)
            if hold:
                time.sleep(hold)
            if read_all:
                conn.settimeout(3)
                while conn.recv(4096):
                    pass
    except OSError:
        pass


def stream_some(port, data=b"x\n"):
    """Send, read one answer, close (for servers that never end on their own)."""
    try:
        with socket.create_connection((PEER, port), timeout=5) as conn:
            conn.sendall(data)
            conn.settimeout(3)
            conn.recv(4096)
            time.sleep(0.1)
    except OSError:
        pass


def dgram(port, data=b"x"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # Short: refused datagrams and discard get no answer; the lines are read at the end.
        s.settimeout(0.5)
        s.sendto(data, (PEER, port))
        try:
            s.recv(65535)
        except OSError:
            pass


def held(port, times):
    """`times` connections at once, each held a moment: the later ones are refused."""
    conns = []
    for _ in range(times):
        try:
            c = socket.create_connection((PEER, port), timeout=5)
            conns.append(c)
            time.sleep(0.3)
        except OSError:
            pass
    time.sleep(0.5)
    for c in conns:
        c.close()


def external(server, args="", socket_type="stream", wait="no", extra=""):
    return (f"\ttype = UNLISTED\n\tsocket_type = {socket_type}\n\twait = {wait}\n"
            f"\tuser = root\n\tserver = {server}\n"
            + (f"\tserver_args = {args}\n" if args else "") + extra)


def internal(socket_type, wait, extra=""):
    return (f"\ttype = INTERNAL UNLISTED\n\tsocket_type = {socket_type}\n"
            f"\twait = {wait}\n" + extra)


def cases(workdir):
    out = []
    py = sys.executable
    def script(name, text):
        return write_file(os.path.join(workdir, name), text, 0o755)
    killer = script("killer.sh", "#!/bin/sh\nkill -TERM $$\n")
    segv = script("segv.sh", "#!/bin/sh\nkill -KILL $$\n")
    three = script("three.sh", "#!/bin/sh\nexit 3\n")
    broken = script("broken.sh", "#!/nonexistent/interpreter\n")
    every_success = " ".join(SUCCESS_FLAGS)
    # TRAFFIC only on a redirect: xinetd disables any other service that sets it.
    no_traffic = " ".join(f for f in SUCCESS_FLAGS if f != "TRAFFIC")
    # Every log_on_success combination on a stream nowait server.
    for n, flags in enumerate(subsets(SUCCESS_FLAGS)):
        out.append(Case(f"nw{n}", external("/bin/echo", "hi")
                        + f"\tlog_on_success = {flags}\n", lambda p: stream(p)))
    # Every log_on_failure combination on an address refusal (stream, dgram).
    for n, flags in enumerate(subsets(FAILURE_FLAGS)):
        out.append(Case(f"addr{n}", external("/bin/echo", "hi")
                        + f"\tonly_from = 10.1.2.3\n\tlog_on_failure = {flags}\n",
                        lambda p: stream(p)))
        out.append(Case(f"daddr{n}", internal("dgram", "yes", "\tonly_from = 10.1.2.3\n"
                                               f"\tlog_on_failure = {flags}\n"),
                        lambda p: dgram(p), name="echo"))
    some_success = ("", "HOST", "PID", "EXIT", "DURATION", "PID EXIT", no_traffic)
    for n, flags in enumerate(some_success):
        sf = f"\tlog_on_success = {flags}\n"
        out.append(Case(f"sw{n}", external(py, f"{HERE}/wait_stream_server.py", wait="yes",
                                           extra=sf), lambda p: stream_some(p)))
        out.append(Case(f"dw{n}", external(py, f"{HERE}/udp_wait_server.py",
                                           socket_type="dgram", wait="yes", extra=sf),
                        lambda p: dgram(p)))
        for builtin in ("echo", "daytime", "chargen", "discard", "time"):
            stream_action = (lambda p: stream_some(p)) if builtin in ("echo", "chargen") else (
                (lambda p: stream(p, b"x", hold=0.2, read_all=False)) if builtin == "discard"
                else (lambda p: stream(p)))
            out.append(Case(f"s{builtin}{n}", internal("stream", "no", sf), stream_action,
                            name=builtin))
            out.append(Case(f"d{builtin}{n}", internal("dgram", "yes", sf),
                            lambda p: dgram(p), name=builtin))
        out.append(Case(f"kill{n}", external(killer, extra=sf), lambda p: stream(p)))
        out.append(Case(f"exec{n}", external(broken, extra=sf), lambda p: stream(p)))
        out.append(Case(f"nine{n}", external(segv, extra=sf), lambda p: stream(p)))
        out.append(Case(f"three{n}", external(three, extra=sf), lambda p: stream(p)))
    # Redirect and tcpmux, each with every success flag and none.
    target = Case("target", external("/bin/cat") + "\tlog_on_success =\n",
                  lambda p: None)
    out.append(target)
    for n, flags in enumerate(("", "TRAFFIC", "HOST PID TRAFFIC", every_success)):
        out.append(Case(f"redir{n}", "\ttype = UNLISTED\n\tsocket_type = stream\n\tuser = root\n"
                        f"\twait = no\n\tredirect = {PEER} {target.port}\n"
                        f"\tlog_on_success = {flags}\n",
                        lambda p: stream_some(p, b"hello\n")))
    mux = Case("tcpmux", internal("stream", "no", f"\tlog_on_success = {no_traffic}\n"),
               lambda p: None)
    out.append(mux)
    for n, flags in enumerate(("", "HOST PID", no_traffic)):
        out.append(Case(f"mux{n}", "\ttype = UNLISTED TCPMUX\n\tsocket_type = stream\n\twait = no\n"
                        "\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n"
                        f"\tlog_on_success = {flags}\n",
                        (lambda name: lambda p: stream(mux.port, f"{name}\r\n".encode()))(
                            f"mux{n}")))
    # Refusals of every kind, with every failure flag and with none.
    for n, flags in enumerate(("", "HOST", "ATTEMPT", " ".join(FAILURE_FLAGS))):
        ff = f"\tlog_on_failure = {flags}\n\tlog_on_success = HOST PID EXIT\n"
        sleeper = external("/bin/sleep", "2", extra=ff)
        out.append(Case(f"time{n}", sleeper + f"\taccess_times = {far_window()}\n",
                        lambda p: stream(p)))
        out.append(Case(f"inst{n}", sleeper + "\tinstances = 1\n", lambda p: held(p, 2)))
        out.append(Case(f"psrc{n}", sleeper + "\tper_source = 1\n", lambda p: held(p, 2)))
        out.append(Case(f"cps{n}", sleeper + "\tcps = 1 30\n", lambda p: held(p, 3)))
        out.append(Case(f"load{n}", sleeper + "\tmax_load = 1\n", lambda p: stream(p)))
        out.append(Case(f"wrap{n}", sleeper + f"\tlibwrap = deniedwrap{n}\n",
                        lambda p: stream(p)))
        out.append(Case(f"dwin{n}", internal("dgram", "yes", ff) +
                        f"\taccess_times = {far_window()}\n", lambda p: dgram(p),
                        name="daytime"))
    # `+=` and `-=` on the defaults' flags (HOST PID EXIT, HOST).
    for n, (op, flags, failure) in enumerate((("+=", "DURATION", "+= ATTEMPT"),
                                              ("-=", "HOST", "-= HOST"),
                                              ("-=", "PID EXIT", "+= USERID"))):
        out.append(Case(f"plus{n}", external("/bin/echo", "hi")
                        + f"\tlog_on_success {op} {flags}\n", lambda p: stream(p)))
        out.append(Case(f"fplus{n}", external("/bin/echo", "hi")
                        + f"\tonly_from = 10.1.2.3\n\tlog_on_failure {failure}\n",
                        lambda p: stream(p)))
    # A FILE log removed while the daemon runs: later lines go to the removed file.
    rotated = os.path.join(workdir, "rotated.log")

    def rotate(port):
        stream(port)
        # Its EXIT line goes to the log before the rename.
        wait_for(rotated, r"EXIT: rot ", time.monotonic() + 10)
        os.rename(rotated, rotated + ".1")
        stream(port)
    out.append(Case("rot", external("/bin/echo", "hi"), rotate, log=f"FILE {rotated}"))
    # A FILE log that cannot be opened.
    out.append(Case("nolog", external("/bin/echo", "hi"), lambda p: stream(p),
                    log="FILE /nonexistent/folder/x.log"))
    out.append(Case("dirlog", external("/bin/echo", "hi"), lambda p: stream(p),
                    log=f"FILE {workdir}"))
    # Syslog at several facilities and levels.
    for n, log in enumerate(("SYSLOG daemon", "SYSLOG daemon info", "SYSLOG authpriv",
                             "SYSLOG local0 warning", "SYSLOG local7 debug",
                             "SYSLOG mail emerg")):
        out.append(Case(f"sys{n}", external("/bin/echo", "hi")
                        + "\tlog_on_success = HOST PID EXIT DURATION\n",
                        lambda p: stream(p), log=log))
        out.append(Case(f"sysf{n}", external("/bin/echo", "hi")
                        + "\tonly_from = 10.1.2.3\n\tlog_on_failure = HOST ATTEMPT\n",
                        lambda p: stream(p), log=log))
        out.append(Case(f"sysd{n}", internal("dgram", "yes",
                                              "\tlog_on_success = HOST PID EXIT\n"),
                        lambda p: dgram(p), name="daytime", log=log))
    return out


def config(case_list, service_log):
    text = ("defaults\n{\n\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n"
            "\tcps = 0 0\n}\n")
    for c in case_list:
        log = c.log or f"FILE {service_log}"
        text += (f"service {c.name}\n{{\n\tid = {c.sid}\n{c.body}\tbind = {PEER}\n"
                 f"\tport = {c.port}\n\tlog_type = {log}\n}}\n")
    return text


def normalise(text):
    text = re.sub(r"pid=[1-9]\d*", "pid=N", text)
    text = re.sub(r"xinetd\[\d+\]", "xinetd[N]", text)
    return re.sub(r"duration=\d+", "duration=N", text)


def main():
    run = begin()
    workdir = os.path.dirname(run.conf)
    private_dev_and_etc()
    fake = os.path.join(workdir, "loadavg")
    with open(fake, "w") as f:
        f.write("9.50 9.00 8.00 1/100 1234\n")
    subprocess.run(["mount", "--bind", fake, "/proc/loadavg"], check=True)
    with open("/etc/hosts.deny", "w") as f:
        f.write("".join(f"deniedwrap{n}: ALL\n" for n in range(4)))
    sink = SyslogSink()
    messages, drain = sink.messages, sink.drain

    case_list = cases(workdir)
    with open(run.conf, "w") as f:
        f.write(config(case_list, run.service_log))
    with running(run.daemon, run.conf, run.program_log) as proc:
        for c in case_list:
            c.action(c.port)
            drain()
        # A reload reopens the logs: the rotated one is created again.
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "Reconfigured" not in read(run.program_log) and time.monotonic() < deadline:
            time.sleep(0.05)
        stream(next(c.port for c in case_list if c.sid == "rot"))
        # The sleepers (2 s) end: their EXIT lines are written once they are reaped.
        deadline = time.monotonic() + 15
        while not settled(proc.pid) and time.monotonic() < deadline:
            drain()     # syslog's lines meanwhile (the socket's queue is not endless)
            time.sleep(0.05)
    drain()
    result = {c.sid: {"file": [], "syslog": []} for c in case_list}
    for line in read(run.service_log).splitlines():
        entry = normalise(line.split(": ", 1)[1] if ": " in line else line)
        words = entry.split()
        if len(words) > 1 and words[1] in result:
            result[words[1]]["file"].append(entry)
        else:
            result.setdefault("?", {"file": [], "syslog": []})["file"].append(entry)
    for msg in messages:
        m = re.match(r"<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d (.*)", msg, re.S)
        text = normalise(f"<{m.group(1)}>{m.group(2)}" if m else msg)
        words = text.split()
        sid = words[2] if len(words) > 2 else "?"
        if sid not in result:
            sid = "?"
            result.setdefault("?", {"file": [], "syslog": []})
        result[sid]["syslog"].append(text)
    program = [normalise(line.split(": ", 1)[1]) for line in
               read(run.program_log).splitlines() if ": " in line]
    rotated = os.path.join(workdir, "rotated.log")
    files = {name: [normalise(line.split(": ", 1)[1]) for line in read(path).splitlines()]
             for name, path in (("rotated", rotated), ("rotated.1", rotated + ".1"))}
    print(json.dumps({"services": result, "program": program, "files": files,
                      "rotated_exists": os.path.exists(rotated)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
