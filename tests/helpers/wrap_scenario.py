"""hosts.allow/hosts.deny options against one daemon, in private network and mount
namespaces, reading the real /etc/hosts.allow and /etc/hosts.deny.

    unshare -n -m python3 wrap_scenario.py CASEFILE DAEMON [ARG...]

CASEFILE (JSON): {"allow": TEXT, "deny": TEXT, "services": TEXT, "requests": [...]}.
`services` is xinetd.conf text in which `{port:NAME}` is replaced by a free port and
`{dir}` by the run folder. A request is {"proto": "tcp"|"udp", "port": NAME,
"send": TEXT, "source": ADDRESS} ("source": the TCP client's own address, optional).
The run folder is a tmpfs on /mnt (mode 0755, so servers running as `nobody` can read
it); /etc and /dev get writable overlays whose upper layers live in a
private tmpfs, so the tables are written at their real paths and a syslog socket can
be bound at /dev/log: nothing outside the namespace is written. The run folder holds
`probe` (a server printing its uid, gid, umask, nice value and environment),
`in.probe` (the same under a daemon-style name; both write to the file $PROBE_OUT
instead when it is set), `banners/` (the case's "banners" files) and the case's
"files" (paths relative to the run folder).

Prints one JSON object: what each client received (text, `\\r` kept), the program
log, the service log (`{dir}/services.log`), the syslog messages (libwrap's own lines)
and `{dir}/out*` files the rules wrote. Standard library only; every wait bounded.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from scenario_support import read

RUN = "/mnt"
PEER = "127.0.0.1"

PROBE = """#!/bin/sh
# A datagram server cannot answer on its unconnected socket: it writes a file.
[ -n "$PROBE_OUT" ] && exec >"$PROBE_OUT"
echo "uid=$(id -u) gid=$(id -g) umask=$(umask) nice=$(nice) args=$*"
env | LC_ALL=C sort
"""


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True)


def overlay(folder: str, n: int) -> None:
    upper, work = f"/run/wrap-priv/{n}/u", f"/run/wrap-priv/{n}/w"
    os.makedirs(upper)
    os.makedirs(work)
    sh("mount", "-t", "overlay", "overlay", "-o",
       f"lowerdir={folder},upperdir={upper},workdir={work}", folder)


def setup() -> None:
    sh("ip", "link", "set", "lo", "up")
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", RUN)
    os.makedirs("/run/wrap-priv", exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", "/run/wrap-priv")
    overlay("/etc", 1)
    overlay("/dev", 2)


_GIVEN_PORTS: set[int] = set()


def free_port(kind: int) -> int:
    """Not one handed out before: two bind(0) calls in a row may get the same port."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((PEER, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise RuntimeError("no free port")


def ask(req: dict[str, str], port: int) -> str:
    data = req.get("send", "").encode()
    chunks: list[bytes] = []
    deadline = time.monotonic() + 5
    try:
        if req.get("proto", "tcp") == "tcp":
            # "source": the client's own address (127.0.0.x), for rules about it.
            source = (req["source"], 0) if "source" in req else None
            with socket.create_connection((PEER, port), timeout=5,
                                          source_address=source) as conn:
                if data:
                    conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                while time.monotonic() < deadline:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as conn:
                conn.settimeout(1.5)
                conn.sendto(data or b"x\n", (PEER, port))
                while time.monotonic() < deadline:
                    chunks.append(conn.recv(65536))
    except socket.timeout:
        chunks.append(b"<timeout>")
    except OSError as exc:
        chunks.append(f"<{exc.__class__.__name__}>".encode())
    return b"".join(chunks).decode(errors="replace")


def _snapshot(program_log: str) -> tuple[object, ...]:
    files = []
    for folder in (RUN, os.path.join(RUN, "w")):
        for name in sorted(os.listdir(folder)):
            if name.startswith("out"):
                try:
                    files.append((name, os.path.getsize(os.path.join(folder, name))))
                except OSError:
                    pass
    return (tuple(files), len(read(program_log)))


def settle(program_log: str, quiet: float = 1.0, limit: float = 15.0) -> None:
    """Wait until the commands the rules spawned have stopped writing (their out*
    files and the program log unchanged for `quiet` seconds), at most `limit` seconds:
    a slow machine gets the time it needs, a fast one does not wait long."""
    deadline = time.monotonic() + limit
    last, since = _snapshot(program_log), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = _snapshot(program_log)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def main() -> int:
    case = json.loads(read(sys.argv[1]))
    daemon = sys.argv[2:]
    setup()
    with open("/etc/hosts.allow", "w") as f:
        f.write(case.get("allow", ""))
    with open("/etc/hosts.deny", "w") as f:
        f.write(case.get("deny", ""))
    for name, text in case.get("etc", {}).items():     # /etc/netgroup and the like
        with open(os.path.join("/etc", name), "w") as f:
            f.write(text)
    for name in ("probe", "in.probe"):
        with open(os.path.join(RUN, name), "w") as f:
            f.write(PROBE)
        os.chmod(os.path.join(RUN, name), 0o755)
    os.makedirs(os.path.join(RUN, "banners"))
    # Where commands running as another user (`nobody`) may write their out* files.
    os.makedirs(os.path.join(RUN, "w"))
    os.chmod(os.path.join(RUN, "w"), 0o1777)
    for name, text in case.get("banners", {}).items():
        with open(os.path.join(RUN, "banners", name), "w") as f:
            f.write(text)
    for name, text in case.get("files", {}).items():     # more banner folders
        os.makedirs(os.path.dirname(os.path.join(RUN, name)), exist_ok=True)
        with open(os.path.join(RUN, name), "w") as f:
            f.write(text)
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if os.path.lexists("/dev/log"):
        os.unlink("/dev/log")
    syslog.bind("/dev/log")
    # Read as the messages come: a datagram socket queues only a few (the namespace's
    # net.unix.max_dgram_qlen, 10 by default), and a sender whose message does not fit
    # blocks (xinetd's children, in libwrap's syslog(), would hang the run).
    messages: list[str] = []
    reading = threading.Event()

    def read_syslog() -> None:
        syslog.settimeout(0.1)
        while not reading.is_set():
            try:
                messages.append(syslog.recv(65536).decode(errors="replace"))
            except socket.timeout:
                pass
    reader = threading.Thread(target=read_syslog, daemon=True)
    reader.start()
    ports: dict[str, int] = {}

    def port_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ports:
            ports[name] = free_port(socket.SOCK_DGRAM if name.startswith("u")
                                    else socket.SOCK_STREAM)
        return str(ports[name])

    conf = re.sub(r"\{port:([\w-]+)\}", port_of, case["services"]).replace("{dir}", RUN)
    conf_path, program_log = os.path.join(RUN, "xinetd.conf"), os.path.join(RUN, "program.log")
    with open(conf_path, "w") as f:
        f.write(conf)
    proc = subprocess.Popen([*daemon, "-f", conf_path, "-dontfork", "-filelog", program_log],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin",
                                                            "PYTHONPATH": os.environ.get(
                                                                "PYTHONPATH", ""),
                                                            "OUTER": "yes"})
    answers = []
    try:
        deadline = time.monotonic() + 20
        while "Started working" not in read(program_log) and time.monotonic() < deadline:
            time.sleep(0.02)
        for req in case["requests"]:
            answers.append(ask(req, ports[req["port"]]))
            time.sleep(float(req.get("pause", 0.3)))
        settle(program_log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reading.set()
    reader.join(5)
    syslog.setblocking(False)
    while True:
        try:
            messages.append(syslog.recv(65536).decode(errors="replace"))
        except BlockingIOError:
            break
    outs = {name: read(os.path.join(folder, name))
            for folder in (RUN, os.path.join(RUN, "w")) for name in sorted(os.listdir(folder))
            if name.startswith("out")}
    print(json.dumps({"answers": answers, "program": read(program_log),
                      "services": read(os.path.join(RUN, "services.log")),
                      "syslog": messages, "outs": outs, "ports": ports}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
