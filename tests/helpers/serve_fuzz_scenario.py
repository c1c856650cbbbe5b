"""Serve a batch of generated services (scripts/diff-fuzz-serve) against one daemon and
report what every client saw, what the helper servers reported and the service log.

    unshare -n python3 serve_fuzz_scenario.py CASE_JSON DAEMON [ARG...]

CASE_JSON holds {"services": [...]}: each service has an "id", a configuration "body"
(its attribute lines; `{W}` stands for this run's folder, `{ECHO}` for the port of a
local echo server that redirected services reach), "files" to write first (banners)
and "waves" of clients. A wave's clients connect in order, each from its own 127.0.0.x,
sends its bytes and maybe half-closes, and is read until EOF or a short quiet spell,
while the earlier ones are still held; before the next client connects, the daemon has
reaped every server but those of the clients still open (both daemons then start it
with the same instances in use). Then the wave's connections are closed and the
daemon's servers are waited for. Every service logs to a file of its own.

A datagram client with "exact" sends its bytes as they are, even none (others send a
newline for none). A client's "dst" is the address it connects to (a service bound to one 127.0.0.x). A
datagram service with "together" has each wave's clients send all at once, read once
all have sent. A service with "ident" has its clients' ident queries answered by an
identd on port 113 of every address (tests/helpers/ident_scenario.py, that mode).

A service with a "burst" (a `cps` small enough to trip) gets it first: its clients
connect one after another, at a moment when neither the wall clock (xinetd's cps
seconds) nor the monotonic clock (pyxinetd's) is about to turn a second, and are read
only once all have connected; then, once the daemon has logged the service's
`Activating service` (or after its pause and a margin) and the burst's cps window is
over in both clocks (both daemons carry its count over the reactivation), its waves. `{FAR}` in a body
is an `access_times` window far from now. With "load" in CASE_JSON, the daemons read
that one-minute load from a /proc/loadavg mounted over the real one.

Prints one JSON object: for each service id, "clients" (one line each: the bytes got,
then EOF, open or the error) and "log" (its service log lines, stamp dropped, pids,
durations and ports made N, sorted: the order of concurrent servers' lines is not
the daemon's to keep), and "program": the deactivation, activation and load lines
the daemon wrote while the service ran, in order. Standard library only; every wait bounded.
"""

import ast
import json
import os
import re
import socket
import sys
import threading
import time

from procs import children_of, resolver_helpers
from scenario_support import (
    begin, fake_load, far_window, free_port, private_dev_and_etc, read, running,
    second_to_spare, seen, settled, wait_count, write_file)

QUIET = 0.4          # seconds of silence after which a connection counts as open
# A helper server (report, wait-stream, env-dgram) writes once and ends, but Python's
# start can take longer than QUIET on a loaded machine: its client is read until the
# end, for at most this long, or its reply waited for as long.
PATIENCE = 3.0
ENDING = {"report", "wait-stream", "env-dgram"}
# The same helpers started for the other kinds (behind tcpmux, libwrap, ident, an IPv6
# or bound address): their clients are read as patiently.
ENDING_SERVERS = ("report_server.py", "env_probe.py")
REAPED = 5.0         # at most this long for the daemon to reap a server that has ended


def echo_server():
    """A threaded TCP echo server on 127.0.0.1, the redirect target; its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)

    def serve(conn):
        with conn:
            try:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def normalised(text):
    text = re.sub(r'"(pid|ppid|sid|pgid|ino|dev)": \d+', r'"\1": N', text)
    text = re.sub(r"pid=\d+", "pid=N", text)
    text = re.sub(r"duration=\d+", "duration=N", text)
    return re.sub(r"(from=\S+?)(\s|$)", r"\1\2", text)


def family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def destination(client):
    """Where a client connects: its "dst" if it has one (a service bound to one
    127.0.0.x), else ::1 from ::1, else 127.0.0.1 (an IPv6 service bound to no address
    takes both)."""
    if client.get("dst"):
        return client["dst"]
    return "::1" if ":" in client["src"] else "127.0.0.1"


def stream_client(port, client):
    conn = socket.socket(family(client["src"]))
    conn.bind((client["src"], 0))
    conn.settimeout(5)
    try:
        conn.connect((destination(client), port))
    except OSError as exc:
        conn.close()
        return None, f"connect {type(exc).__name__}"
    data = bytes.fromhex(client["data"])
    try:
        if data:
            conn.sendall(data)
        if client["half_close"]:
            conn.shutdown(socket.SHUT_WR)
    except OSError as exc:
        return conn, f"send {type(exc).__name__}"
    return conn, None


def dgram_client(port, client, wait):
    sock = socket.socket(family(client["src"]), socket.SOCK_DGRAM)
    sock.bind((client["src"], 0))
    sock.settimeout(wait)
    data = bytes.fromhex(client["data"])
    # An "exact" client's datagram is sent as drawn, even empty; others send a line.
    sock.sendto(data if client.get("exact") else data or b"\n", (destination(client), port))
    try:
        return repr(sock.recv(65535))
    except OSError as exc:
        return f"{type(exc).__name__}"
    finally:
        sock.close()


def dgram_senders(port, clients, wait):
    """What each of `clients` gets when all send their datagram at once, before any is
    read: one reply each (or the error), read once all have sent."""
    socks = []
    for client in clients:
        sock = socket.socket(family(client["src"]), socket.SOCK_DGRAM)
        sock.bind((client["src"], 0))
        sock.sendto(bytes.fromhex(client["data"]) or b"\n", (destination(client), port))
        socks.append(sock)
    results = []
    deadline = time.monotonic() + wait * len(clients)
    for sock in socks:
        sock.settimeout(max(deadline - time.monotonic(), 0.05))
        try:
            results.append(repr(sock.recv(65535)))
        except OSError as exc:
            results.append(f"{type(exc).__name__}")
        finally:
            sock.close()
    return results


# Seconds between 1900 (RFC 868's epoch) and 1970.
RFC868 = 2208988800


def shaped(svc, line):
    """A client's line with what depends on the clock made a shape: daytime's digits
    made D, time's four bytes made `time4 now` (within a minute of this host's clock),
    a chargen datagram its length and whether it is whole lines."""
    mask = svc.get("mask")
    found = re.match(r"(b'.*'|b\".*\")( .*)?$", line, re.S)
    if mask is None or found is None:
        return line
    got = ast.literal_eval(found.group(1))
    rest = found.group(2) or ""
    if mask == "daytime":
        # The names too: the two daemons' answers may fall either side of midnight.
        got = re.sub(rb"\b(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b", b"WEEKDAY", got)
        got = re.sub(rb"\b(January|February|March|April|May|June|July|August|September|"
                     rb"October|November|December)\b", b"MONTH", got)
        return repr(re.sub(rb"\d", b"D", got)) + rest
    if mask == "chargen":
        # Where the line counter stands depends on every chargen datagram the daemon
        # answered before (a race where xinetd drained some): the shape is compared.
        whole = re.fullmatch(rb"([!-~]{72}\r\n)*[!-~]*\r\n", got)
        return f"chargen{len(got)} {'lines' if whole else repr(got)}" + rest
    if len(got) == 4 and abs(int.from_bytes(got, "big") - RFC868 - time.time()) < 60:
        return "time4 now" + rest
    if len(got) > 4 and abs(int.from_bytes(got[-4:], "big") - RFC868 - time.time()) < 60:
        # The four bytes after the service's banners.
        return f"{got[:-4]!r} then time4 now" + rest
    return f"time{len(got)} {got!r}" + rest


def prefix(conn, size, wait):
    """The first `size` bytes a stream client gets (chargen never ends), then the
    connection is closed."""
    got = b""
    conn.settimeout(wait)
    try:
        while len(got) < size:
            chunk = conn.recv(size - len(got))
            if not chunk:
                return f"{got!r} EOF"
            got += chunk
    except socket.timeout:
        return f"{got!r} open"
    except OSError as exc:
        return f"{got!r} {type(exc).__name__}"
    finally:
        conn.close()
    return f"{got!r} prefix"


def quiesce(pid):
    """Until the daemon has had no server for two looks in a row (a suspended service
    accepts a queued connection only after its slot frees)."""
    deadline = time.monotonic() + 10
    calm = 0
    while time.monotonic() < deadline and calm < 3:
        # pyxinetd's name resolver helper (started for a hosts.allow rule) is no server.
        calm = calm + 1 if settled(pid, keep=resolver_helpers(pid)) else 0
        time.sleep(0.1)


def servers_of(pid):
    """The daemon's children but its name resolver helper: the servers it started."""
    return set(children_of(pid)) - set(resolver_helpers(pid))


def reaped(pid, serving):
    """Until the daemon has no child but those in `serving` (the servers of clients
    still held open): a server whose client saw the end of its connection may still be
    running or unreaped, holding an instance and a per_source slot, and the next client
    would be refused or not by how fast the daemon reaped it."""
    deadline = time.monotonic() + REAPED
    while time.monotonic() < deadline and not servers_of(pid) <= serving:
        time.sleep(0.02)


PRESSURE_LINE = re.compile(r"((Error a|A|Dea)ctivating service .*|refused connect .*)")
BURST_SPAN = 0.45    # seconds the burst may take, within one second of both clocks


def taken(port, deadline):
    """Until the listening socket on `port` has no connection waiting to be accepted
    (or is gone), or the monotonic `deadline`."""
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            rows = [row.split() for row in f.read().splitlines()[1:]]
        if not any(row[3] == "0A" and int(row[1].split(":")[1], 16) == port
                   and int(row[4].split(":")[1], 16) > 0 for row in rows):
            return
        time.sleep(0.002)


def window_over(svc, seconds):
    """Until the cps window begun in `seconds` (the burst's second of the wall clock and
    of the monotonic clock) is over in both clocks: it lasts `rate` seconds (reference
    §4.5), and both daemons carry its count over the reactivation, so a client that
    comes while it lasts trips the service again. Without this wait, whether the next
    client lands in the window's last second or after it would be a race of the
    reactivation against the turn of a second."""
    rate = int(re.search(r"^\s*cps = (\d+) ", svc["body"], re.M).group(1))
    wall, mono = seconds
    for _ in range(rate + 2):
        left = max(wall + rate - time.time(), mono + rate - time.monotonic())
        if left <= 0:
            return
        time.sleep(left + 0.002)


def run_burst(svc, port, pid, program_log, patience):
    """The burst of a tripping cps, then a wait for the service to come back and for
    the burst's cps window to end."""
    before = len(read(program_log))
    back = re.escape(f"Activating service {svc['name']}") + "$"
    activated = len(re.findall(back, read(program_log), re.M))
    second_to_spare(BURST_SPAN)
    seconds = (int(time.time()), int(time.monotonic()))
    conns = []
    for client in svc["burst"]:
        conns.append(stream_client(port, client))
        # Each connection taken from the queue before the next comes: else whether a
        # client comes after the trip (refused) or before it (queued, then reset) is
        # a race of the client against the daemon.
        taken(port, time.monotonic() + BURST_SPAN / len(svc["burst"]))
    results = []
    for conn, error in conns:
        results.append(error or seen(conn, wait=patience))
    for conn, _ in conns:
        if conn is not None:
            conn.close()
    if "Deactivating service" in read(program_log)[before:]:
        wait_count(program_log, f"(?m){back}", activated + 1,
                   time.monotonic() + svc["pause"] + 3)
    window_over(svc, seconds)
    quiesce(pid)
    if svc["unread"]:
        results = [r.replace("ConnectionResetError", "EOF") for r in results]
    return results


def run_service(svc, port, pid, program_log):
    results = []
    ends = svc["kind"] in ENDING or any(name in svc["body"] for name in ENDING_SERVERS)
    patience = PATIENCE if ends else QUIET
    if svc.get("burst"):
        results += run_burst(svc, port, pid, program_log, patience)
    for wave in svc["waves"]:
        held = []
        serving = set()
        if svc["dgram"] and svc.get("together"):
            results += dgram_senders(port, wave, max(patience, QUIET * 2))
            quiesce(pid)
            continue
        for client in wave:
            if svc["dgram"]:
                results.append(shaped(svc, dgram_client(port, client,
                                                        max(patience, QUIET * 2))))
                reaped(pid, serving)
                continue
            conn, error = stream_client(port, client)
            if conn is None:
                results.append(error)
                reaped(pid, serving)
                continue
            if svc.get("prefix"):
                results.append(prefix(conn, svc["prefix"], patience))
                reaped(pid, serving)
                continue
            held.append(conn)
            # A send that failed (the daemon had closed first: a refusal) is the client's
            # race, not the daemon's doing: what the daemon wrote before closing (banner,
            # banner_fail) is still there to read.
            got = seen(conn, wait=patience)
            if svc["unread"]:   # a server that never reads: reset or EOF is a race
                got = got.replace("ConnectionResetError", "EOF")
            results.append(shaped(svc, got))
            if got.endswith(" open"):
                # Every server that had ended before this client connected is reaped
                # (below), so the daemon's children now serve the open clients.
                serving = servers_of(pid)
            else:
                reaped(pid, serving)
        for conn in held:
            conn.close()
        quiesce(pid)
    return [normalised(r) for r in results]


def log_lines(path):
    lines = []
    for line in read(path).split("\n"):
        if ": " in line:
            lines.append(normalised(line.split(": ", 1)[1]))
    return sorted(lines)


def main():
    case_path = sys.argv[1]
    with open(case_path) as f:
        case = json.load(f)
    sys.argv[1] = workdir = os.path.dirname(case_path)
    run = begin()
    echo = echo_server()
    ports = {}
    text = ""
    if "tcpmux" in case:
        ports["tcpmux"] = free_port()
        text += ("service tcpmux\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                 "\tprotocol = tcp\n\twait = no\n\tuser = root\n\tbind = 127.0.0.1\n"
                 f"\tport = {ports['tcpmux']}\n\tlog_type = FILE {workdir}/tcpmux.log\n"
                 f"{case['tcpmux']}}}\n")
    for svc in case["services"]:
        for name, content in svc["files"].items():
            os.makedirs(os.path.dirname(os.path.join(workdir, name)), exist_ok=True)
            write_file(os.path.join(workdir, name), content)
        body = (svc["body"].replace("{W}", workdir).replace("{ECHO}", str(echo))
                .replace("{FAR}", far_window()))
        where = ""
        if svc.get("via") == "tcpmux":
            # Reached by name through the tcpmux service: no port of its own.
            ports[svc["id"]] = ports["tcpmux"]
        else:
            ports[svc["id"]] = port = free_port()
            bind = svc.get("bind", "127.0.0.1")
            where = f"\tport = {port}\n" + (f"\tbind = {bind}\n" if bind else "")
        text += (f"service {svc['name']}\n{{\n\tid = {svc['id']}\n{where}"
                 f"\tlog_type = FILE {workdir}/{svc['id']}.log\n"
                 f"{body}}}\n")
    identd = None
    modes = {ports[svc["id"]]: svc["ident"] for svc in case["services"] if "ident" in svc}
    if modes:
        # On port 113 of every address of this network namespace (clients come from
        # 127.0.0.1-9); its answer is the service's "ident" mode
        # (ident_scenario.Identd), other services' clients get `userid`.
        from ident_scenario import Identd
        identd = Identd(modes, ("0.0.0.0", "::"))
    if "allow" in case or "deny" in case:
        # Both tables at their real paths, on a private layer over /etc.
        private_dev_and_etc()
        for table in ("allow", "deny"):
            write_file(f"/etc/hosts.{table}", case.get(table, "").replace("{W}", workdir))
    write_file(run.conf, text)
    # A small environment of known order: servers without passenv get all of it.
    keep = {k: os.environ[k] for k in ("PATH", "PYTHONPATH", "HOME", "LANG") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    if "load" in case:
        fake_load(workdir, case["load"])
    out = {}
    with running(run.daemon, run.conf, run.program_log) as proc:
        for svc in case["services"]:
            before = len(read(run.program_log))
            clients = run_service(svc, ports[svc["id"]], proc.pid, run.program_log)
            out[svc["id"]] = {"clients": clients}
            if "load" in case:
                out[svc["id"]]["program"] = [
                    normalised(m.group(1)) for m in
                    map(PRESSURE_LINE.search, read(run.program_log)[before:].split("\n"))
                    # Another service's reactivation may come while this one runs.
                    if m and (m.group(1).startswith("refused connect")
                              or f" service {svc['name']} " in m.group(1) + " ")]
        quiesce(proc.pid)
    for svc in case["services"]:
        out[svc["id"]]["log"] = log_lines(os.path.join(workdir, f"{svc['id']}.log"))
        for name in svc.get("outputs", []):
            # What a hosts.allow `spawn` wrote: its lines sorted, as spawns may overlap.
            out[svc["id"]][name] = sorted(read(os.path.join(workdir, name)).splitlines())
    if "tcpmux" in case:
        out["tcpmux"] = log_lines(os.path.join(workdir, "tcpmux.log"))
    out["program"] = [line.split(": ", 1)[1] for line in read(run.program_log).split("\n")
                      if ": " in line]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
