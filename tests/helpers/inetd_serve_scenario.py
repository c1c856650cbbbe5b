"""What a daemon run with -inetd_compat serves from /etc/inetd.conf, in private network
and mount namespaces.

    unshare -n -m --propagation private python3 inetd_serve_scenario.py WORKDIR DAEMON [ARG...]

Overlays /etc with a private writable layer, then writes there: an /etc/services that
maps every name of the entries to a free port, an account `inetdprobe` with two
supplementary groups, and an /etc/inetd.conf adapted from the corpus's (the internal
services on tcp/tcp6 and udp/udp6, external `nowait` servers run as `nobody`, as
`user.group` and as `user:group`, `wait` stream and dgram servers, a `nowait.N` rate, a
tcp6-only line, a server whose argv[0] differs from its path, one without an argv
field, and lines the daemon rejects between good ones) and a hosts.deny naming
builtins and external servers. Starts the daemon with a small known environment and
a defaults block logging to a file (with INETD_SERVE_DEFAULTS=more in the
environment, MORE_DEFAULTS too), asks every service, and prints one JSON object:
"clients" (what each client saw), "reports" (what the report servers said of their
uid, gid, groups, argv, environment, umask, nice and rlimits), "log" (the service log,
normalised and sorted) and "program" (the daemon's deactivation lines).
Standard library only; every wait bounded.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from scenario_support import (
    begin, free_port, private_dev_and_etc, read, second_to_spare, seen, wait_count,
    wait_for, wait_settled, write_file)

HELPERS = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HELPERS, "report_server.py")
WAIT_STREAM = os.path.join(HELPERS, "wait_stream_server.py")
WAIT_DGRAM = os.path.join(HELPERS, "udp_wait_server.py")
# Found without PATH or PYTHONHOME, whatever argv[0] it is given.
PYTHON = "/usr/bin/python3"
PROBE_UID = 4242
# With INETD_SERVE_DEFAULTS=more in the environment, the defaults also hold these:
# those xinetd applies to inetd.conf entries (it applies its defaults after reading
# every file), and those it does not.
MORE_DEFAULTS = ("\tlog_on_success += USERID DURATION\n\tlog_on_failure += ATTEMPT\n"
                 "\tumask = 027\n\tpassenv = PROBE_MARK PATH\n\tbind = 127.0.0.1\n"
                 "\tinstances = 1\n\tenv = ADDED=1\n\tgroups = no\n\tnice = 5\n"
                 "\trlimit_files = 77\n")
RATE = 2            # nowait.RATE: more than RATE connections in a second pause it

INTERNALS = ("echo", "discard", "daytime", "time", "chargen")
NAMES = (*INTERNALS, "rep-nobody", "rep-dot", "rep-colon", "rep-argv0", "id-plain",
         "wait-stream", "wait-dgram", "rated", "six-only", "bad-user",
         "bad-numeric", "bad-server", "bad-group", "after-bad")


def inetd_conf() -> str:
    lines = []
    for name in INTERNALS:
        lines += [f"{name}\tstream\ttcp\tnowait\troot\tinternal",
                  f"{name}\tstream\ttcp6\tnowait\troot\tinternal",
                  f"{name}\tdgram\tudp\twait\troot\tinternal",
                  f"{name}\tdgram\tudp6\twait\troot\tinternal"]
    report = f"{PYTHON}\tpython3 {REPORT}"
    lines += [
        f"rep-nobody\tstream\ttcp\tnowait\tnobody\t{report}",
        f"bad-user\tstream\ttcp\tnowait\tno-such-user\t/bin/echo\techo bad-user",
        f"rep-dot\tstream\ttcp\tnowait\tinetdprobe.probeone\t{report}",
        f"bad-numeric\tstream\ttcp\tnowait\t0\t/bin/echo\techo bad-numeric",
        f"rep-colon\tstream\ttcp\tnowait\tinetdprobe:probeone\t{report}",
        f"bad-server\tstream\ttcp\tnowait\tnobody\t/nonexistent/in.server\tin.server",
        f"rep-argv0\tstream\ttcp\tnowait\tinetdprobe\t{PYTHON}\treporter -S {REPORT}",
        f"bad-group\tstream\ttcp\tnowait\tnobody.no-such-group\t/bin/echo\techo bad-group",
        "id-plain\tstream\ttcp\tnowait\tinetdprobe.probetwo\t/usr/bin/id",
        f"wait-stream\tstream\ttcp\twait\tnobody\t{PYTHON}\twaitd {WAIT_STREAM}",
        f"wait-dgram\tdgram\tudp\twait\tnobody.nogroup\t{PYTHON}\tudpd {WAIT_DGRAM}",
        f"rated\tstream\ttcp\tnowait.{RATE}\tnobody\t/bin/echo\techo rated",
        "six-only\tstream\ttcp6\tnowait\tnobody\t/bin/echo\techo six",
        "after-bad\tstream\ttcp\tnowait\tnobody\t/bin/echo\techo after",
    ]
    return "".join(line + "\n" for line in lines)


def private_etc(ports: dict[str, int]) -> None:
    """The scenario's /etc/services, account and inetd.conf (on the private layer)."""
    write_file("/etc/services", "".join(f"{name}\t{port}/tcp\n{name}\t{port}/udp\n"
                                        for name, port in ports.items()))
    with open("/etc/passwd", "a") as f:
        f.write(f"inetdprobe:x:{PROBE_UID}:{PROBE_UID}::/nonexistent:/usr/sbin/nologin\n")
    with open("/etc/group", "a") as f:
        f.write(f"inetdprobe:x:{PROBE_UID}:\nprobeone:x:{PROBE_UID + 1}:inetdprobe\n"
                f"probetwo:x:{PROBE_UID + 2}:inetdprobe,nobody\n")
    write_file("/etc/inetd.conf", inetd_conf())
    # libwrap: builtins are checked under their service name (not their id), external
    # servers not at all (NOLIBWRAP), whatever their argv[0].
    write_file("/etc/hosts.allow", "")
    write_file("/etc/hosts.deny", "daytime: ALL\ntime-stream time-dgram: ALL\n"
                                  "python3 reporter waitd udpd id: ALL\n")


def connect(port: int, host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    conn = socket.socket(family, socket.SOCK_STREAM)
    conn.settimeout(5)
    conn.connect((host, port))
    return conn


def shape(text: str) -> str:
    """Time-dependent bytes by their shape; pids as N."""
    text = re.sub(r"\d\d [A-Z]{3} \d{4} \d\d:\d\d:\d\d \S+\\r\\n", "<daytime>", text)
    return re.sub(r"pid=\d+", "pid=N", text)


def stream(port: int, host: str, data: bytes = b"", *, limit: int = 0,
           opaque: bool = False) -> str:
    """What one stream client saw; `limit`: read that much only (chargen), then close;
    `opaque`: the reply by its length (time)."""
    try:
        conn = connect(port, host)
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    with conn:
        if limit:
            got = b""
            while len(got) < limit:
                chunk = conn.recv(limit - len(got))
                if not chunk:
                    break
                got += chunk
            return repr(got)
        try:
            if data:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass    # refused at once: what was sent first is still there to read
        result = seen(conn, wait=3.0)
    if opaque:
        got, _, end = result.rpartition(" ")
        return f"<{len(eval(got))} bytes> {end}"  # noqa: S307 (our own repr)
    return shape(result)


def datagram(port: int, host: str, data: bytes, opaque: bool = False) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0 if data != b"discard\n" else 0.3)
        sock.sendto(data, (host, port))
        try:
            reply = sock.recv(70000)
        except socket.timeout:
            return "no reply"
        except OSError as exc:
            return type(exc).__name__
    if opaque:
        return f"<{len(reply)} bytes>"
    return shape(repr(reply))


def report(port: int) -> dict[str, object]:
    try:
        with connect(port, "127.0.0.1") as conn:
            conn.settimeout(10)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except OSError as exc:
        return {"error": type(exc).__name__}
    try:
        full = json.loads(data)
    except ValueError:
        return {"unreadable": repr(data)}
    return {key: full[key] for key in ("uid", "gid", "groups", "argv", "environ", "umask", "nice", "rlimits")}


def clients(ports: dict[str, int], daemon: int) -> dict[str, str]:
    seen_by: dict[str, str] = {}
    for host in ("127.0.0.1", "::1"):
        p = ports
        seen_by[f"echo/stream/{host}"] = stream(p["echo"], host, b"hello\n")
        seen_by[f"discard/stream/{host}"] = stream(p["discard"], host, b"dropped\n")
        seen_by[f"daytime/stream/{host}"] = stream(p["daytime"], host)
        seen_by[f"time/stream/{host}"] = stream(p["time"], host, opaque=True)
        seen_by[f"chargen/stream/{host}"] = stream(p["chargen"], host, limit=148)
        for name in INTERNALS:
            if name == "daytime":
                # Refused by hosts.deny: a refused datagram stops xinetd's datagram
                # service for good (docs/compatibility.md), which spoils the other
                # services' comparison.
                continue
            # xinetd drops what is queued on a datagram builtin's socket once it has
            # answered (docs/compatibility.md): one request at a time.
            seen_by[f"{name}/dgram/{host}"] = datagram(p[name], host, f"{name}\n".encode(),
                                                       opaque=name == "time")
        seen_by[f"six-only/{host}"] = stream(p["six-only"], host)
    for name in ("bad-user", "bad-numeric", "bad-server", "bad-group", "after-bad",
                 "id-plain"):
        seen_by[name] = stream(ports[name], "127.0.0.1")
    seen_by["wait-stream"] = stream(ports["wait-stream"], "127.0.0.1", b"line\n")
    wait_settled(daemon, time.monotonic() + 10)
    seen_by["wait-dgram"] = datagram(ports["wait-dgram"], "127.0.0.1", b"gram")
    wait_settled(daemon, time.monotonic() + 10)
    # The rate: RATE + 2 connections within one second of both daemons' clocks.
    second_to_spare(0.5)
    conns = []
    for _ in range(RATE + 2):
        try:
            conns.append(connect(ports["rated"], "127.0.0.1"))
        except OSError as exc:
            conns.append(type(exc).__name__)
    for n, conn in enumerate(conns):
        if isinstance(conn, str):
            seen_by[f"rated/{n}"] = f"connect {conn}"
        else:
            with conn:
                seen_by[f"rated/{n}"] = seen(conn, wait=3.0)
    return seen_by


def log_lines(path: str) -> list[str]:
    lines = []
    for line in read(path).splitlines():
        if ": " in line:
            text = line.split(": ", 1)[1]
            text = re.sub(r"pid=\d+", "pid=N", text)
            text = re.sub(r"duration=\d+", "duration=N", text)
            lines.append(text)
    return sorted(lines)


def readable_servers() -> None:
    """Copies of the helper servers on the scenario's private tmpfs (after
    private_dev_and_etc), at the same path in both daemons' runs: a server run as nobody
    cannot read the checkout's when the checkout lies under /root (mode 0700)."""
    global REPORT, WAIT_STREAM, WAIT_DGRAM
    folder = "/run/scenario-priv/servers"
    os.makedirs(folder, mode=0o755)
    copies = []
    for path in (REPORT, WAIT_STREAM, WAIT_DGRAM):
        copy = shutil.copyfile(path, os.path.join(folder, os.path.basename(path)))
        os.chmod(copy, 0o644)
        copies.append(copy)
    REPORT, WAIT_STREAM, WAIT_DGRAM = copies


def main() -> int:
    run = begin()
    private_dev_and_etc()
    readable_servers()
    ports = {name: free_port() for name in NAMES}
    private_etc(ports)
    defaults = (f"\tlog_type = FILE {run.service_log}\n"
                "\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n")
    if os.environ.get("INETD_SERVE_DEFAULTS") == "more":
        defaults += MORE_DEFAULTS
    write_file(run.conf, f"defaults\n{{\n{defaults}}}\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "PROBE_MARK": "kept"}
    proc = subprocess.Popen([*run.daemon, "-f", run.conf, "-dontfork", "-inetd_compat",
                             "-filelog", run.program_log], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        if not wait_for(run.program_log, "Started working", time.monotonic() + 30):
            raise SystemExit(f"the daemon did not start: {read(run.program_log)[-2000:]!r}")
        seen_by = clients(ports, proc.pid)
        reports = {name: report(ports[name])
                   for name in ("rep-nobody", "rep-dot", "rep-colon", "rep-argv0")}
        wait_settled(proc.pid, time.monotonic() + 10)
        wait_count(run.service_log, "EXIT: rep-argv0", 1, time.monotonic() + 10)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    program = [line.split(": ", 1)[-1] for line in read(run.program_log).splitlines()
               if "ctivating service" in line]
    print(json.dumps({"clients": seen_by, "reports": reports,
                      "log": log_lines(run.service_log), "program": program}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
