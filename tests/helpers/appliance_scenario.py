"""A minimal appliance's system, against one daemon: a read-only root without
/etc/protocols nor /etc/services.

    unshare -n -m --propagation private python3 appliance_scenario.py WORKDIR DAEMON [ARG...]

In its private namespaces it brings `lo` up, keeps its work folder writable (a bind
mount of its own), lays private layers over /dev and /etc, removes /etc/protocols and
/etc/services from its /etc, and makes /etc and / read-only. It then starts the daemon
on services that name no protocol (stream, and an internal dgram one), one that names
`tcp`, and a listed one without a port, asks each and prints one JSON object: which
answered, and the program log's lines (stamps and pids dropped). Standard library only;
every wait bounded.
"""

import json
import os
import re
import socket
import subprocess

from scenario_support import begin, free_port, private_dev_and_etc, read, running


def service(name, port, *lines):
    body = "".join(f"\t{line}\n" for line in lines)
    if "type = INTERNAL UNLISTED" not in lines:
        body = "\ttype = UNLISTED\n" + body
    return f"service {name}\n{{\n\tport = {port}\n\tuser = root\n{body}}}\n"


def ask_stream(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.settimeout(5)
            return conn.recv(100).decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__


def ask_dgram(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping", ("127.0.0.1", port))
        try:
            return sock.recv(100).decode(errors="replace")
        except OSError as exc:
            return type(exc).__name__


def main():
    run = begin()
    work = os.path.dirname(run.conf)
    subprocess.run(["mount", "--bind", work, work], check=True)
    private_dev_and_etc()
    for name in ("protocols", "services"):
        if os.path.lexists(f"/etc/{name}"):
            os.unlink(f"/etc/{name}")
    subprocess.run(["mount", "-o", "remount,ro,bind", "/etc"], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", "/"], check=True)

    ports = {name: free_port() for name in ("implied", "named", "echo")}
    text = (service("implied", ports["implied"], "socket_type = stream",
                    "wait = no", "server = /bin/echo", "server_args = implied")
            + service("named", ports["named"], "protocol = tcp",
                      "wait = no", "server = /bin/echo", "server_args = named")
            + service("echo", ports["echo"], "type = INTERNAL UNLISTED",
                      "socket_type = dgram", "wait = yes")
            + "service telnet\n{\n\tsocket_type = stream\n\twait = no\n\tuser = root\n"
              "\tserver = /bin/echo\n}\n")
    with open(run.conf, "w") as f:
        f.write(text)
    with running(run.daemon, run.conf, run.program_log):
        answers = {"implied": ask_stream(ports["implied"]),
                   "named": ask_stream(ports["named"]),
                   "echo": ask_dgram(ports["echo"])}
    lines = [re.sub(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d xinetd\[\d+\]: ", "", line)
             for line in read(run.program_log).splitlines()]
    print(json.dumps({"answers": answers, "log": lines,
                      "protocols_gone": not os.path.exists("/etc/protocols")}))


if __name__ == "__main__":
    main()
