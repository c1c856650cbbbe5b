"""A server that reports the process state it found at exec, as one JSON object.

    spawn_probe.py [ARG...]          (any argv: it is part of the report)

Everything is read before the probe opens anything of its own: ids (real, effective,
saved), supplementary groups, umask, nice, scheduling policy, CPU affinity, every
rlimit, cwd, session, process group, controlling terminal, parent, argv and comm,
capabilities, the signal masks, and every open descriptor (kind; for a socket its
family, type, addresses, whether it listens and a few options; status and
close-on-exec flags). Then it answers on descriptor 0: a stream socket gets the report
written to it (a listening one, as a `wait = yes` server, accepts one client first), a
datagram socket sends it to the sender of the first datagram.

Python ignores SIGPIPE and SIGXFSZ at start-up and installs a SIGINT handler where
SIGINT was at its default, so those bits of SigIgn/SigCgt describe Python, not the
spawner: the scenario reads the exact masks from `/bin/cat /proc/self/status`.
Standard library only (it runs as nobody under /usr/bin/python3).
"""

import fcntl
import json
import os
import resource
import socket
import stat
import sys

LIMITS = {name[len("RLIMIT_"):].lower(): getattr(resource, name) for name in dir(resource)
          if name.startswith("RLIMIT_") and name != "RLIMIT_OFILE"}
FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}
TYPES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram"}
OPTIONS = {"reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR),
           "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
           "acceptconn": (socket.SOL_SOCKET, socket.SO_ACCEPTCONN)}
STATUS_FLAGS = {"nonblock": os.O_NONBLOCK, "append": os.O_APPEND, "async": fcntl.FASYNC}


def status_fields():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def describe_socket(fd):
    sock = socket.socket(fileno=fd)
    try:
        info = {"family": FAMILIES.get(sock.family, str(sock.family)),
                "type": TYPES.get(sock.type, str(sock.type))}
        try:
            info["local"] = list(sock.getsockname())[:2]
        except OSError as err:
            info["local"] = err.errno
        try:
            info["peer"] = list(sock.getpeername())[:2]
        except OSError as err:
            info["peer"] = err.errno
        for name, (level, option) in OPTIONS.items():
            info[name] = sock.getsockopt(level, option)
        if sock.family == socket.AF_INET6:
            info["v6only"] = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        if sock.type == socket.SOCK_STREAM and sock.family != socket.AF_UNIX:
            info["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        return info
    finally:
        sock.detach()


def describe_fd(fd):
    st = os.fstat(fd)
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    info = {"access": flags & os.O_ACCMODE,
            "cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)}
    info.update({name: bool(flags & bit) for name, bit in STATUS_FLAGS.items()})
    if stat.S_ISSOCK(st.st_mode):
        info["kind"] = "socket"
        info.update(describe_socket(fd))
    else:
        info["kind"] = stat.filemode(st.st_mode)[0]
        info["target"] = os.readlink(f"/proc/self/fd/{fd}")
    return info


def open_descriptors():
    # The listing's own descriptor is in it; it is gone (EBADF) once listed.
    found = {}
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
        try:
            found[str(fd)] = describe_fd(fd)
        except OSError:
            continue
    return found


def controlling_terminal():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[4])   # tty_nr: 0 when there is none


def read_first(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        return f"error {err.errno}"


def sched_slice():
    """The EEVDF time slice (Linux 6.6+), where /proc shows it."""
    text = read_first("/proc/self/sched")
    for line in text.splitlines():
        if line.startswith("se.slice"):
            return line.split(":")[1].strip()
    return None


def io_priority():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(252, 1, 0)   # ioprio_get(IOPRIO_WHO_PROCESS, self), x86-64


def process_controls():
    """prctl(2) settings a spawner could leave behind (linux/prctl.h numbers)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    found = {name: libc.prctl(option, 0, 0, 0, 0) for name, option in
             (("dumpable", 3), ("keepcaps", 7), ("securebits", 27), ("thp_disable", 42))}
    for name, option in (("pdeathsig", 2), ("child_subreaper", 37)):
        value = ctypes.c_int(-1)
        libc.prctl(option, ctypes.byref(value), 0, 0, 0)
        found[name] = value.value
    return found


def report():
    fds = open_descriptors()
    status = status_fields()
    with open("/proc/self/cmdline", "rb") as f:
        argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
    with open("/proc/self/comm") as f:
        comm = f.read().rstrip("\n")
    pid = os.getpid()
    return {
        "pid": pid, "ppid": os.getppid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
        "tty": controlling_terminal(),
        "uid": list(os.getresuid()), "gid": list(os.getresgid()),
        "groups": sorted(os.getgroups()),
        "umask": status["Umask"],
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "policy": os.sched_getscheduler(0),
        "affinity": sorted(os.sched_getaffinity(0)),
        "rlimits": {name: list(resource.getrlimit(res)) for name, res in LIMITS.items()},
        "cwd": os.getcwd(),
        "argv": argv, "comm": comm,
        "fds": fds,
        "sigblk": status["SigBlk"], "sigign": status["SigIgn"], "sigcgt": status["SigCgt"],
        "caps": {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
        "no_new_privs": status.get("NoNewPrivs"),
        "seccomp": status.get("Seccomp"),
        "oom_score_adj": read_first("/proc/self/oom_score_adj"),
        "timerslack_ns": read_first("/proc/self/timerslack_ns"),
        "slice": sched_slice(),
        "ioprio": io_priority() if os.uname().machine == "x86_64" else None,
        "prctl": process_controls(),
        # In order; pyxinetd's spawn path switch is the test's, not the spawner's.
        "environ": [f"{k}={v}" for k, v in os.environ.items()
                    if k != "PYXINETD_NATIVE_SPAWN"],
        "personality": read_first("/proc/self/personality"),
        "coredump_filter": read_first("/proc/self/coredump_filter"),
        "loginuid": read_first("/proc/self/loginuid"),
    }


def main():
    data = json.dumps(report()).encode()
    sock = socket.socket(fileno=0)
    if sock.type == socket.SOCK_DGRAM:
        sock.settimeout(10)
        _, sender = sock.recvfrom(65536)
        sock.sendto(data, sender)
        return 0
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.settimeout(10)
        sock, _ = sock.accept()
    sock.setblocking(True)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
