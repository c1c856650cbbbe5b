"""RPC services against a real portmapper (Debian's rpcbind), with pyxinetd or xinetd.

Run inside private network and mount namespaces (it sets them up itself):

    unshare -n -m --propagation private python3 rpc_scenario.py --workdir DIR \
        --rpcbind PATH [--xinetd PATH] [--no-rpcbind | --more [--first-steps]]

Brings `lo` up, puts a tmpfs on /run (rpcbind's socket, lock and state folder, and
xinetd's dump file live there), adds rpcbind's `_rpc` account to a private copy of
/etc/passwd when the host has none, and starts `rpcbind -f` (unless --no-rpcbind).
Then it writes a configuration with two RPC services and one plain service, starts the
daemon (pyxinetd, or the real xinetd with --xinetd) with -dontfork -filelog, and:

1. reads the portmapper's table (PMAPPROC_DUMP) once the daemon has started;
2. talks to each RPC server through the port registered for it;
3. sends SIGUSR1 and keeps the dump's `RPC data` blocks;
4. removes the dgram RPC service from the configuration, sends SIGHUP, reads the table;
5. sends SIGTERM, waits for the exit, reads the table.

With --no-rpcbind it only starts the daemon, talks to the plain service and stops.

With --more the configuration is another one (more_configuration()): two services
sharing one program number (one udp, one tcp), a tcp service with a low cps limit, a
tcp service bound to 127.0.0.1 and a tcp service with `port = FIXED_PORT`. The steps
are then:

1. reads the table once the daemon has started;
2. talks to the bound service at its registered port on 127.0.0.1, and tries the same
   port on 127.0.0.2 (refused when the socket is bound to 127.0.0.1 only); talks to
   FIXED_PORT;
3. connects to the cps service until it is deactivated, reads the table while its
   socket is closed, then again once it is reactivated, and talks to it there;
4. removes the udp service of the shared program, sends SIGHUP and reads the table
   once the tcp one's versions are back (or after a few seconds);
5. sends SIGTERM, waits for the exit, reads the table.
With --first-steps it stops after step 2 (steps 3 and 4 wait seconds for timers).

With --wide the configuration is one dgram RPC service with `rpc_version = 1-1000`
(WIDE_PROGRAM) and the plain service: the table is read once the daemon has started
(`started`), with the number of datagrams the namespace's UDP sockets dropped for a
full receive buffer until then (`dropped`), and after SIGTERM (`terminated`).
With --overlap the configuration is overlap_configuration(): two tcp services of
OVERLAP_PROGRAM, versions 1-2 on 127.0.0.1 then 2-3 on 127.0.0.2, and two of
HELD_PROGRAM, version 1 on each address. The table is read once the daemon has started
(`started`), the second service is asked at the port of version 3 on 127.0.0.2
(`later_answer`); then a reload removes both first services, and the table is read once
the later ones hold the whole of their ranges, or after a few seconds (`reloaded`);
a reload adds the first services back, and the table is read once the first one's
version 1 is registered, or after a few seconds (`restored`, with the lines logged
from that reload on: `restored_log`); then SIGTERM (`terminated`).
When the namespace or rpcbind cannot be set up it prints {"skip": reason}.
It prints one JSON object; the caller compares (programs, versions, protocols).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyxinetd.portmap import PMAPPROC_DUMP, decode_dump, decode_reply, encode_call

HERE = Path(__file__).resolve().parent
DEADLINE = 30.0
UDP_PROGRAM = 0x20000111
TCP_PROGRAM = 0x20000112
PLAIN_PORT = 7311


def service_text(name: str, body: str) -> str:
    return f"service {name}\n{{\n{body}}}\n"


def configuration(with_udp: bool) -> str:
    py = sys.executable
    udp = service_text("rpcudp", f"""\
\ttype = RPC UNLISTED
\trpc_number = {UDP_PROGRAM}
\trpc_version = 1-3
\tsocket_type = dgram
\tprotocol = udp
\twait = yes
\tuser = root
\tflags = IPv4
\tserver = {py}
\tserver_args = {HERE / 'rpc_udp_server.py'}
""")
    tcp = service_text("rpctcp", f"""\
\ttype = RPC UNLISTED
\trpc_number = {TCP_PROGRAM}
\trpc_version = 2
\tsocket_type = stream
\tprotocol = tcp
\twait = no
\tuser = root
\tflags = IPv4
\tserver = {py}
\tserver_args = {HERE / 'rpc_tcp_server.py'}
""")
    return (udp if with_udp else "") + tcp + plain_service()


def plain_service() -> str:
    """A tcp service that is not RPC, at PLAIN_PORT."""
    return service_text("plain", f"""\
\ttype = UNLISTED
\tsocket_type = stream
\tprotocol = tcp
\tport = {PLAIN_PORT}
\twait = no
\tuser = root
\tflags = IPv4
\tserver = {sys.executable}
\tserver_args = {HERE / 'rpc_tcp_server.py'}
""")


SHARED_PROGRAM = 0x20000113
CPS_PROGRAM = 0x20000114
BOUND_PROGRAM = 0x20000115
FIXED_PROGRAM = 0x20000116
# The fixed service's port: the scenario runs in a network namespace of its own, where
# nothing else listens.
FIXED_PORT = 4711
CPS_WAIT = 2
SERVICES_PORT = 7312


def rpc_service(name: str, program: int, versions: str, protocol: str,
                extra: str = "") -> str:
    py = sys.executable
    if protocol == "udp":
        kind, server = "socket_type = dgram\n\twait = yes", "rpc_udp_server.py"
    else:
        kind, server = "socket_type = stream\n\twait = no", "rpc_tcp_server.py"
    return service_text(name, f"""\
\ttype = RPC UNLISTED
\trpc_number = {program}
\trpc_version = {versions}
\t{kind}
\tprotocol = {protocol}
\tuser = root
\tflags = IPv4
{extra}\tserver = {py}
\tserver_args = {HERE / server}
""")


def more_configuration(with_shared_udp: bool) -> str:
    shared_udp = rpc_service("shareudp", SHARED_PROGRAM, "1-2", "udp")
    shared_tcp = rpc_service("sharetcp", SHARED_PROGRAM, "1-2", "tcp")
    cps = rpc_service("cpstcp", CPS_PROGRAM, "1", "tcp", f"\tcps = 1 {CPS_WAIT}\n")
    bound = rpc_service("boundtcp", BOUND_PROGRAM, "1", "tcp", "\tbind = 127.0.0.1\n")
    fixed = rpc_service("fixedtcp", FIXED_PROGRAM, "1", "tcp", f"\tport = {FIXED_PORT}\n")
    # pyxinetd's `services` builtin (xinetd 2.3.15 has none and disables it).
    listing = service_text("services", f"""\
\ttype = INTERNAL UNLISTED
\tsocket_type = stream
\tprotocol = tcp
\twait = no
\tuser = root
\tflags = IPv4
\tport = {SERVICES_PORT}
""")
    return ((shared_udp if with_shared_udp else "") + shared_tcp + cps + bound + fixed
            + listing)


WIDE_PROGRAM = 0x2000011E
OVERLAP_PROGRAM = 0x2000011F
HELD_PROGRAM = 0x20000120


def overlap_configuration(with_first: bool) -> str:
    """Services of one program and protocol whose version ranges overlap, on different
    addresses: a later one whose range reaches beyond the earlier's, and one whose
    range the earlier holds whole. Without `with_first`, only the later ones."""
    first = (rpc_service("early", OVERLAP_PROGRAM, "1-2", "tcp", "\tbind = 127.0.0.1\n")
             + rpc_service("heldfirst", HELD_PROGRAM, "1", "tcp", "\tbind = 127.0.0.1\n"))
    later = (rpc_service("later", OVERLAP_PROGRAM, "2-3", "tcp", "\tbind = 127.0.0.2\n")
             + rpc_service("heldlater", HELD_PROGRAM, "1", "tcp", "\tbind = 127.0.0.2\n"))
    return (first if with_first else "") + later + plain_service()


def overlap_steps(result: dict[str, object], daemon: subprocess.Popen[bytes], conf: Path,
                  log: Path, deadline: float) -> None:
    """The steps of --overlap (see the module docstring)."""
    table = portmap_table()
    result["started"] = table
    version_3 = [row for row in rows(table, OVERLAP_PROGRAM) if row[1] == 3]
    result["later_answer"] = (talk_tcp(version_3[0][3], "127.0.0.2") if version_3
                              else "not registered")
    conf.write_text(overlap_configuration(False))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reconfigured" in read(log), "Reconfigured", deadline)

    def whole(t: list[list[int]] | str) -> bool:
        return (len(rows(t, OVERLAP_PROGRAM)) == 2 and len(rows(t, HELD_PROGRAM)) == 1
                and 1 not in [row[1] for row in rows(t, OVERLAP_PROGRAM)])
    result["reloaded"] = settle(whole, 5.0)
    conf.write_text(overlap_configuration(True))
    log_size = len(read(log))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reconfigured" in read(log)[log_size:], "Reconfigured", deadline)

    def early_back(t: list[list[int]] | str) -> bool:
        return 1 in [row[1] for row in rows(t, OVERLAP_PROGRAM)]
    result["restored"] = settle(early_back, 5.0)
    result["restored_log"] = read(log)[log_size:]
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=max(1.0, deadline - time.monotonic()))
    result["terminated"] = portmap_table()


def wide_configuration() -> str:
    return rpc_service("wide", WIDE_PROGRAM, "1-1000", "udp") + plain_service()


def wait_for(predicate, what: str, deadline: float) -> None:  # type: ignore[no-untyped-def]
    delay = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def start_daemon(argv: list[str], conf: Path, log: Path, err: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`argv` (a daemon's command) on `conf` with -dontfork and -filelog `log`, in a
    session of its own, its standard output and error in `err`."""
    with open(err, "wb") as out:
        return subprocess.Popen([*argv, "-dontfork", "-f", str(conf), "-filelog", str(log)],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)


def wait_started(daemon: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    """Until the daemon logged `Started working`, or exited."""
    wait_for(lambda: "Started working" in read(log) or daemon.poll() is not None,
             "Started working", deadline)


def portmap_table(tcp: bool = False) -> list[list[int]] | str:
    """[program, version, protocol, port] rows other than the portmapper's own. Over
    tcp for a table larger than rpcbind's UDP replies (8,800 bytes: about 400 rows)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    try:
        sock.connect(("127.0.0.1", 111))
        if tcp:
            _, body = decode_reply(dump_over_tcp(sock))
        else:
            sock.send(encode_call(4242, PMAPPROC_DUMP))
            _, body = decode_reply(sock.recv(65536))
    except OSError as err:
        return f"error: {err}"
    finally:
        sock.close()
    return sorted([m.program, m.version, m.protocol, m.port]
                  for m in decode_dump(body) if m.program != 100000)


def dump_over_tcp(sock: socket.socket) -> bytes:
    """The reply to a DUMP call over a connected tcp socket (RFC 5531 record marking:
    each fragment after a word of its length, the top bit set on the last one)."""
    message = encode_call(4242, PMAPPROC_DUMP)
    sock.sendall(struct.pack(">I", 0x80000000 | len(message)) + message)
    data = b""
    buffer = b""
    last = False
    while not last:
        while len(buffer) < 4:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the portmapper closed the connection")
            buffer += chunk
        (header,) = struct.unpack(">I", buffer[:4])
        last, length = bool(header & 0x80000000), header & 0x7FFFFFFF
        while len(buffer) < 4 + length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the portmapper closed the connection")
            buffer += chunk
        data += buffer[4:4 + length]
        buffer = buffer[4 + length:]
    return data


def udp_receive_buffer_errors() -> int:
    """The datagrams dropped in this network namespace because a socket's receive
    buffer was full (Udp RcvbufErrors in /proc/net/snmp)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def talk_udp(port: int) -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    try:
        sock.sendto(b"ping", ("127.0.0.1", port))
        return sock.recv(4096).decode(errors="replace")
    except OSError as err:
        return f"error: {err}"
    finally:
        sock.close()


def settle(predicate, timeout: float) -> list[list[int]] | str:  # type: ignore[no-untyped-def]
    """The table once predicate(table) holds, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        table = portmap_table()
        if predicate(table) or time.monotonic() > deadline:
            return table
        time.sleep(0.02)


def rows(table: list[list[int]] | str, program: int) -> list[list[int]]:
    return [row for row in table if row[0] == program] if isinstance(table, list) else []


def fake_portmapper_run(cases: bool = True) -> tuple[Path, str, list[str], Path, Path]:
    """The start of a fake-portmapper scenario run as `SCRIPT DIR [CASE] [DAEMON
    ARGV...]`, once `lo` is up: DIR, CASE ("" without `cases`), the daemon's argv
    (pyxinetd by default), and the paths of its configuration and log in DIR."""
    work = Path(sys.argv[1])
    case = sys.argv[2] if cases else ""
    argv = sys.argv[3 if cases else 2:] or [sys.executable, "-m", "pyxinetd"]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return work, case, argv, work / "rpc.conf", work / "daemon.log"


@contextmanager
def reported(result: dict[str, object], daemon: subprocess.Popen[bytes],
             portmapper: Any, log: Path, err: Path) -> Iterator[None]:
    """The steps of a fake-portmapper scenario (tests/helpers/fake_portmapper.py): one
    that stops them (a wait given up on, a failed check, a timeout) is `error` in
    `result`. Then the daemon is killed if still there, the portmapper closed, and
    `result` printed as one JSON object with the table and calls the portmapper was
    left with, the daemon's exit status and its log."""
    try:
        yield
    except (SystemExit, AssertionError, RuntimeError, subprocess.TimeoutExpired) as stop:
        result["error"] = f"{type(stop).__name__}: {stop}"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
        portmapper.close()
        calls, _, table = portmapper.snapshot()
        result["table"] = table
        result["calls"] = calls
        result["returncode"] = daemon.returncode
        result["log"] = read(log) + read(err)
        print(json.dumps(result))


def settle_and_ask(result: dict[str, object], portmapper: Any, program: int,
                   expected: list[tuple[int, int, int]], what: str) -> None:
    """Once the fake portmapper's rows of `program` are the (program, version,
    protocol) triples `expected` (or after 10 s), its table as `settled` in `result`,
    and as `answer` what a client gets at the one port those rows name."""
    def settled() -> bool:
        table = portmapper.snapshot()[2]
        return [m[:3] for m in table if m[0] == program] == expected
    try:
        wait_for(settled, what, time.monotonic() + 10.0)
    except SystemExit:
        pass        # the table shows what is wrong
    table = portmapper.snapshot()[2]
    result["settled"] = table
    ports = {m[3] for m in table if m[0] == program}
    result["answer"] = talk_tcp(ports.pop()) if len(ports) == 1 else "no single port"


def talk_tcp(port: int, host: str = "127.0.0.1") -> str:
    try:
        with socket.create_connection((host, port), timeout=5.0) as sock:
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError as err:
        return f"error: {err}"


def rpc_data(dump: str) -> list[str]:
    """The `RPC data` lines of each service block, tabs kept."""
    out: list[str] = []
    lines = dump.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "RPC data":
            out += lines[i:i + 3]
    return out


def setup_namespace(workdir: Path, rpcbind: str | None) -> subprocess.Popen[bytes] | None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    os.makedirs("/run/rpcbind", exist_ok=True)
    passwd = Path("/etc/passwd").read_text()
    if not any(line.startswith("_rpc:") for line in passwd.splitlines()):
        private = workdir / "passwd"
        private.write_text(passwd.rstrip("\n") + "\n_rpc:x:64999:65534::/run/rpcbind:"
                           "/usr/sbin/nologin\n")
        subprocess.run(["mount", "--bind", str(private), "/etc/passwd"], check=True)
    if rpcbind is None:
        return None
    with open(workdir / "rpcbind.err", "wb") as err:
        proc = subprocess.Popen([rpcbind, "-f"], stdin=subprocess.DEVNULL, stdout=err,
                                stderr=err)
    deadline = time.monotonic() + DEADLINE
    try:
        wait_for(lambda: not isinstance(portmap_table(), str) or proc.poll() is not None,
                 "rpcbind", deadline)
    except SystemExit:
        proc.kill()
        proc.wait(timeout=10)
        raise
    if proc.poll() is not None:
        raise SystemExit(f"rpcbind exited: {read(workdir / 'rpcbind.err')}")
    return proc


def more_steps(result: dict[str, object], daemon: subprocess.Popen[bytes], conf: Path,
               log: Path, deadline: float, first_only: bool) -> None:
    """Steps 1-5 of --more, or 1-2 when `first_only` (see the module docstring)."""
    table = portmap_table()
    result["started"] = table
    bound = rows(table, BOUND_PROGRAM)
    if bound:
        result["bound_answer"] = talk_tcp(bound[0][3])
        result["bound_elsewhere"] = talk_tcp(bound[0][3], "127.0.0.2")
    result["fixed_answer"] = talk_tcp(FIXED_PORT)
    result["services"] = talk_tcp(SERVICES_PORT)
    if first_only:
        return
    cps_before = rows(table, CPS_PROGRAM)
    result["cps_before"] = cps_before
    if cps_before:
        # cps = 1 N: the second connection within one second trips it, and the socket
        # closes (refused from then on); connect until then, at most 20 times.
        for _ in range(20):
            if talk_tcp(cps_before[0][3]).startswith("error:"):
                break
        wait_for(lambda: "Deactivating service cpstcp" in read(log), "the cps deactivation",
                 deadline)
        result["cps_closed"] = settle(lambda t: not rows(t, CPS_PROGRAM), CPS_WAIT / 2)
        wait_for(lambda: "Activating service cpstcp" in read(log), "the cps reactivation",
                 deadline)
        reopened = settle(lambda t: bool(rows(t, CPS_PROGRAM)), 5.0)
        result["cps_reopened"] = reopened
        port = rows(reopened, CPS_PROGRAM)[0][3] if rows(reopened, CPS_PROGRAM) else 0
        result["cps_answer"] = talk_tcp(port) if port else "not registered"
    conf.write_text(more_configuration(False))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reconfigured" in read(log), "Reconfigured", deadline)

    def survivor_back(t: list[list[int]] | str) -> bool:
        shared = rows(t, SHARED_PROGRAM)
        return bool(shared) and all(row[2] == 6 for row in shared) and len(shared) == 2
    reloaded = settle(survivor_back, 5.0)
    result["reloaded"] = reloaded
    shared = rows(reloaded, SHARED_PROGRAM)
    result["shared_answer"] = talk_tcp(shared[0][3]) if shared else "not registered"
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=max(1.0, deadline - time.monotonic()))
    result["terminated"] = portmap_table()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--rpcbind", required=True)
    parser.add_argument("--xinetd")
    parser.add_argument("--no-rpcbind", action="store_true")
    parser.add_argument("--more", action="store_true")
    parser.add_argument("--first-steps", action="store_true")
    parser.add_argument("--wide", action="store_true")
    parser.add_argument("--overlap", action="store_true")
    args = parser.parse_args()
    work: Path = args.workdir
    try:
        portmapper = setup_namespace(work, None if args.no_rpcbind else args.rpcbind)
    except (SystemExit, subprocess.CalledProcessError) as why:
        # The caller skips: this machine cannot run the portmapper in a namespace.
        print(json.dumps({"skip": f"rpcbind does not run in a namespace here: {why}"}))
        return
    conf, log = work / "rpc.conf", work / "daemon.log"
    if args.wide:
        conf.write_text(wide_configuration())
    elif args.overlap:
        conf.write_text(overlap_configuration(True))
    else:
        conf.write_text(more_configuration(True) if args.more
                        else configuration(with_udp=True))
    dump_file = Path("/run/xinetd.dump")
    env = dict(os.environ, PYXINETD_DUMP_FILE=str(dump_file))
    if args.xinetd:
        argv = [args.xinetd]
    else:
        argv = [sys.executable, "-m", "pyxinetd"]
    result: dict[str, object] = {}
    deadline = time.monotonic() + DEADLINE
    daemon = start_daemon(argv, conf, log, work / "daemon.err", env)
    try:
        wait_started(daemon, log, deadline)
        if args.more:
            more_steps(result, daemon, conf, log, deadline, args.first_steps)
            return
        if args.overlap:
            overlap_steps(result, daemon, conf, log, deadline)
            return
        result["plain"] = talk_tcp(PLAIN_PORT)
        if args.no_rpcbind:
            return
        if args.wide:
            result["started"] = portmap_table(tcp=True)
            result["dropped"] = udp_receive_buffer_errors()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=max(1.0, deadline - time.monotonic()))
            result["terminated"] = portmap_table(tcp=True)
            return
        table = portmap_table()
        result["started"] = table
        ports = {(row[0], row[2]): row[3] for row in table} if isinstance(table, list) else {}
        udp_port = ports.get((UDP_PROGRAM, 17))
        tcp_port = ports.get((TCP_PROGRAM, 6))
        result["udp_answer"] = talk_udp(udp_port) if udp_port else "not registered"
        result["tcp_answer"] = talk_tcp(tcp_port) if tcp_port else "not registered"
        daemon.send_signal(signal.SIGUSR1)
        wait_for(lambda: "END OF DUMP" in read(dump_file), "the dump", deadline)
        result["rpc_data"] = rpc_data(read(dump_file))
        result["dump"] = read(dump_file)
        conf.write_text(configuration(with_udp=False))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "Reconfigured" in read(log), "Reconfigured", deadline)
        # The UNSET calls go out as the reload is applied; give the answers a moment.
        wait_for(lambda: not any(r[0] == UDP_PROGRAM for r in portmap_table()),
                 "the dgram service to be unregistered", time.monotonic() + 5.0)
        result["reloaded"] = portmap_table()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=max(1.0, deadline - time.monotonic()))
        result["terminated"] = portmap_table()
    except SystemExit as stop:
        result["error"] = str(stop)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        result["returncode"] = daemon.returncode
        result["log"] = read(log)
        result["stderr"] = read(work / "daemon.err")
        if portmapper is not None:
            portmapper.terminate()
            try:
                portmapper.wait(timeout=5)
            except subprocess.TimeoutExpired:
                portmapper.kill()
                portmapper.wait(timeout=5)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
