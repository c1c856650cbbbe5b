"""`redirect = HOST PORT` on the wire, against one daemon, with targets this script runs.

    unshare -n python3 redirect_wire_scenario.py WORKDIR DAEMON [ARG...]

In its private network namespace it brings `lo` up, starts one test-controlled target
server per case (tests/compat/test_redirect_wire_oracle.py lists them), writes one
redirect service per case, starts the daemon and plays each case's client. For every
case it records what the client received and how its connection ended (`fin`, `rst`,
`open` when nothing came before the deadline), and the same for the target; then the
service log and the program log, stamps dropped, pids and durations made N. Prints one
JSON object. Standard library only; every wait is bounded.
"""

import fcntl
import json
import os
import re
import select
import socket
import struct
import sys
import threading
import time

from scenario_support import begin, free_port, read, running, wait_for

DEADLINE = 3.0
BIG = 10 * 1024 * 1024
PAUSE = 0.5          # how long a slow reader waits before it starts reading
LOG_FLAGS = "HOST PID EXIT DURATION TRAFFIC"


def pattern(size):
    """`size` bytes that are not all alike (a lost or repeated chunk shows)."""
    block = bytes(range(256)) * 64 + b"!"
    return (block * (size // len(block) + 1))[:size]


PAYLOAD = pattern(BIG)


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def drain(sock, timeout=DEADLINE, limit=None):
    """Read until the end (or `limit` bytes): (bytes, how it ended)."""
    data = b""
    sock.settimeout(timeout)
    try:
        while limit is None or len(data) < limit:
            chunk = sock.recv(65536 if limit is None else min(65536, limit - len(data)))
            if not chunk:
                return data, "fin"
            data += chunk
    except ConnectionResetError:
        return data, "rst"
    except socket.timeout:
        return data, "open"
    return data, "limit"


def summary(data):
    """Small data as text; big data as its size and whether it is PAYLOAD."""
    if len(data) <= 8192:
        return data.decode("latin-1")
    return {"size": len(data), "prefix": data == PAYLOAD[:len(data)]}


class Target:
    """A server on (host, port) running `serve(conn, note)` on each connection in its
    own thread; `note` is the case's record."""

    def __init__(self, serve, host="127.0.0.1", listen=True):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        self.notes = []
        self.threads = []
        if listen:
            self.sock.listen(16)
            threading.Thread(target=self._accept, daemon=True).start()
        # else: bound, never listening: connections to it are refused.

    def _accept(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            note = {"peer": peer[0]}
            self.notes.append(note)
            thread = threading.Thread(target=self._run, args=(conn, note), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, conn, note):
        try:
            self.serve(conn, note)
        except OSError as exc:
            note["error"] = type(exc).__name__
        finally:
            conn.close()

    def finish(self):
        for thread in list(self.threads):
            thread.join(DEADLINE * 3)
        return self.notes


# The targets: each gets the connection and the record to fill.

def t_accept_close(conn, note):
    pass


def t_banner(conn, note):
    conn.sendall(b"220 target ready\r\n")
    note["got"], note["end"] = drain(conn, limit=6)
    note["got"] = note["got"].decode("latin-1")
    conn.sendall(b"221 bye\r\n")


def t_halfclose(conn, note):
    conn.sendall(b"data then FIN\n")
    conn.shutdown(socket.SHUT_WR)
    got, note["end"] = drain(conn)
    note["got"] = summary(got)


def t_reply_after_eof(conn, note):
    got, note["end"] = drain(conn)
    note["got"] = summary(got)
    try:
        conn.sendall(b"response after your FIN\n")
        note["sent"] = True
    except OSError as exc:
        note["sent"] = type(exc).__name__


def t_big_down(conn, note):
    note["sent"] = 0
    for start in range(0, BIG, 16384):
        conn.sendall(PAYLOAD[start:start + 16384])
        note["sent"] = start + 16384


def t_big_up(conn, note):
    time.sleep(PAUSE)
    got, note["end"] = drain(conn, timeout=10)
    note["got"] = summary(got)
    conn.sendall(b"got it\n")


def t_send_then_wait(conn, note):
    """Reads 3 bytes, sends 5000, then waits for the end (a client that resets)."""
    note["first"] = drain(conn, limit=3)[0].decode("latin-1")
    conn.sendall(b"x" * 5000)
    got, note["end"] = drain(conn)
    note["got"] = summary(got)


RELAYED = threading.Event()     # the treset client has the 5000 bytes


def t_send_then_reset(conn, note):
    note["first"] = drain(conn, limit=3)[0].decode("latin-1")
    conn.sendall(b"r" * 5000)
    RELAYED.wait(DEADLINE)      # the daemon has relayed the bytes: now the reset
    reset(conn)


def c_read_before_reset(port):
    """client_read for treset: tells its target when the 5000 bytes have arrived."""
    RELAYED.clear()
    with connect(port) as c:
        c.sendall(b"abc")
        got, end = drain(c, limit=5000)
        RELAYED.set()
        if end == "limit":
            more, end = drain(c)
            got += more
        return {"got": summary(got), "end": end}


SIOCOUTQ = 0x5411      # bytes in a socket's send queue not yet acknowledged
STALL = 0.3            # no progress for this long: every buffer on the way is full


def send_until_stalled(sock):
    """Send PAYLOAD until nothing moves for STALL seconds, then reset: returns how many
    bytes reached the peer's kernel (sent, less what the reset throws away)."""
    # A bounded send buffer: the stall comes well before BIG bytes.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.settimeout(STALL)
    sent = 0
    try:
        while sent < BIG:
            sent += sock.send(PAYLOAD[sent:sent + 65536])
    except socket.timeout:
        pass
    unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]
    reset(sock)
    return sent - unacked


RESET_DONE = threading.Event()


def t_stall_then_reset(conn, note):
    note["delivered"] = send_until_stalled(conn)
    RESET_DONE.set()


def t_after_reset(conn, note):
    got, note["end"] = after_reset(conn)
    note["got"] = summary(got)


def t_reset_at_once(conn, note):
    reset(conn)


def t_until_end(conn, note):
    got, note["end"] = drain(conn)
    note["got"] = summary(got)


def t_silent(conn, note):
    """Never reads nor writes: waits for the FIN (POLLRDHUP), then for the daemon's
    EXIT line while still holding the connection."""
    poller = select.poll()
    poller.register(conn, select.POLLRDHUP)
    note["fin_seen"] = bool(poller.poll(DEADLINE * 1000))
    note["exit_logged_while_open"] = wait_for(SERVICE_LOG[0], r"EXIT: silent",
                                              time.monotonic() + 1.0)


def t_ping(conn, note):
    note["got"] = drain(conn, limit=5)[0].decode("latin-1")
    conn.sendall(b"pong\n")


def t_ping_hold(conn, note):
    t_ping(conn, note)
    note["end"] = drain(conn)[1]


def t_hello(conn, note):
    conn.sendall(b"target hello\n")


HOLD = threading.Event()


def t_hold(conn, note):
    conn.sendall(b"first\n" if not HOLD.is_set() else b"later\n")
    HOLD.wait(DEADLINE)


SERVICE_LOG = [""]


def service(name, port, target, extra=""):
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tport = {port}\n"
            f"\tredirect = {target}\n\tlog_type = FILE {SERVICE_LOG[0]}\n"
            + ("" if "log_on_success" in extra else f"\tlog_on_success = {LOG_FLAGS}\n")
            + "\tlog_on_failure = HOST ATTEMPT\n"
            + ("" if "bind" in extra or "flags" in extra else "\tbind = 127.0.0.1\n")
            + extra + "}\n")


def connect(port, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(DEADLINE)
    sock.connect((host, port))
    return sock


def client_read(port, host="127.0.0.1", send=b""):
    with connect(port, host) as c:
        if send:
            c.sendall(send)
        got, end = drain(c)
        return {"got": summary(got), "end": end}


def c_target_halfclose(port):
    with connect(port) as c:
        got, end = drain(c)
        out = {"got": summary(got), "end": end}
        try:
            c.sendall(b"after\n")
            c.shutdown(socket.SHUT_WR)
            out["after"] = "sent"
        except OSError as exc:
            out["after"] = type(exc).__name__
        return out


def c_client_halfclose(port):
    with connect(port) as c:
        c.sendall(b"request\n")
        c.shutdown(socket.SHUT_WR)
        got, end = drain(c)
        return {"got": summary(got), "end": end}


def c_big_down(port, target, other, daemon):
    with connect(port) as c:
        time.sleep(PAUSE)
        notes = target.notes
        # What the target could hand over while nobody read: socket buffers plus
        # what the relay holds.
        stalled = notes[0]["sent"] if notes else None
        # The daemon serves others meanwhile.
        during = client_read(other, send=b"ping\n")
        rss = resident_kib(daemon)
        got, end = drain(c, timeout=10)
        return {"got": summary(got), "end": end, "stalled_at": stalled,
                "during": during, "rss_kib": rss}


def resident_kib(pid):
    """The daemon's resident memory (informative: xinetd relays in a child)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def c_big_up(port):
    sent = [0]
    with connect(port) as c:
        c.settimeout(10)
        view = memoryview(PAYLOAD)
        start = time.monotonic()
        stalled = None
        for at in range(0, BIG, 16384):
            c.sendall(view[at:at + 16384])
            sent[0] = at + 16384
            if stalled is None and time.monotonic() - start > PAUSE / 2:
                stalled = sent[0]
        c.shutdown(socket.SHUT_WR)
        got, end = drain(c)
        return {"got": summary(got), "end": end, "stalled_at": stalled}


def c_client_reset(port):
    c = connect(port)
    c.sendall(b"abc")
    got, end = drain(c, limit=5000)
    reset(c)
    return {"got": summary(got), "end": end}


def after_reset(sock):
    """Read everything once the other end has reset."""
    RESET_DONE.wait(DEADLINE * 2)
    return drain(sock)


def c_after_reset(port):
    with connect(port) as c:
        got, end = after_reset(c)
        return {"got": summary(got), "end": end}


def c_stall_then_reset(port):
    RESET_DONE.clear()      # set by the previous case's target
    with connect(port) as c:
        delivered = send_until_stalled(c)
    RESET_DONE.set()
    return {"delivered": delivered}


def c_send_wait_read(port):
    with connect(port) as c:
        c.sendall(b"abc")
        time.sleep(0.3)
        got, end = drain(c)
        return {"got": summary(got), "end": end}


def c_reset_at_once(port):
    reset(connect(port))
    return {}


def c_silent(port):
    c = connect(port)
    c.sendall(b"hello")
    time.sleep(0.1)
    c.close()
    return {}


def c_instances(port):
    out = {}
    first = connect(port)
    out["first"] = drain(first, limit=6)[0].decode("latin-1")
    wait_for(SERVICE_LOG[0], r"START: inst ", time.monotonic() + DEADLINE)
    second = client_read(port)
    out["second"] = second
    HOLD.set()
    out["first_end"] = drain(first)[1]
    first.close()
    wait_for(SERVICE_LOG[0], r"EXIT: inst ", time.monotonic() + DEADLINE)
    out["third"] = client_read(port)
    return out


STAMP = re.compile(r"^\d\d/\d+/\d+@\d\d:\d\d:\d\d:? ")


def entries(text):
    out = []
    for line in text.splitlines():
        line = STAMP.sub("", line)
        line = re.sub(r"xinetd\[\d+\]: ", "", line)
        line = re.sub(r"pid=\d+", "pid=N", line)
        line = re.sub(r"duration=\d+", "duration=N", line)
        out.append(line)
    return out


def main():
    run = begin()
    work = os.path.dirname(run.conf)
    SERVICE_LOG[0] = run.service_log
    with open(os.path.join(work, "banner"), "w") as f:
        f.write("banner\n")
    with open(os.path.join(work, "success"), "w") as f:
        f.write("banner_success\n")
    with open(os.path.join(work, "fail"), "w") as f:
        f.write("banner_fail\n")

    targets = {
        "refused": Target(t_accept_close, listen=False),
        "acceptclose": Target(t_accept_close),
        "banner": Target(t_banner),
        "thalf": Target(t_halfclose),
        "chalf": Target(t_reply_after_eof),
        "bigdown": Target(t_big_down),
        "during": Target(t_ping),
        "bigup": Target(t_big_up),
        "creset": Target(t_send_then_wait),
        "treset": Target(t_send_then_reset),
        "tresetbig": Target(t_stall_then_reset),
        "cresetbig": Target(t_after_reset),
        "tresetnow": Target(t_reset_at_once),
        "cresetnow": Target(t_until_end),
        "silent": Target(t_silent),
        "byname": Target(t_ping),
        "v6target": Target(t_ping, host="::1"),
        "v6service": Target(t_ping),
        "source": Target(t_ping),
        "banners": Target(t_hello),
        "bannfail": Target(t_hello),
        "inst": Target(t_hold),
        "onlyhost": Target(t_ping),
        "onlytraffic": Target(t_ping),
        "onlyduration": Target(t_ping),
        "bannrefused": Target(t_accept_close, listen=False),
        "atexit": Target(t_ping_hold),
    }
    where = {"byname": "localhost", "v6target": "::1"}
    extra = {
        "v6service": "\tflags = IPv6\n",
        "source": "\tredirect_source = 127.0.0.2\n",
        "banners": f"\tbanner = {work}/banner\n\tbanner_success = {work}/success\n"
                   f"\tbanner_fail = {work}/fail\n",
        "bannfail": f"\tbanner = {work}/banner\n\tbanner_success = {work}/success\n"
                    f"\tbanner_fail = {work}/fail\n\tonly_from = 10.9.9.9\n",
        "inst": "\tinstances = 1\n",
        "onlyhost": "\tlog_on_success = HOST\n",
        "onlytraffic": "\tlog_on_success = TRAFFIC\n",
        "onlyduration": "\tlog_on_success = DURATION\n",
        "bannrefused": f"\tbanner = {work}/banner\n\tbanner_success = {work}/success\n",
    }
    ports = {}
    text = ""
    for name, target in targets.items():
        ports[name] = free_port()
        text += service(name, ports[name],
                        f"{where.get(name, '127.0.0.1')} {target.port}", extra.get(name, ""))
    with open(run.conf, "w") as f:
        f.write(text)

    clients = {
        "refused": lambda p: client_read(p),
        "acceptclose": lambda p: client_read(p),
        "banner": lambda p: client_read(p, send=b"QUIT\r\n"),
        "thalf": c_target_halfclose,
        "chalf": c_client_halfclose,
        "bigdown": lambda p: c_big_down(p, targets["bigdown"], ports["during"], daemon.pid),
        "bigup": c_big_up,
        "creset": c_client_reset,
        "treset": c_read_before_reset,
        "tresetbig": c_after_reset,
        "cresetbig": c_stall_then_reset,
        "tresetnow": c_send_wait_read,
        "cresetnow": c_reset_at_once,
        "silent": c_silent,
        "byname": lambda p: client_read(p, send=b"ping\n"),
        "v6target": lambda p: client_read(p, send=b"ping\n"),
        "v6service": lambda p: [client_read(p, "::1", b"ping\n"),
                                client_read(p, "127.0.0.1", b"ping\n")],
        "source": lambda p: client_read(p, send=b"ping\n"),
        "banners": lambda p: client_read(p),
        "bannfail": lambda p: client_read(p),
        "inst": c_instances,
        "onlyhost": lambda p: client_read(p, send=b"ping\n"),
        "onlytraffic": lambda p: client_read(p, send=b"ping\n"),
        "onlyduration": lambda p: client_read(p, send=b"ping\n"),
        "bannrefused": lambda p: client_read(p),
    }
    cases = {"during": {"client": "played by bigdown"}}
    with running(run.daemon, run.conf, run.program_log) as daemon:
        rss_start = resident_kib(daemon.pid)
        for name, play in clients.items():
            cases[name] = {"client": play(ports[name])}
            cases[name]["target"] = targets[name].finish()
            # This case's last lines, before the next case starts.
            wait_for(run.service_log, rf"(EXIT|FAIL): {name} [^\n]*\n\Z",
                     time.monotonic() + 1.0)
        cases["during"]["target"] = targets["during"].finish()
        service_log = read(run.service_log)
        # A session still open when the daemon is told to stop (SIGTERM).
        left_open = connect(ports["atexit"])
        left_open.sendall(b"ping\n")
        drain(left_open, limit=5)
    # The client's end seen, the target's thread may not have seen its own yet: its
    # record is read once the thread is done.
    cases["atexit"] = {"client": {"end": drain(left_open)[1]},
                       "target": targets["atexit"].finish()}
    print(json.dumps({"cases": cases, "rss_kib_start": rss_start,
                      "service": entries(service_log),
                      "at_exit": entries(read(run.service_log)[len(service_log):]),
                      "program": entries(read(run.program_log))}))
    sys.stdout.flush()
    os._exit(0)     # the targets' threads may still wait on their sockets


if __name__ == "__main__":
    main()
