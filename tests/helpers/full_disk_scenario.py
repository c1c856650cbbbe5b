"""The log files' file system full while the daemon serves, against one daemon.

    unshare -n -m --propagation private python3 full_disk_scenario.py WORKDIR DAEMON [ARG...]

In its private namespaces it brings `lo` up and mounts a 16 KiB tmpfs on WORKDIR/full,
which holds the program log (`-filelog`) and one service's `log_type = FILE` log (the
service: /bin/echo, `log_on_success = HOST PID EXIT`). Once the daemon is serving it
fills that file system (a filler file, then the logs' last pages with empty lines),
asks CLIENTS clients, removes the filler and asks one more; then, with the
disk full again, asks one client, renames the service log and reloads (SIGHUP), frees
the disk and asks a last one. Prints one JSON object: every client's answer, the lines
of the renamed service log, of the new one and of the program log (stamps dropped,
pids made N, empty lines left out). Standard library
only; every wait bounded.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from contextlib import contextmanager

from scenario_support import begin, free_port, read, running, wait_count, write_file

CLIENTS = 20
PEER = "127.0.0.1"


def ask(port):
    """The server's answer (b"" when none came) and whether it came within 5 s."""
    got = b""
    try:
        with socket.create_connection((PEER, port), timeout=5) as conn:
            conn.settimeout(5)
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                got += data
    except OSError as err:
        return type(err).__name__
    return got.decode(errors="replace")


def fill(path, data):
    """Append `data` to `path` until the file system refuses it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def fill_disk(folder, *logs):
    """Fill the file system: a filler file, then the last page of each log (with empty
    lines, which `lines()` leaves out)."""
    fill(os.path.join(folder, "filler"), b"x" * 512)
    for log in logs:
        fill(log, b"\n")


def reopened(pid, path, deadline):
    """Wait until the daemon holds `path` open (the reload has opened it again)."""
    folder = f"/proc/{pid}/fd"
    while time.monotonic() < deadline:
        for fd in os.listdir(folder):
            try:
                if os.readlink(os.path.join(folder, fd)) == path:
                    return
            except OSError:
                pass
        time.sleep(0.02)
    raise SystemExit(f"the daemon did not open {path} again")


def echo_service(name, port, log, logging):
    """Service `name`: /bin/echo hi on PEER:`port`, logging to FILE `log` what the
    `logging` lines ask."""
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = /bin/echo\n\tserver_args = hi\n\tbind = {PEER}\n"
            f"\tport = {port}\n\tcps = 0 0\n\tlog_type = FILE {log}\n{logging}}}\n")


@contextmanager
def full_folder(run):
    """WORKDIR/full, a 16 KiB tmpfs mounted for the block (lazily unmounted after)."""
    folder = os.path.join(os.path.dirname(run.conf), "full")
    os.makedirs(folder)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", folder], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", folder], check=False)


def lines(path):
    text = re.sub(r"pid=\d+", "pid=N", read(path))
    text = re.sub(r"xinetd\[\d+\]", "xinetd[N]", text)
    return [line.split(" ", 1)[1] if "@" in line.split(" ", 1)[0] else line
            for line in text.split("\n") if line]


def main():
    run = begin()
    with full_folder(run) as folder:
        service_log = os.path.join(folder, "services.log")
        program_log = os.path.join(folder, "program.log")
        port = free_port()
        write_file(run.conf, echo_service("full", port, service_log,
                                          "\tlog_on_success = HOST PID EXIT\n"
                                          "\tlog_on_failure = HOST\n"))
        answers = {}
        with running(run.daemon, run.conf, program_log) as proc:
            fill_disk(folder, program_log)
            answers["full"] = [ask(port) for _ in range(CLIENTS)]
            os.unlink(os.path.join(folder, "filler"))
            answers["freed"] = ask(port)
            wait_count(service_log, "EXIT", CLIENTS + 1, time.monotonic() + 10)
            fill_disk(folder, program_log, service_log)
            answers["before_reload"] = ask(port)
            # Rotated (logrotate's `create`) and reloaded while the disk is full.
            os.rename(service_log, service_log + ".1")
            proc.send_signal(signal.SIGHUP)
            reopened(proc.pid, service_log, time.monotonic() + 10)
            os.unlink(os.path.join(folder, "filler"))
            answers["after_reload"] = ask(port)
            # The client's before the reload too: its entries waited, and the new
            # file at the path gets them first.
            wait_count(service_log, "EXIT", 2, time.monotonic() + 10)
        print(json.dumps({"answers": answers, "rotated": lines(service_log + ".1"),
                          "service_log": lines(service_log),
                          "program_log": lines(program_log)}))


if __name__ == "__main__":
    main()
