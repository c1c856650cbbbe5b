"""A sequence of reloads (SIGHUP) with clients and servers running, against one daemon
inside a private network namespace.

    unshare -n python3 reload_diff_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, writes a configuration of several services (internal echo on stream
and dgram, an internal stream discard, a redirect to the echo, external servers
running tests/helpers/reload_diff_server.py: connection servers, a datagram
wait = yes server, one from an includedir file), starts the daemon, connects a client
that stays connected to almost every service, then edits the configuration step by
step, each time sending SIGHUP and waiting for the reload to end. After each step it
records what a client and an administrator see: the answers of the ports the step
concerns, the held clients whose connection ended, what the servers noted (their
start, the signal they got), and the new program-log and service-log lines, with
times, pids, ports and paths replaced by placeholders. Prints one JSON object:
{"steps": [[name, observation], ...]}. Standard library only; every wait bounded.
"""

import json
import os
import re
import select
import signal
import socket
import sys
import time
from collections.abc import Iterable

from scenario_support import begin, free_port, read, running, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "reload_diff_server.py")
ANSWER_WAIT = 2.5       # how long a probe waits for an answer that does not come
SETTLE = 0.05           # for a log line written just after a server is reaped
ENDING = 2.0            # at most this long for a server to end once told to

RELOAD_END = r"Reconfigured: |reconfiguration failed|Exiting|No available services"


class World:
    """The configuration being edited, and what the scenario holds open."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.record = os.path.join(workdir, "servers.record")
        self.incdir = os.path.join(workdir, "xinetd.d")
        os.mkdir(self.incdir)
        self.logs = [os.path.join(workdir, "services.log"),
                     os.path.join(workdir, "services2.log"),
                     os.path.join(workdir, "services3.log")]
        self.log = self.logs[0]
        self.ports: dict[str, int] = {}
        self.services: dict[str, dict[str, str]] = {}
        self.broken: set[str] = set()
        self.unclosed: set[str] = set()          # services whose `}` is missing
        self.defaults_extra: dict[str, str] = {}
        self.extra = os.path.join(workdir, "extra.conf")   # read through `include`
        self.extra_service: str | None = "incf"
        self.held: dict[str, socket.socket] = {}
        self.seen = {"program": 0, "record": 0, **{p: 0 for p in self.logs}}

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def external(self, name: str, mode: str = "stream", **attrs: str) -> dict[str, str]:
        body = {"type": "UNLISTED", "socket_type": "dgram" if mode == "dgram" else "stream",
                "wait": "no" if mode == "stream" else "yes", "user": "root",
                "bind": "127.0.0.1", "port": str(self.port(name)),
                "server": sys.executable,
                "server_args": f"-I -S {SERVER} {name} {self.record} {mode} "
                               f"{os.getpid()}"}
        body.update(attrs)
        return body

    def internal(self, name: str, builtin: str, socket_type: str, **attrs: str
                 ) -> dict[str, str]:
        body = {"id": name, "type": "INTERNAL UNLISTED", "socket_type": socket_type,
                "wait": "yes" if socket_type == "dgram" else "no", "user": "root",
                "bind": "127.0.0.1", "port": str(self.port(name)), "_name": builtin}
        body.update(attrs)
        return body

    @staticmethod
    def block(name: str, attrs: dict[str, str], bad: bool = False, unclosed: bool = False
              ) -> str:
        lines = "".join(f"\t{k} = {v}\n" for k, v in attrs.items() if not k.startswith("_"))
        if bad:
            lines += "\tthis line has no operator\n"
        return f"service {attrs.get('_name', name)}\n{{\n{lines}{'' if unclosed else '}'}\n"

    def write(self, conf: str) -> None:
        text = (f"defaults\n{{\n\tlog_type = FILE {self.log}\n"
                "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n"
                "\tcps = 0 0\n"
                + "".join(f"\t{k} = {v}\n" for k, v in self.defaults_extra.items()) + "}\n")
        for name, attrs in self.services.items():
            if name not in ("inc", "incf"):
                text += self.block(name, attrs, name in self.broken, name in self.unclosed)
        text += f"include {self.extra}\n"
        if "incf" in self.services:
            with open(self.extra + ".new", "w") as f:
                f.write(self.block("incf", self.services["incf"]))
            os.replace(self.extra + ".new", self.extra)
        elif os.path.exists(self.extra):
            os.unlink(self.extra)
        text += f"includedir {self.incdir}\n"
        inc = os.path.join(self.incdir, "incsvc")
        if "inc" in self.services:
            with open(inc + ".new", "w") as f:
                f.write(self.block("inc", self.services["inc"]))
            os.replace(inc + ".new", inc)
        elif os.path.exists(inc):
            os.unlink(inc)
        with open(conf + ".new", "w") as f:
            f.write(text)
        os.replace(conf + ".new", conf)


# --------------------------------------------------------------------------- clients


def connect(addr: str, port: int) -> socket.socket | str:
    try:
        return socket.create_connection((addr, port), timeout=2)
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error {exc.__class__.__name__}"


def read_reply(conn: socket.socket) -> str:
    conn.settimeout(ANSWER_WAIT)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                return f"answer {data.decode(errors='replace')!r} then closed" if data \
                    else "closed"
            data += chunk
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return f"answer {data.decode(errors='replace')!r}" if data else "silent"
    return f"answer {data.decode(errors='replace')!r}"


def probe_tcp(port: int, addr: str = "127.0.0.1") -> str:
    conn = connect(addr, port)
    if isinstance(conn, str):
        return conn
    with conn:
        try:
            conn.sendall(b"ping\n")
        except OSError:
            pass
        return read_reply(conn)


def probe_udp(port: int, addr: str = "127.0.0.1") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((addr, port))
        s.settimeout(ANSWER_WAIT)
        try:
            s.send(b"ping\n")
            return f"answer {s.recv(4096).decode(errors='replace')!r}"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "silent"


def hold(world: World, label: str, port: int, first: bytes = b"") -> str:
    """Connect a client that stays; its first answer."""
    conn = connect("127.0.0.1", port)
    if isinstance(conn, str):
        return conn
    if first:
        conn.sendall(first)
    world.held[label] = conn
    return read_reply(conn) if first or not label.startswith("discard") else "connected"


def held_status(conn: socket.socket) -> str:
    if not select.select([conn], [], [], 0)[0]:
        return "open"
    try:
        data = conn.recv(4096, socket.MSG_DONTWAIT)
    except ConnectionResetError:
        return "reset"
    except BlockingIOError:
        return "open"
    return "closed" if not data else f"data {data!r}"


# --------------------------------------------------------------------------- observing

_TIME = re.compile(r"^\d+/\d+/\d+@\d+:\d+:\d+:? (xinetd\[\d+\]: )?")
_PID = re.compile(r"\b(pid=|server |process |child process |PID )\d+")
_DURATION = re.compile(r"duration=\d+(\(sec\))?")
_DAEMON_PID = re.compile(r"(NOTICE|WARNING|ERROR|CRITICAL|INFO|DEBUG): \d+ ")


def normalise(world: World, line: str) -> str:
    line = _TIME.sub("", line)
    line = _DAEMON_PID.sub(r"\1: ", line)
    line = _PID.sub(r"\1PID", line)
    line = _DURATION.sub("duration=D", line)
    for name, port in sorted(world.ports.items(), key=lambda kv: -len(str(kv[1]))):
        line = re.sub(rf"\b{port}\b", f"<port {name}>", line)
    return line.replace(world.workdir, "WORKDIR")


def new_lines(world: World, key: str, path: str) -> list[str]:
    text = read(path)
    start = world.seen[key]
    end = text.rfind("\n") + 1
    world.seen[key] = max(start, end)
    return [normalise(world, line) for line in text[start:end].splitlines()]


def observe(world: World, program_log: str, probes: dict[str, object]
            ) -> dict[str, object]:
    held = {}
    for label, conn in list(world.held.items()):
        status = held_status(conn)
        if status != "open":
            held[label] = status
            conn.close()
            del world.held[label]
    records = sorted(" ".join(line.split()[:2])
                     for line in new_lines(world, "record", world.record))
    return {
        "probes": probes,
        "held clients ended": held,
        "servers noted": records,
        "program log": [line for line in new_lines(world, "program", program_log)
                        if "Starting reconfiguration" not in line],
        "service logs": {os.path.basename(p): new_lines(world, p, p) for p in world.logs},
    }


def alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(world: World, pids: Iterable[str]) -> None:
    """Until the processes have ended, been reaped and had their EXIT line logged (at
    most ENDING seconds: xinetd's forked builtins survive their SIGTERM)."""
    pending = list(pids)
    deadline = time.monotonic() + ENDING

    def logged() -> bool:
        text = "".join(read(path) for path in world.logs)
        return all(re.search(rf"EXIT: .* pid={pid}\b", text) for pid in pending)

    while time.monotonic() < deadline and (
            any(os.path.exists(f"/proc/{p}") for p in pending) or not logged()):
        time.sleep(0.01)
    time.sleep(SETTLE)


def servers_alive(world: World) -> list[str]:
    """The reload_diff_server.py processes still running, by tag."""
    alive = []
    for line in read(world.record).splitlines():
        tag, what, pid = line.split()
        if what != "start":
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(tag)
    return sorted(alive)


def stop_servers(world: World) -> None:
    """SIGKILL the servers still running (xinetd leaves its servers behind on SIGTERM)."""
    for line in read(world.record).splitlines():
        tag, what, pid = line.split()
        if what == "start" and tag in servers_alive(world):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------- the steps


def main() -> int:
    run = begin()
    os.environ["PYXINETD_KILL_GRACE"] = "0.5"
    world = World(os.path.dirname(run.conf))
    w = world
    svc = w.services
    svc["echo-stream"] = w.internal("echo-stream", "echo", "stream")
    svc["echo-dgram"] = w.internal("echo-dgram", "echo", "dgram")
    svc["flipsock"] = w.internal("flipsock", "discard", "stream")
    svc["redir"] = {"type": "UNLISTED", "socket_type": "stream", "wait": "no", "user": "root",
                    "bind": "127.0.0.1", "port": str(w.port("redir")),
                    "redirect": f"127.0.0.1 {w.port('echo-stream')}"}
    for name in ("keep", "rm", "ren", "mvport", "mvbind", "acl", "inst", "flipwait",
                 "syn", "dis", "inc", "incf", "unc", "dis2"):
        svc[name] = w.external(name)
    svc["swap1"] = w.external("swap1")
    svc["swap2"] = w.external("swap2", port=str(w.port("swap1")), bind="127.0.0.2")
    svc["acl"]["only_from"] = "127.0.0.1"
    svc["inst"]["instances"] = "3"
    svc["udpwait"] = w.external("udpwait", "dgram")
    w.write(run.conf)

    steps: list[tuple[str, dict[str, object]]] = []
    reloads = 0

    with running(run.daemon, run.conf, run.program_log, "-stayalive") as daemon:
        def step(name: str, probes: dict[str, object], before: object = None) -> None:
            nonlocal reloads
            w.write(run.conf)
            if callable(before):
                before()
            reloads += 1
            daemon.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(
                    re.findall(RELOAD_END, read(run.program_log))) < reloads:
                time.sleep(0.02)
            # The servers the reload signalled, then those the probes start, are
            # waited for, so that their lines are in this step's observation.
            signalled = re.findall(r"Sending signal \d+ to \S+ server (\d+)",
                                   read(run.program_log)[w.seen["program"]:])
            wait_gone(w, signalled)
            before_probes = len(read(w.record))
            done = {label: (probe() if callable(probe) else probe)
                    for label, probe in probes.items()}
            started = [line.split() for line in read(w.record)[before_probes:].splitlines()]
            wait_gone(w, (pid for tag, what, pid in started
                          if what == "start" and tag != "udpwait"))
            steps.append((name, observe(w, run.program_log, done)))

        p = w.ports
        start: dict[str, object] = {
            "echo-stream": hold(w, "echo-stream", p["echo-stream"], b"hi\n"),
            "redir": hold(w, "redir", p["redir"], b"hi\n"),
            "echo-dgram": probe_udp(p["echo-dgram"]),
            "discard": hold(w, "discard-flipsock", p["flipsock"]),
        }
        for name in ("keep", "rm", "ren", "mvport", "mvbind", "acl", "flipwait", "syn",
                     "dis", "inc", "incf", "unc", "dis2", "swap1"):
            start[name] = hold(w, name, p[name])
        conn = connect("127.0.0.2", p["swap1"])
        if not isinstance(conn, str):
            w.held["swap2"] = conn
            start["swap2"] = read_reply(conn)
        start["inst"] = hold(w, "inst-1", p["inst"])
        start["inst-2"] = hold(w, "inst-2", p["inst"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", p["udpwait"]))
            s.settimeout(2)
            s.send(b"hi\n")
            try:
                start["udpwait"] = s.recv(100).decode()
            except OSError as exc:
                start["udpwait"] = repr(exc)
        wait_for(w.record, r"udpwait start", time.monotonic() + 5)
        steps.append(("start", observe(w, run.program_log, start)))

        # SIGHUP with nothing changed.
        step("nothing changed", {"keep": lambda: probe_tcp(p["keep"])})

        del svc["rm"]
        step("service removed", {"rm": lambda: probe_tcp(p["rm"])})

        ren = svc.pop("ren")
        svc["ren2"] = dict(ren, server_args=ren["server_args"].replace(" ren ", " ren2 "))
        step("service renamed", {"ren port": lambda: probe_tcp(p["ren"])})

        svc["mvport"]["port"] = str(w.port("mvport-new"))
        step("port changed", {"old port": lambda: probe_tcp(p["mvport"]),
                              "new port": lambda: probe_tcp(p["mvport-new"])})

        svc["mvbind"]["bind"] = "127.0.0.2"
        step("bind changed", {"127.0.0.1": lambda: probe_tcp(p["mvbind"]),
                              "127.0.0.2": lambda: probe_tcp(p["mvbind"], "127.0.0.2")})

        svc["acl"]["only_from"] = "10.0.0.0/8"
        step("only_from excludes the client", {"acl": lambda: probe_tcp(p["acl"])})

        svc["inst"]["instances"] = "1"
        step("instances lowered", {"inst": lambda: probe_tcp(p["inst"])})

        svc["flipwait"]["wait"] = "yes"
        svc["flipwait"]["server_args"] = svc["flipwait"]["server_args"].replace(
            " stream", " wait")
        step("wait flipped", {"flipwait": lambda: probe_tcp(p["flipwait"])})

        svc["flipsock"]["socket_type"] = "dgram"
        step("socket_type flipped", {"tcp": lambda: probe_tcp(p["flipsock"]),
                                     "udp": lambda: probe_udp(p["flipsock"])})

        svc["added"] = w.external("added")
        step("service added", {"added": lambda: probe_tcp(p["added"])})

        del svc["inc"]
        step("include file removed", {"inc": lambda: probe_tcp(p["inc"])})

        w.broken.add("syn")
        step("syntax error", {"syn": lambda: probe_tcp(p["syn"]),
                              "keep": lambda: probe_tcp(p["keep"])})

        w.broken.discard("syn")
        step("syntax fixed", {"syn": lambda: probe_tcp(p["syn"])})

        svc["dis"]["disable"] = "yes"
        step("disabled", {"dis": lambda: probe_tcp(p["dis"])})

        svc["dis"]["disable"] = "no"
        step("enabled again", {"dis": lambda: probe_tcp(p["dis"])})

        svc["keep"]["server_args"] = svc["keep"]["server_args"].replace(" keep ", " keep2 ")
        step("server changed", {"keep": lambda: probe_tcp(p["keep"])})

        held_ren = hold(w, "ren2", p["ren"])
        svc["REN2"] = svc.pop("ren2")
        step("id changes case only", {"ren2 held": held_ren,
                                      "ren": lambda: probe_tcp(p["ren"])})

        svc["redir"]["redirect"] = f"127.0.0.1 {p['added']}"
        step("redirect target changed", {"redir": lambda: probe_tcp(p["redir"])})

        svc["udpwait"]["bind"] = "127.0.0.2"
        step("wait = yes dgram: bind changed",
             {"127.0.0.1": lambda: probe_udp(p["udpwait"]),
              "127.0.0.2": lambda: probe_udp(p["udpwait"], "127.0.0.2")})

        taken = socket.socket()
        taken.bind(("127.0.0.1", w.port("taken")))
        taken.listen()
        svc["taken"] = w.external("taken")
        step("new service's port in use", {"taken": "-"})
        taken.close()

        svc["udpwait"]["port"] = str(w.port("udpwait-new"))
        step("wait = yes dgram: port changed",
             {"old": lambda: probe_udp(p["udpwait"], "127.0.0.2"),
              "new": lambda: probe_udp(p["udpwait-new"], "127.0.0.2")})

        del svc["udpwait"]
        step("wait = yes dgram removed",
             {"new": lambda: probe_udp(p["udpwait-new"], "127.0.0.2")})

        svc["swap1"]["bind"], svc["swap2"]["bind"] = "127.0.0.2", "127.0.0.1"
        step("two services swap their bind addresses",
             {"127.0.0.1": lambda: probe_tcp(p["swap1"]),
              "127.0.0.2": lambda: probe_tcp(p["swap1"], "127.0.0.2")})

        del svc["incf"]
        step("file named by include removed", {"incf": lambda: probe_tcp(p["incf"])})

        w.unclosed.add("unc")
        step("a service's closing brace missing",
             {"unc": lambda: probe_tcp(p["unc"]),
              "next service": lambda: probe_tcp(p[list(svc)[list(svc).index("unc") + 1]])})
        w.unclosed.discard("unc")
        step("closing brace back", {"unc": lambda: probe_tcp(p["unc"])})

        w.defaults_extra["disabled"] = "dis2"
        step("defaults: disabled = ID", {"dis2": lambda: probe_tcp(p["dis2"])})
        del w.defaults_extra["disabled"]
        step("defaults: disabled removed", {"dis2": lambda: probe_tcp(p["dis2"])})

        del svc["mvbind"]["bind"]
        step("bind removed", {"127.0.0.1": lambda: probe_tcp(p["mvbind"]),
                              "127.0.0.2": lambda: probe_tcp(p["mvbind"], "127.0.0.2")})

        del svc["redir"]
        step("redirect removed", {"redir": lambda: probe_tcp(p["redir"])})

        svc["REN2"]["log_type"] = f"FILE {w.logs[2]}"
        step("a service's own log_type set", {"ren": lambda: probe_tcp(p["ren"])})

        held_wait = hold(w, "flipwait-w", p["flipwait"])
        svc["flipwait"]["server_args"] += " "
        step("wait = yes stream: server_args changed",
             {"held": held_wait, "flipwait": lambda: probe_tcp(p["flipwait"])})
        svc["flipwait"]["bind"] = "127.0.0.2"
        step("wait = yes stream: bind changed",
             {"127.0.0.2": lambda: probe_tcp(p["flipwait"], "127.0.0.2")})

        step("main file missing", {"keep": lambda: probe_tcp(p["keep"])},
             before=lambda: os.rename(run.conf, run.conf + ".away"))

        w.log = w.logs[1]
        step("defaults log_type changed", {"keep": lambda: probe_tcp(p["keep"])})

        svc["dis"]["log_type"] = f"FILE {os.path.join(w.workdir, 'missing', 'dis.log')}"
        step("a service's log file cannot be created", {"dis": lambda: probe_tcp(p["dis"])})

        # The survivors: clients still served, servers still running.
        final: dict[str, object] = {}
        for label in ("echo-stream", "redir"):
            session = w.held.get(label)
            if session is not None:
                try:
                    session.sendall(b"again\n")
                    final[label] = read_reply(session)
                except OSError as exc:
                    final[label] = repr(exc)
        final["servers alive"] = servers_alive(w)
        for tag in ("keep", "ren2"):
            client = w.held.pop(tag, None)
            if client is not None:
                client.close()
                wait_for(w.record, rf"{tag} eof", time.monotonic() + 5)
                wait_gone(w, (pid for t, what, pid in map(str.split, read(w.record).splitlines())
                          if t == tag and what == "eof"))
        steps.append(("end", observe(w, run.program_log, final)))

        # Last: xinetd exits here (reference §8.2 #9).
        w.defaults_extra["instances"] = "many"
        step("bad value in defaults", {"added": lambda: probe_tcp(p["added"])})
        for conn in w.held.values():
            conn.close()
    stop_servers(w)
    print(json.dumps({"steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
