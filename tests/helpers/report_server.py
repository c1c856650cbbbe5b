"""A server that reports, as one JSON object on fd 1, the process state it was started in.

Started by the spawner with a connection on fds 0-2, it writes uid/gid (real,
effective, saved), supplementary groups, umask, nice, every rlimit, the environment,
argv (from /proc/self/cmdline, so argv[0] is exactly what the spawner passed), open
descriptors, the blocked/ignored signal masks, capabilities, session and process group,
and what fds 0-2 are, then exits 0.

Python itself ignores SIGPIPE and SIGXFSZ at start-up, so the SigIgn bits of those two
signals say nothing about the spawner; tests read them from a shell probe instead.
Standard library only: it may run as nobody under /usr/bin/python3.
"""

import json
import os
import resource
import stat
import sys

LIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA,
    "rss": resource.RLIMIT_RSS,
    "stack": resource.RLIMIT_STACK,
    "files": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
    "nproc": resource.RLIMIT_NPROC,
}


def status_fields():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def describe_fd(fd):
    try:
        st = os.fstat(fd)
    except OSError as err:
        return {"error": err.errno}
    kind = "socket" if stat.S_ISSOCK(st.st_mode) else "other"
    info = {"kind": kind, "ino": st.st_ino, "dev": st.st_dev}
    if kind == "socket":
        info.update(socket_options(fd))
    return info


def socket_options(fd):
    """SO_KEEPALIVE and, on a TCP socket, TCP_NODELAY (flags KEEPALIVE, NODELAY)."""
    try:
        import socket
    except ImportError:     # an interpreter started without its lib-dynload
        return {}
    sock = socket.socket(fileno=fd)
    try:
        options = {"keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
        if sock.type == socket.SOCK_STREAM and sock.family != socket.AF_UNIX:
            options["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        return options
    except OSError as err:
        return {"sockopt_error": err.errno}
    finally:
        sock.detach()


def main():
    # Listed first, before this process opens anything else; the listing's own
    # descriptor shows up in it and is removed by checking which ones still exist.
    listed = [int(n) for n in os.listdir("/proc/self/fd")]
    fds = []
    for fd in sorted(listed):
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append(fd)
    status = status_fields()
    with open("/proc/self/cmdline", "rb") as f:
        argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
    report = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "uid": list(os.getresuid()),
        "gid": list(os.getresgid()),
        "groups": sorted(os.getgroups()),
        "umask": int(status["Umask"], 8),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "rlimits": {name: list(resource.getrlimit(res)) for name, res in LIMITS.items()},
        "environ": dict(os.environ),
        "argv": argv,
        "fds": fds,
        "fd_info": {str(fd): describe_fd(fd) for fd in (0, 1, 2)},
        "sigblk": int(status["SigBlk"], 16),
        "sigign": int(status["SigIgn"], 16),
        "cap_eff": int(status["CapEff"], 16),
        "cap_prm": int(status["CapPrm"], 16),
    }
    data = json.dumps(report).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    return 0


if __name__ == "__main__":
    sys.exit(main())
