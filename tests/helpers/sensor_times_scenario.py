"""flags = SENSOR with deny_time, and access_times, at run time, against one daemon in
private network and mount namespaces.

    unshare -n -m python3 sensor_times_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, puts a tmpfs over /run (the SIGUSR1 dump goes to /var/run/xinetd.dump),
writes a configuration of sensors (stream on an IPv4 socket, stream on a dual-stack
socket, datagram; deny_time minutes, FOREVER, NEVER; outside their access_times, behind
only_from or instances = 0) and of services they protect (external, forked and in-loop
builtins, datagram builtin, dgram wait = yes, redirect, on IPv4 and dual-stack
sockets), plus services whose access_times window excludes the present minute (stream
and datagram, external and internal, wait = yes, redirect) or includes it, and windows
xinetd rejects (across midnight, `24:00`). Each client comes from its own 127.0.0.N address,
so every sensor hit adds its own entry. Then asks each in turn, dumps the state
(SIGUSR1), reloads (SIGHUP) and asks again.

Prints one JSON object: what every client saw, the lines logged (services and program,
one file, so the order is kept) without stamps and pids, and the dump. Standard library only; every wait bounded.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from scenario_support import (
    begin, free_port, read, running, seen, wait_for, wait_settled, write_file)

HERE = os.path.dirname(os.path.abspath(__file__))
DUMP = "/var/run/xinetd.dump"


def source(n: int) -> str:
    return f"127.0.0.{n}"


def ask(port: int, src: str, data: bytes = b"", wait: float = 0.3) -> str:
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    dest = "::1" if ":" in src else "127.0.0.1"
    try:
        conn = socket.socket(family, socket.SOCK_STREAM)
        conn.settimeout(5)
        conn.bind((src, 0))
        conn.connect((dest, port))
    except OSError as exc:
        conn.close()
        return f"connect {type(exc).__name__}"
    with conn:
        text = seen(conn, data, wait, reset_after_data_is_eof=True)
    # daytime's answer changes with the clock: keep only that it answered.
    return re.sub(r"b'\d{2} [A-Z]{3} \d{4} [^']*'", "b'DAYTIME'", text)


def datagram(port: int, src: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src, 0))
        sock.settimeout(0.25)
        sock.sendto(b"ping", ("127.0.0.1", port))
        try:
            reply = sock.recv(4096)
        except OSError as exc:
            return type(exc).__name__
        return re.sub(rb"pid=\d+", b"pid=N", reply).decode(errors="replace")


def service(name: str, port: int, extra: str = "", *, kind: str = "stream",
            wait: str = "no", server: str | None = "/bin/echo",
            args: str | None = "hi", type_: str = "UNLISTED", bind: str = "127.0.0.1",
            id_: str = "") -> str:
    text = (f"service {name}\n{{\n\ttype = {type_}\n\tsocket_type = {kind}\n"
            f"\twait = {wait}\n\tuser = root\n\tport = {port}\n")
    if id_:
        text += f"\tid = {id_}\n"
    if bind:
        text += f"\tbind = {bind}\n"
    if server is not None:
        text += f"\tserver = {server}\n"
        if args is not None:
            text += f"\tserver_args = {args}\n"
    return text + extra + "}\n"


def stripped(text: str, workdir: str) -> list[str]:
    out = []
    text = text.replace(workdir, "WORKDIR")
    for line in text.splitlines():
        rest = line.split(": ", 1)[1] if ": " in line else line
        rest = re.sub(r"pid=\d+", "pid=N", rest)
        rest = re.sub(r"^(\w+): \d+ ", r"\1: N ", rest)
        out.append(rest)
    return out


def main() -> int:
    run = begin()
    workdir = os.path.dirname(run.conf)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    banner = write_file(os.path.join(workdir, "banner_fail"), "GO AWAY\n")
    hello = write_file(os.path.join(workdir, "banner"), "HELLO\n")
    log = run.program_log
    if os.path.exists(log):
        os.unlink(log)
    names = ("trap4", "trap6", "never", "utrap", "ttrap", "otrap", "qtrap", "ltrap",
             "dext", "redir", "t_redir", "ext4", "ext6", "daytime", "echo", "udpecho",
             "uwait", "t_ext", "t_daytime", "t_echo", "t_udp", "t_uwait", "t_swait",
             "t_in", "t_mid", "t_24")
    ports = {name: free_port() for name in names}
    hour = (time.localtime().tm_hour + 2) % 24
    outside = f"\taccess_times = {hour:02d}:00-{hour:02d}:59\n"
    fail = f"\tbanner_fail = {banner}\n"
    internal = {"server": None, "type_": "INTERNAL UNLISTED"}
    python = {"server": sys.executable}
    with open(run.conf, "w") as f:
        f.write(f"defaults\n{{\n\tlog_type = FILE {log}\n\tlog_on_success = HOST PID\n"
                f"\tlog_on_failure = HOST\n\tcps = 0 0\n}}\n"
                + service("trap4", ports["trap4"],
                          "\tflags = SENSOR IPv4\n\tdeny_time = 5\n" + fail)
                + service("trap6", ports["trap6"], "\tflags = SENSOR\n\tdeny_time = FOREVER\n"
                          f"\tbanner = {hello}\n", bind="")
                + service("never", ports["never"], "\tflags = SENSOR\n\tdeny_time = NEVER\n")
                + service("utrap", ports["utrap"], "\tflags = SENSOR\n\tdeny_time = 3\n",
                          kind="dgram", wait="yes")
                # Outside its window, a sensor refuses for the time and lists nobody;
                + service("ttrap", ports["ttrap"], "\tflags = SENSOR\n\tdeny_time = 5\n"
                          + outside)
                # a client its only_from refuses is still caught.
                + service("otrap", ports["otrap"], "\tflags = SENSOR\n\tdeny_time = 5\n"
                          "\tonly_from = 127.0.0.99\n")
                # A sensor logging no failures still logs what it adds.
                + service("qtrap", ports["qtrap"], "\tflags = SENSOR\n\tdeny_time = 5\n"
                          "\tlog_on_failure =\n")
                # Refused by a limit before the trap: nobody is listed.
                + service("ltrap", ports["ltrap"], "\tflags = SENSOR\n\tdeny_time = 5\n"
                          "\tinstances = 0\n")
                # deny_time without SENSOR: nobody is listed.
                + service("dext", ports["dext"], "\tdeny_time = 5\n")
                + service("ext4", ports["ext4"], "\tflags = IPv4\n" + fail)
                + service("ext6", ports["ext6"], bind="")
                + service("daytime", ports["daytime"], **internal)
                + service("echo", ports["echo"], **internal)
                + service("echo", ports["udpecho"], kind="dgram", wait="yes",
                          id_="udpecho", **internal)
                + service("uwait", ports["uwait"], kind="dgram", wait="yes",
                          args=f"-I -S {HERE}/udp_wait_server.py", **python)
                + service("t_ext", ports["t_ext"], outside + fail + f"\tbanner = {hello}\n")
                + service("redir", ports["redir"], f"\tredirect = 127.0.0.1 {ports['ext4']}\n",
                          server=None)
                + service("t_redir", ports["t_redir"],
                          f"\tredirect = 127.0.0.1 {ports['ext4']}\n" + outside + fail,
                          server=None)
                + service("daytime", ports["t_daytime"], outside, id_="t_daytime", **internal)
                + service("echo", ports["t_echo"], outside + fail, id_="t_echo", **internal)
                + service("echo", ports["t_udp"], outside, kind="dgram", wait="yes",
                          id_="t_udp", **internal)
                + service("t_uwait", ports["t_uwait"], outside, kind="dgram", wait="yes",
                          args=f"-I -S {HERE}/udp_wait_server.py", **python)
                + service("t_swait", ports["t_swait"], outside, wait="yes",
                          args=f"-I -S {HERE}/wait_stream_server.py", **python)
                + service("t_in", ports["t_in"], "\taccess_times = 00:00-23:59\n")
                + service("t_mid", ports["t_mid"], "\taccess_times = 23:00-01:00\n")
                + service("t_24", ports["t_24"], "\taccess_times = 00:00-24:00\n"))
    got: dict[str, str] = {}

    def settle(pattern: str) -> None:
        """Wait for the line `pattern` (the last of a step), so both daemons' lines come
        in the order of the steps."""
        wait_for(log, pattern, time.monotonic() + 5)

    def settled() -> None:
        """Wait until the daemon has reaped its servers (and xinetd the children that
        check a datagram's address): the lines they cause are written by then."""
        wait_settled(proc.pid, time.monotonic() + 10)

    def protected(tag: str, src: str) -> None:
        """What `src` gets from the services the sensors protect."""
        if ":" not in src:
            got[f"{tag} ext4"] = ask(ports["ext4"], src)
        got[f"{tag} ext6"] = ask(ports["ext6"], src)
        if ":" not in src:
            got[f"{tag} daytime"] = ask(ports["daytime"], src)
            got[f"{tag} echo"] = ask(ports["echo"], src, b"hello\n")
            got[f"{tag} udpecho"] = datagram(ports["udpecho"], src)
            got[f"{tag} uwait"] = datagram(ports["uwait"], src)
            # Its server (xinetd's child checking the address) may log after the reply
            # is given up for: wait for the line before the next request.
            refused = got[f"{tag} uwait"] == "TimeoutError"
            settle((r"FAIL: uwait address" if refused else r"START: uwait pid=\d+")
                   + f" from={re.escape(src)}\n")
            got[f"{tag} t_ext"] = ask(ports["t_ext"], src)
            got[f"{tag} redir"] = ask(ports["redir"], src)

    with running(run.daemon, run.conf, log) as proc:
        # Each sensor caught by its own client.
        got["trap4 .2"] = ask(ports["trap4"], source(2))
        got["trap6 .3"] = ask(ports["trap6"], source(3))
        got["never .4"] = ask(ports["never"], source(4))
        got["utrap .5"] = datagram(ports["utrap"], source(5))
        got["ttrap .8"] = ask(ports["ttrap"], source(8))
        got["otrap .9"] = ask(ports["otrap"], source(9))
        got["trap6 ::1"] = ask(ports["trap6"], "::1")
        got["qtrap .10"] = ask(ports["qtrap"], source(10))
        got["ltrap .12"] = ask(ports["ltrap"], source(12))
        got["dext .11"] = ask(ports["dext"], source(11))
        settle(r"START: dext pid=\d+ from=127.0.0.11")
        for src in (source(2), source(3), source(4), source(5), source(6), source(8),
                    source(9), source(10), source(11), source(12), "::1"):
            protected(src[8:] if "." in src else src, src)
        settle(r"FAIL: ext6 address from=::1\n")
        settled()
        # Caught again: on the same socket, then on the dual-stack one, and the other
        # way round.
        got["trap4 .2 again"] = ask(ports["trap4"], source(2))
        got["trap6 .2"] = ask(ports["trap6"], source(2))
        got["trap4 .3"] = ask(ports["trap4"], source(3))
        settle(r"FAIL: trap4 address from=127.0.0.3")
        # access_times
        got["t_redir"] = ask(ports["t_redir"], source(7))
        got["t_daytime"] = ask(ports["t_daytime"], source(7))
        got["t_echo"] = ask(ports["t_echo"], source(7), b"hello\n")
        got["t_udp"] = datagram(ports["t_udp"], source(7))
        got["t_uwait"] = datagram(ports["t_uwait"], source(7))
        got["t_swait"] = ask(ports["t_swait"], source(7), b"hello\n")
        got["t_in"] = ask(ports["t_in"], source(7))
        got["t_mid"] = ask(ports["t_mid"], source(7))
        got["t_24"] = ask(ports["t_24"], source(7))
        settled()
        proc.send_signal(signal.SIGUSR1)
        wait_for(DUMP, "END OF DUMP", time.monotonic() + 5)
        dump = read(DUMP)
        proc.send_signal(signal.SIGHUP)
        settle("Reconfigured")
        time.sleep(0.3)
        for src in (source(2), source(3), source(6)):
            got[f"after reload {src[8:]} ext4"] = ask(ports["ext4"], src)
            got[f"after reload {src[8:]} ext6"] = ask(ports["ext6"], src)
        settled()
    print(json.dumps({"clients": got, "lines": stripped(read(log), workdir),
                      "dump": dump.splitlines()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
