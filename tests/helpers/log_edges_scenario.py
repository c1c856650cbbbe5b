"""Edge cases of the service logs, against one daemon: size limits, odd log files, a
log removed or renamed while the daemon runs, syslog levels, long ids.

    unshare -n -m --propagation private python3 log_edges_scenario.py WORKDIR DAEMON [ARG...]

In its private namespaces it brings `lo` up, overlays /dev with a private writable
layer (so /dev/log can be a socket this script reads), mounts a read-only folder for a
log that cannot be created, writes one configuration with a service per case
(tests/compat/test_log_edges_oracle.py describes them), asks each service in turn,
removes and renames two logs, reloads (SIGHUP) and asks again. Prints one JSON object:
for each log file its lines (stamps dropped, pids and ports made N), the syslog
messages, the program log's lines (stamps and pids dropped), and which services
answered. Standard library only; every wait bounded.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

from scenario_support import (
    SyslogSink, begin, free_port, read, running, wait_for, wait_settled)

PEER = "127.0.0.1"
LONG_ID = "L" * 1500
EDGE_ID = "E" * 1013     # `START: ID pid=...` is cut inside ` pid=`
SYSLOG_ID = "S" * 1013
LONG_ARGS = " ".join(["arg%04d" % n for n in range(600)])    # 4,799 bytes
LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_TAKEN = set()


def unique_port():
    while True:
        port = free_port()
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


def overlay_dev():
    os.makedirs("/run/logedges-priv", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/logedges-priv"], check=True)
    upper, work = "/run/logedges-priv/u", "/run/logedges-priv/w"
    os.makedirs(upper)
    os.makedirs(work)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/dev,upperdir={upper},workdir={work}", "/dev"], check=True)


def service(name, port, log, args="hi", sid=None):
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = {args}\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tcps = 0 0\n"
            + (f"\tid = {sid}\n" if sid else "")
            + (f"\tlog_type = {log}\n" if log else "")
            + "\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n}\n")


def ask(port):
    """The server's answer (b"" when none came)."""
    got = b""
    try:
        with socket.create_connection((PEER, port), timeout=5) as conn:
            conn.settimeout(3)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got += data
    except OSError:
        pass
    return got


def normalise(text):
    text = re.sub(r"pid=[1-9]\d*", "pid=N", text)
    text = re.sub(r"xinetd\[\d+\]", "xinetd[N]", text)
    text = re.sub(r"\b\d{4,5}\b(?= \{)", "PID", text)
    text = re.sub(r"duration=\d+", "duration=N", text)
    return re.sub(r"([LES])\1{99,}", lambda m: f"<{m.group(1)}*{len(m.group(0))}>", text)


def entries(path):
    """The lines of a log without their stamps."""
    out = []
    for line in read(path).splitlines():
        m = re.match(r"\d\d/\d+/\d+@\d\d:\d\d:\d\d: (.*)", line)
        out.append(normalise(m.group(1) if m else "RAW " + line))
    return out


def program_lines(path):
    out = []
    for line in read(path).splitlines():
        m = re.match(r"\d\d/\d+/\d+@\d\d:\d\d:\d\d xinetd\[\d+\]: (.*)", line)
        text = normalise(m.group(1) if m else "RAW " + line)
        text = re.sub(r"(Error in \S+ log): .*", r"\1: N", text)
        text = re.sub(r"\[file=[^]]*\]", "[file=CONF]", text)
        out.append(text)
    return out


def main():
    run = begin()
    work = os.path.dirname(run.conf)
    overlay_dev()
    sink = SyslogSink()
    messages, drain = sink.messages, sink.drain

    def path(name):
        return os.path.join(work, name)

    os.mkdir(path("adir"))
    os.mkdir(path("ro"))
    subprocess.run(["mount", "--bind", path("ro"), path("ro")], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", path("ro")], check=True)
    os.symlink("target.log", path("link.log"))
    with open(path("target.log"), "w") as f:
        f.write("")
    os.symlink("dtarget.log", path("dangling.log"))
    os.mkfifo(path("fifo"))
    fifo_reader = os.open(path("fifo"), os.O_RDONLY | os.O_NONBLOCK)

    logs = {
        # name: (log_type, how many clients)
        "lim": (f"FILE {path('lim.log')} 300 500", 14),
        "eq": (f"FILE {path('eq.log')} 300 300", 8),
        "softonly": (f"FILE {path('softonly.log')} 200", 6),
        "kk": (f"FILE {path('kk.log')} 1K 2k", 24),
        "mm": (f"FILE {path('mm.log')} 1M 2M", 2),
        "zero": (f"FILE {path('zero.log')} 0", 2),
        "zz": (f"FILE {path('zz.log')} 0 0", 2),
        "gt": (f"FILE {path('gt.log')} 500 300", 1),
        "badsoft": (f"FILE {path('badsoft.log')} 12q", 1),
        "badhard": (f"FILE {path('badhard.log')} 12 x", 1),
        "toomany": (f"FILE {path('toomany.log')} 1 2 3", 1),
        "rm": (f"FILE {path('rm.log')}", 1),
        "ren": (f"FILE {path('ren.log')}", 1),
        "full": ("FILE /dev/full", 2),
        "null": ("FILE /dev/null 100 200", 8),
        "dir": (f"FILE {path('adir')}", 1),
        "rodir": (f"FILE {path('ro/x.log')}", 1),
        "link": (f"FILE {path('link.log')}", 1),
        "dangling": (f"FILE {path('dangling.log')}", 1),
        "fifo": (f"FILE {path('fifo')}", 2),
        "sh1": (f"FILE {path('shared.log')} 300 500", 8),
        "sh2": (f"FILE {path('shared.log')}", 8),
        "com": ("", 1),
        "syl": ("SYSLOG local3", 1),
        "badlvl": ("SYSLOG local1 loud", 1),
        "badfac": ("SYSLOG nowhere", 1),
        **{f"lvl_{level}": (f"SYSLOG local1 {level}", 1) for level in LEVELS},
        "longargs": (f"FILE {path('long.log')}", 1),
        "longid": (f"FILE {path('long.log')}", 1),
        "edgeid": (f"FILE {path('long.log')}", 1),
        "longsys": ("SYSLOG local2", 1),
    }
    ports = {name: unique_port() for name in logs}
    text = f"defaults\n{{\n\tlog_type = FILE {path('common.log')}\n}}\n"
    for name, (log, _) in logs.items():
        text += service(name, ports[name], log,
                        args=LONG_ARGS if name == "longargs" else "hi",
                        sid={"longid": LONG_ID, "edgeid": EDGE_ID,
                             "longsys": SYSLOG_ID}.get(name))
    with open(run.conf, "w") as f:
        f.write(text)

    answers = {}
    with running(run.daemon, run.conf, run.program_log) as proc:
        for name, (_, times) in logs.items():
            answers[name] = [len(ask(ports[name])) for _ in range(times)]
            drain()
        os.unlink(path("rm.log"))
        os.rename(path("ren.log"), path("ren.log.1"))
        after = {name: len(ask(ports[name])) for name in ("rm", "ren", "lim")}
        # Their EXIT lines, before the reload reopens the logs: a daemon writes an EXIT
        # line as it reaps the server, so once it has no child left they are written.
        wait_settled(proc.pid, time.monotonic() + 10)
        proc.send_signal(signal.SIGHUP)
        wait_for(run.program_log, "Reconfigured", time.monotonic() + 10)
        reloaded = {name: len(ask(ports[name])) for name in ("rm", "ren", "lim", "full")}
        wait_settled(proc.pid, time.monotonic() + 10)     # the last EXIT lines
        drain()
    drain()
    fifo_lines = []
    if select.select([fifo_reader], [], [], 0)[0]:
        data = os.read(fifo_reader, 1 << 20).decode(errors="replace")
        fifo_lines = [normalise(re.sub(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d: ", "", line))
                      for line in data.splitlines()]
    files = {name: entries(path(name)) for name in sorted(os.listdir(work))
             if name.endswith((".log", ".1")) and os.path.isfile(path(name))
             and name not in ("program.log", "services.log")}
    syslog = []
    for msg in messages:
        m = re.match(r"<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d (.*)", msg, re.S)
        syslog.append(normalise(f"<{m.group(1)}>{m.group(2)}" if m else msg))
    print(json.dumps({
        "files": files, "fifo": fifo_lines, "syslog": syslog,
        "program": program_lines(run.program_log),
        "answers": answers, "after_remove": after, "after_reload": reloaded,
        "sizes": {name: os.path.getsize(path(name)) for name in files},
        "exists": {name: os.path.exists(path(name)) for name in
                   ("rm.log", "ren.log", "dtarget.log", "gt.log", "zero.log")},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
