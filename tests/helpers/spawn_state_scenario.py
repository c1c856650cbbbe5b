"""What an external server finds when it starts, under one daemon in a private network
namespace.

    unshare -n -m --propagation private python3 spawn_state_scenario.py WORKDIR DAEMON [ARG...]

Starts the daemon three times on the same configuration: in a plain state,
`perturbed` (umask 003, nice +2, SCHED_BATCH with reset-on-fork on CPU 0 only,
oom_score_adj 123, supplementary groups, a session of its own with a controlling
terminal, signals ignored (SIGCHLD, SIGTERM, SIGHUP and a real-time one among them)
and one blocked, lower RLIMIT_NOFILE/RLIMIT_STACK/RLIMIT_CORE, two extra descriptors
open without close-on-exec), and with descriptors 0-2 closed (a few services only).
Services behind tcpmux (port 1) are asked through it. Every service runs spawn_probe.py (or `/bin/cat /proc/self/status`,
whose signal masks Python cannot disturb) and is asked once per start. Prints one JSON
object: "START/SERVICE" -> the probe's report, with what differs between runs by
nature (ports, pids) replaced by names. Standard library only; every wait bounded.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from scenario_support import begin, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
# $SPAWN_PROBE: a copy the servers run as nobody can read wherever the checkout lies.
PROBE = os.environ.get("SPAWN_PROBE") or os.path.join(HERE, "spawn_probe.py")
# An interpreter that finds its library whatever argv[0] and the environment are.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# The switch between pyxinetd's spawn paths, from the test (xinetd ignores it).
EXTRA = os.environ.get("SCENARIO_EXTRA_ENV", "")

# Service name -> (socket, wait, protocol family of its bind, attribute lines).
PROBED = {
    "nowait-root": ("stream", "no", "4", "user = root"),
    "nowait-nobody": ("stream", "no", "4", "user = nobody"),
    "group": ("stream", "no", "4", "user = nobody\ngroup = daemon"),
    "groups-yes": ("stream", "no", "4", "user = spawnprobe\ngroups = yes"),
    "groups-no": ("stream", "no", "4", "user = spawnprobe\ngroups = no"),
    "groups-yes-group": ("stream", "no", "4", "user = spawnprobe\ngroup = daemon\ngroups = yes"),
    "groups-yes-nobody": ("stream", "no", "4", "user = nobody\ngroups = yes"),
    "groups-yes-root": ("stream", "no", "4", "user = root\ngroups = yes"),
    "numeric-groups": ("stream", "no", "4", "user = 4321\ngroups = yes"),
    "numeric-group": ("stream", "no", "4", "user = 4321\ngroup = 77"),
    "numeric-user": ("stream", "no", "4", "user = 4321"),
    "umask": ("stream", "no", "4", "user = nobody\numask = 077"),
    "umask-zero": ("stream", "no", "4", "user = root\numask = 0"),
    "nice": ("stream", "no", "4", "user = nobody\nnice = 5"),
    "nice-root": ("stream", "no", "4", "user = root\nnice = 3"),
    "limits": ("stream", "no", "4",
               "user = root\nrlimit_as = 2048M\nrlimit_cpu = 100\nrlimit_data = 1048576K\n"
               "rlimit_rss = 4096\nrlimit_stack = 4m\nrlimit_files = 64"),
    "limits-nobody": ("stream", "no", "4",
                      "user = nobody\nrlimit_as = 1500m\nrlimit_cpu = 7\n"
                      "rlimit_data = 800000k\nrlimit_rss = 1M\nrlimit_stack = 3M\n"
                      "rlimit_files = 100"),
    "limits-unlimited": ("stream", "no", "4",
                         "user = root\nrlimit_as = UNLIMITED\nrlimit_cpu = UNLIMITED\n"
                         "rlimit_data = UNLIMITED\nrlimit_rss = UNLIMITED"),
    "nameinargs": ("stream", "no", "4", "user = root\nflags = NAMEINARGS"),
    "nameinargs-late": ("stream", "no", "4", "user = root\nflags = NAMEINARGS"),
    "e-cpu-k": ("stream", "no", "4", "user = root\nrlimit_cpu = 2k"),
    "e-files-zero": ("stream", "no", "4", "user = root\nrlimit_files = 0"),
    "e-as-zero": ("stream", "no", "4", "user = root\nrlimit_as = 0"),
    "e-stack-g": ("stream", "no", "4", "user = root\nrlimit_stack = 1g"),
    "e-rss-hex": ("stream", "no", "4", "user = root\nrlimit_rss = 0x10"),
    "e-data-lower": ("stream", "no", "4", "user = root\nrlimit_data = unlimited"),
    "e-files-big": ("stream", "no", "4", "user = nobody\nrlimit_files = 30000"),
    "e-files-k": ("stream", "no", "4", "user = root\nrlimit_files = 1k"),
    "e-umask-777": ("stream", "no", "4", "user = root\numask = 0777"),
    "e-umask-8": ("stream", "no", "4", "user = root\numask = 8"),
    "e-umask-long": ("stream", "no", "4", "user = root\numask = 00027"),
    "e-nice-plus": ("stream", "no", "4", "user = root\nnice = +4"),
    "e-nice-40": ("stream", "no", "4", "user = root\nnice = 40"),
    "e-nice-m25": ("stream", "no", "4", "user = root\nnice = -25"),
    "e-cpu-m": ("stream", "no", "4", "user = root\nrlimit_cpu = 1M"),
    "quoting": ("stream", "no", "4", "user = root\nenv = LATIN=caf\udce9 UTF=\u00e9t\u00e9 E="),
    "wait-stream": ("stream", "yes", "4", "user = root"),
    "wait-stream-nobody": ("stream", "yes", "4", "user = nobody"),
    "wait-dgram": ("dgram", "yes", "4", "user = root"),
    "wait-dgram-nobody": ("dgram", "yes", "4", "user = nobody"),
    "ipv6": ("stream", "no", "6", "user = root"),
    "ipv6-flag": ("stream", "no", "46", "user = root"),
    "dual-stack": ("stream", "no", "any6", "user = root"),
    "wait-dgram-ipv6": ("dgram", "yes", "6", "user = nobody"),
    "keepalive": ("stream", "no", "4", "user = root\nflags = KEEPALIVE NODELAY"),
    "banner": ("stream", "no", "4", "user = nobody\nbanner_success = {BANNER}"),
    "userid": ("stream", "no", "4", "user = nobody\nlog_on_success = PID USERID\n"
               "log_type = FILE {SERVICES_LOG}"),
    "access": ("stream", "no", "4", "user = root\nonly_from = 127.0.0.0/8\n"
               "no_access = 10.0.0.1\naccess_times = 00:00-23:59"),
    # Documented deviations (docs/compatibility.md): nice and rlimits are set while
    # still root, and `rlimit_files = UNLIMITED` means the daemon's hard limit.
    "nice-negative": ("stream", "no", "4", "user = nobody\nnice = -3"),
    "raise-stack": ("stream", "no", "4", "user = nobody\nrlimit_stack = 32M"),
    "files-unlimited": ("stream", "no", "4", "user = root\nrlimit_files = UNLIMITED"),
}
ARGS = {
    "nameinargs": f"probe-name {PROBE} one",
    "nameinargs-late": f"late-name {PROBE} two",
    "quoting": f"{PROBE} 'a b' \"c d\" \\e f=g '' \"\" ${{HOME}} * ; caf\udce9 \u00e9t\u00e9"
               " a#b\t\ttab  two-spaces #c = += \\",
}
# What the daemon started with descriptors 0-2 closed is asked (its sockets land there).
CLOSED_START = ("nowait-nobody", "wait-stream", "wait-dgram", "wait-dgram-ipv6", "status-root")
# Reached through tcpmux (port 1): name -> type.
MUXED = {"mux-plus": "TCPMUXPLUS", "mux": "TCPMUX"}
# Read with /bin/cat: the exact signal state, nothing of Python's.
CAT = {"status-root": "user = root", "status-nobody": "user = nobody"}


def bind_line(family: str) -> str:
    return {"4": "bind = 127.0.0.1", "6": "bind = ::1", "any6": "bind = ::"}[family]


def configuration(ports: dict, workdir: str) -> str:
    banner = os.path.join(workdir, "banner")
    with open(banner, "w") as f:
        f.write("hello\n")
    places = {"{BANNER}": banner, "{SERVICES_LOG}": os.path.join(workdir, "services.log")}
    text = []
    for name, (kind, wait, family, extra) in PROBED.items():
        for mark, value in places.items():
            extra = extra.replace(mark, value)
        extras = extra.split("\n")
        # One `flags` line (a second would replace the first), ahead of `server_args`:
        # xinetd 2.3.15.3's child crashes when NAMEINARGS follows it.
        flags = [e.split("=", 1)[1].strip() for e in extras if e.startswith("flags")]
        extras = [e for e in extras if not e.startswith("flags")]
        if family == "46":
            flags.append("IPv6")
        flags_line = [f"flags = {' '.join(flags)}"] if flags else []
        late = name.endswith("-late")   # ... unless that crash is what is shown
        lines = [f"socket_type = {kind}", f"wait = {wait}", *([] if late else flags_line),
                 f"server = {PYTHON}", f"server_args = {ARGS.get(name, PROBE)}",
                 *(flags_line if late else []), f"port = {ports[name]}", *extras]
        lines += [] if family == "46" else [bind_line(family)]
        lines += ["protocol = udp"] if kind == "dgram" else []
        text.append(f"service {name}\n{{\n\ttype = UNLISTED\n"
                    + "".join(f"\t{line}\n" for line in lines) + "}\n")
    text.append("service tcpmux\n{\n\ttype = INTERNAL\n\tsocket_type = stream\n"
                "\twait = no\n\tuser = root\n\tbind = 127.0.0.1\n}\n")
    for name, kind in MUXED.items():
        text.append(f"service {name}\n{{\n\ttype = {kind} UNLISTED\n\tsocket_type = stream\n"
                    f"\twait = no\n\tuser = nobody\n\tserver = {PYTHON}\n"
                    f"\tserver_args = {PROBE}\n}}\n")
    for name, extra in CAT.items():
        text.append(f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                    f"\twait = no\n\tserver = /bin/cat\n\tserver_args = /proc/self/status\n"
                    f"\tbind = 127.0.0.1\n\tport = {ports[name]}\n\t{extra}\n}}\n")
    return "".join(text)


# The terminal the perturbed daemon has as its controlling terminal.
TERMINAL = {"name": ""}


def perturb() -> None:
    """Runs in the daemon's process before exec: the state it inherits."""
    import fcntl
    import termios
    os.setsid()
    tty = os.open(TERMINAL["name"], os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(tty, termios.TIOCSCTTY, 0)
    os.umask(0o003)
    os.nice(2)
    os.setgroups([1, 2, 4402])
    os.sched_setscheduler(0, os.SCHED_BATCH | os.SCHED_RESET_ON_FORK, os.sched_param(0))
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("123")
    os.sched_setaffinity(0, {0})
    for sig in (signal.SIGURG, signal.SIGPROF, signal.SIGTTOU, signal.SIGRTMIN + 6,
                signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})
    import resource
    # A descriptor above the limits the daemon is started with, without close-on-exec.
    high = os.open("/dev/null", os.O_RDONLY)
    os.dup2(high, 5000)
    os.close(high)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))
    resource.setrlimit(resource.RLIMIT_STACK, (6 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 1 << 20))


def ask_mux(name: str) -> bytes:
    with socket.create_connection(("127.0.0.1", 1), timeout=10) as s:
        s.settimeout(10)
        s.sendall(name.encode() + b"\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    # What comes before the report: `+Go` from the daemon for TCPMUXPLUS (xinetd's
    # with a NUL); kept in the report's "before" field.
    return data


def ask(family: str, kind: str, port: int) -> dict:
    host = "::1" if family == "6" else "127.0.0.1"
    af = socket.AF_INET6 if family == "6" else socket.AF_INET
    if kind == "dgram":
        with socket.socket(af, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.sendto(b"go", (host, port))
            data = s.recv(65536)
    else:
        with socket.socket(af, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect((host, port))
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            data = b"".join(chunks)
    return {"client_port": s_port(s), "data": data}


def s_port(s: socket.socket) -> int:
    try:
        return int(s.getsockname()[1])
    except OSError:
        return -1


def normalise(report: dict, daemon_pid: int, port: int) -> dict:
    pid = report.pop("pid")
    report["ppid"] = "daemon" if report["ppid"] == daemon_pid else "other"
    report["sid"] = "self" if report["sid"] == pid else "other"
    report["pgid"] = "self" if report["pgid"] == pid else "other"
    for fd in report["fds"].values():
        for end in ("local", "peer"):
            address = fd.get(end)
            if isinstance(address, list) and len(address) == 2 and address[1]:
                address[1] = "PORT" if address[1] == port else "CLIENT"
        if "target" in fd:
            fd["target"] = re.sub(r"\[\d+\]", "[N]", fd["target"])
    return report


def status_report(text: str) -> dict:
    keep = ("Umask", "Uid", "Gid", "Groups", "SigBlk", "SigIgn", "SigCgt", "CapInh",
            "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
            "Cpus_allowed_list")
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in keep:
            fields[key] = " ".join(value.split())
    return fields


# An account with supplementary groups, added to copies of /etc/passwd and /etc/group
# mounted over the real ones (the scenario has its own mount namespace).
ACCOUNT = ("spawnprobe:x:4400:4400::/nonexistent:/usr/sbin/nologin\n",
           "spawnprobe:x:4400:\nspawnextra:x:4401:spawnprobe\nspawnmore:x:4402:nobody,spawnprobe\n")


def add_account(workdir: str) -> None:
    for path, lines in zip(("/etc/passwd", "/etc/group"), ACCOUNT):
        copy = os.path.join(workdir, os.path.basename(path))
        with open(path) as f:
            text = f.read()
        with open(copy, "w") as f:
            f.write(text + ("" if text.endswith("\n") else "\n") + lines)
        os.chmod(copy, 0o644)
        subprocess.run(["mount", "--bind", copy, path], check=True)


def distinct_ports(names: list) -> dict:
    """A free port per service, all different (each held until all are chosen)."""
    held = []
    for _ in names:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
    ports = {name: s.getsockname()[1] for name, s in zip(names, held)}
    for s in held:
        s.close()
    return ports


def close_standard() -> None:
    """A daemon started with descriptors 0-2 closed."""
    for fd in (0, 1, 2):
        os.close(fd)


def start(run, conf: str, log: str, state: str, extra_fds: list) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    if EXTRA:
        env[EXTRA.partition("=")[0]] = EXTRA.partition("=")[2]
    return subprocess.Popen([*run.daemon, "-f", conf, "-dontfork", "-filelog", log],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env,
                            preexec_fn={"perturbed": perturb, "closed": close_standard,
                                        }.get(state),
                            pass_fds=extra_fds)


def main() -> int:
    run = begin()
    add_account(os.path.dirname(run.conf))
    names = [*PROBED, *CAT]
    ports = distinct_ports(names)
    with open(run.conf, "w", errors="surrogateescape") as f:
        f.write(configuration(ports, os.path.dirname(run.conf)))
    result = {}
    for n, state in enumerate(("plain", "perturbed", "closed")):
        log = f"{run.program_log}.{n}"
        extra_fds = []
        if state == "perturbed":
            # Two descriptors the daemon inherits: a file and a socket.
            held = [os.open("/dev/null", os.O_WRONLY | os.O_APPEND), socket.socket()]
            terminal, slave = os.openpty()
            TERMINAL["name"] = os.ttyname(slave)
            os.close(slave)
            extra_fds = [held[0], held[1].fileno()]
            for fd in extra_fds:
                os.set_inheritable(fd, True)
        proc = start(run, run.conf, log, state, extra_fds)
        try:
            if not wait_for(log, "Started working", time.monotonic() + 20):
                raise SystemExit(f"the daemon did not start: {open(log).read()!r}")
            for name in () if state == "closed" else MUXED:
                try:
                    data = ask_mux(name)
                except OSError as exc:
                    result[f"{state}/{name}"] = {"error": str(exc)}
                    continue
                before, brace, rest = data.partition(b"{")
                try:
                    report = json.loads(brace + rest)
                except ValueError:
                    result[f"{state}/{name}"] = {"unreadable": data.decode("latin-1")}
                    continue
                report = normalise(report, proc.pid, 1)
                report["before"] = before.decode("latin-1")
                result[f"{state}/{name}"] = report
            for name in CLOSED_START if state == "closed" else names:
                kind, _, family, _ = PROBED.get(name, ("stream", "no", "4", ""))
                try:
                    got = ask(family, kind, ports[name])
                except OSError as exc:
                    result[f"{state}/{name}"] = {"error": str(exc)}
                    continue
                data = got["data"]
                if name in CAT:
                    result[f"{state}/{name}"] = status_report(data.decode())
                    continue
                if name == "banner" and data.startswith(b"hello\n"):
                    data = data[len(b"hello\n"):]
                try:
                    report = json.loads(data)
                except ValueError:
                    result[f"{state}/{name}"] = {"unreadable": data.decode("latin-1")}
                    continue
                result[f"{state}/{name}"] = normalise(report, proc.pid, ports[name])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if state == "perturbed":
                os.close(held[0])
                held[1].close()
                os.close(terminal)
        with open(log, errors="replace") as f:
            result[f"{state}/log"] = [re.sub(r"^\d\d/\d\d/\d\d@\d\d:\d\d:\d\d ", "", line)
                                      for line in f.read().splitlines()]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
