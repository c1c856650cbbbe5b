"""Servers that misbehave, under one daemon, in private network and mount namespaces.

    unshare -n -m --propagation private python3 misbehaving_scenario.py WORKDIR DAEMON [ARG...]

One service per case (misbehaving_models_server.py in some MODE, or a server that
cannot be executed), stream nowait, stream wait = yes or dgram wait = yes, all logging
to one FILE log with `PID HOST EXIT DURATION` / `HOST ATTEMPT`. Each case is driven by
its client, then (where the case allows) by a second client, to see whether the
daemon still serves the service. A SIGUSR1 dump is taken while one server runs for
minutes (`instances = 1`, a second client refused). Prints one JSON object: what every
client got, each service's log lines, the program log and the dump's counters, with
stamps, pids, ports and durations made N. Standard library only; every wait bounded.
"""

import concurrent.futures
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

from procs import kill_if_running
from scenario_support import begin, free_port, read, running, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "misbehaving_models_server.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
MODELS = {"sn": ("stream", "no"), "sw": ("stream", "yes"), "dw": ("dgram", "yes")}
DEATHS = ("exit0", "exit3", "segv", "kill", "term")
CROWD = 20


class Case:
    def __init__(self, sid, mode, client, extra=(), server=None, again=True):
        self.sid, self.mode, self.client = sid, mode, client
        self.kind, self.wait = MODELS[sid.split("-")[0]]
        self.extra, self.server, self.again = extra, server, again
        self.port = None


def cases(workdir):
    # Executable when the daemon reads the configuration (else both refuse the service
    # then), broken afterwards by break_servers().
    bad = {"enoent": os.path.join(workdir, "missing"),
           "eacces": os.path.join(workdir, "notexec"),
           "badinterp": os.path.join(workdir, "badinterp"),
           "enoexec": os.path.join(workdir, "garbage")}
    for name in ("enoent", "eacces", "badinterp"):
        with open(bad[name], "w") as f:
            f.write("#!/nonexistent/interpreter\necho hi\n" if name == "badinterp"
                    else "#!/bin/sh\necho hi\n")
    with open(bad["enoexec"], "wb") as f:
        f.write(b"\x7fNOT-ELF\x00\x01\x02garbage\n")
    for path in bad.values():
        os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP)
    every = []
    for model in MODELS:
        client = "dgram" if model == "dw" else "stream"
        every += [Case(f"{model}-{mode}", mode, client) for mode in DEATHS]
    every += [
        Case("dw-noread", "noread", "dgram"),
        Case("dw-partial", "partial", "burst"),
        Case("sw-noaccept", "noaccept", "loop", extra=("cps = 3 30",), again=False),
        Case("sw-hold", "hold", "hold2", again=False),
        Case("sw-daemon", "daemon", "stream"),
        Case("sn-daemon", "daemon", "stream"),
        Case("sn-closeout", "closeout", "closeout", again=False),
        Case("sw-closeout", "closeout", "hold2", again=False),
        Case("dw-daemon", "daemon", "dgram-late"),
        Case("sn-stderr", "stderr", "stream"),
        Case("sn-long", "long", "long2", extra=("instances = 1",), again=False),
        Case("sn-crowd", "exit0", "crowd", again=False),
        # Servers that exit before a Python one would have started: /bin/true.
        Case("sn-true", None, "stream", server="/bin/true"),
        Case("dw-true", None, "dgram", server="/bin/true"),
        Case("sw-true", None, "loop", server="/bin/true", extra=("cps = 3 30",),
             again=False),
        Case("dw-false", None, "dgram", server="/bin/false"),
    ]
    for name, path in bad.items():
        every.append(Case(f"sn-{name}", None, "stream", server=path))
    every.append(Case("dw-enoent", None, "dgram", server=bad["enoent"]))
    return every


def configuration(every, log, piddir):
    text = ["defaults\n{\n\tlog_type = FILE " + log + "\n"
            "\tlog_on_success = PID HOST EXIT DURATION\n"
            "\tlog_on_failure = HOST ATTEMPT\n}\n"]
    for case in every:
        case.port = free_port()
        server = case.server or PYTHON
        args = f"{SERVER} {case.mode} {piddir}" if case.mode else "x"
        lines = ["type = UNLISTED", f"socket_type = {case.kind}", f"wait = {case.wait}",
                 "protocol = " + ("udp" if case.kind == "dgram" else "tcp"),
                 "user = root", f"server = {server}", f"server_args = {args}",
                 f"port = {case.port}", "bind = 127.0.0.1", *case.extra]
        text.append(f"service {case.sid}\n{{\n" + "".join(f"\t{x}\n" for x in lines) + "}\n")
    return "".join(text)


def stream_client(port, timeout=3.0, first=None):
    """What a connection gets: its bytes and how it ended (eof, reset, timeout)."""
    try:
        s = first or socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return {"data": "", "end": "refused"}
    s.settimeout(timeout)
    chunks, end = [], "eof"
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        end = "timeout"
    except ConnectionResetError:
        end = "reset"
    finally:
        s.close()
    return {"data": b"".join(chunks).decode("latin-1"), "end": end}


def dgram_client(port, payloads, settle, quiet=0.1):
    """The replies to `payloads` sent at once: those there once the service's lines
    settled (its servers answer before they exit), and any within `quiet` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for data in payloads:
            s.sendto(data.encode(), ("127.0.0.1", port))
        settle()
        s.settimeout(quiet)
        replies = []
        try:
            while True:
                replies.append(s.recv(65536).decode("latin-1"))
        except socket.timeout:
            pass
        except ConnectionRefusedError:
            replies.append("<refused>")
    return {"replies": replies}


def entries(path, sid):
    lines = []
    for line in read(path).splitlines():
        body = re.sub(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d: ", "", line)
        if re.match(rf"\w+: {re.escape(sid)}\b", body):
            lines.append(normalise(body))
    return lines


def normalise(text):
    text = re.sub(r"pid=\d+", "pid=N", text)
    text = re.sub(r"duration=\d+", "duration=N", text)
    text = re.sub(r"xinetd\[\d+\]", "xinetd[N]", text)
    text = re.sub(r"\b\d{2,7}\b(?= \{)", "PID", text)
    text = re.sub(r"(child process|process) \d+", r"\1 N", text)
    return text


def settled(path, sid, deadline, before=0):
    """Wait until the service has logged more than `before` lines and every START has
    its EXIT."""
    while time.monotonic() < deadline:
        lines = entries(path, sid)
        starts = sum(1 for x in lines if x.startswith("START"))
        exits = sum(1 for x in lines if x.startswith("EXIT"))
        if len(lines) > before and starts == exits:
            return
        time.sleep(0.02)


def listening(port):
    """Whether a TCP socket of this network namespace listens on `port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in read(table).splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def dump_counters(run, daemon_pid, sid):
    """The dump's counters and the service's state line, then a consistency check."""
    dump = os.path.join("/run", "xinetd.dump")
    if os.path.exists(dump):
        os.unlink(dump)
    os.kill(daemon_pid, signal.SIGUSR1)
    wait_for(dump, r"END OF DUMP", time.monotonic() + 5)
    text = read(dump)
    counters = [line.strip() for line in text.splitlines()
                if re.search(r"running_servers|active_services|available_services", line)]
    state = re.search(rf"Service = {re.escape(sid)}\n\s*State = (\w+)", text)
    before = read(run.program_log).count("Consistency check")
    os.kill(daemon_pid, signal.SIGABRT)
    deadline = time.monotonic() + 5
    while read(run.program_log).count("Consistency check") == before \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"counters": counters, "state": state.group(1) if state else None}


def drive(case, run, daemon_pid, workdir):
    port = case.port
    before = len(entries(run.service_log, case.sid))

    def settle():
        settled(run.service_log, case.sid, time.monotonic() + 3, before)
    if case.client == "stream":
        return stream_client(port)
    if case.client == "dgram":
        return dgram_client(port, ["c1"], settle)
    if case.client == "dgram-late":
        return dgram_client(port, ["c1"], settle, quiet=0.6)
    if case.client == "burst":
        return dgram_client(port, [f"b{n}" for n in range(1, 6)], settle)
    if case.client == "crowd":
        with concurrent.futures.ThreadPoolExecutor(CROWD) as pool:
            got = list(pool.map(lambda _: stream_client(port), range(CROWD)))
        settle()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sum(
                x.startswith("EXIT") for x in entries(run.service_log, case.sid)) < CROWD:
            time.sleep(0.02)
        return {"answers": sorted(json.dumps(x) for x in got),
                "after": dump_counters(run, daemon_pid, case.sid)}
    if case.client == "loop":
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
        except ConnectionResetError:
            # On a loaded machine the loop can trip cps and close the listening socket
            # before this thread's connect() returns: the connection was queued, then
            # reset, as a held client's is once the socket is closed (below).
            s = None
        wait_for(run.service_log, rf"FAIL: {case.sid} ", time.monotonic() + 5)
        # The service is deactivated: what the held client gets depends on whether
        # its listening socket is closed yet.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and listening(port):
            time.sleep(0.02)
        if s is None:
            return {"data": "", "end": "reset"}
        return stream_client(port, 1.0, first=s)
    if case.client == "hold2":
        a = socket.create_connection(("127.0.0.1", port), timeout=3)
        a.settimeout(3)
        got_a = a.recv(100).decode()
        b = socket.create_connection(("127.0.0.1", port), timeout=3)
        during = dump_counters(run, daemon_pid, case.sid)
        return {"a_first": got_a, "during": during, "b": stream_client(port, first=b),
                "a": stream_client(port, first=a)}
    if case.client == "closeout":
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        got = stream_client(port, first=s)
        got["exit_logged_at_eof"] = any(x.startswith("EXIT") for x in
                                        entries(run.service_log, case.sid))
        return got
    if case.client == "long2":
        a = socket.create_connection(("127.0.0.1", port), timeout=3)
        a.settimeout(3)
        got_a = a.recv(100).decode()
        b = stream_client(port)
        during = dump_counters(run, daemon_pid, case.sid)
        a.close()
        kill_leftovers(os.path.join(workdir, "pids"))
        settled(run.service_log, case.sid, time.monotonic() + 3)
        c = socket.create_connection(("127.0.0.1", port), timeout=3)
        c.settimeout(3)
        got_c = c.recv(100).decode()
        c.close()
        kill_leftovers(os.path.join(workdir, "pids"))
        return {"a": got_a, "b": b, "during": during, "c": got_c}
    raise ValueError(case.client)


def break_servers(workdir):
    os.unlink(os.path.join(workdir, "missing"))
    os.chmod(os.path.join(workdir, "notexec"), 0o644)


def kill_leftovers(piddir):
    # Only those still running a server given `piddir`: a recorded pid may have gone
    # to another process since its server exited.
    for name in os.listdir(piddir):
        kill_if_running(int(name), piddir)
        os.unlink(os.path.join(piddir, name))


def main():
    run = begin()
    workdir = os.path.dirname(run.conf)
    # A private /run: the dump file (/var/run/xinetd.dump) of this daemon alone.
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    piddir = os.path.join(workdir, "pids")
    os.mkdir(piddir)
    every = cases(workdir)
    with open(run.conf, "w") as f:
        f.write(configuration(every, run.service_log, piddir))
    only = os.environ.get("SCENARIO_ONLY")
    result = {"clients": {}, "services": {}}
    try:
        with running(run.daemon, run.conf, run.program_log) as proc:
            break_servers(workdir)
            for case in every:
                if only and case.sid not in only.split(","):
                    continue
                began = time.monotonic()
                got = {"first": drive(case, run, proc.pid, workdir)}
                settled(run.service_log, case.sid, time.monotonic() + 3)
                if case.again:
                    got["second"] = drive(case, run, proc.pid, workdir)
                    settled(run.service_log, case.sid, time.monotonic() + 3)
                result["clients"][case.sid] = got
                print(f"{case.sid}: {time.monotonic() - began:.2f} s", file=sys.stderr)
                kill_leftovers(piddir)
    finally:
        kill_leftovers(piddir)
    for case in every:
        result["services"][case.sid] = entries(run.service_log, case.sid)
    result["program"] = [normalise(re.sub(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d ", "", line))
                         for line in read(run.program_log).splitlines()]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
