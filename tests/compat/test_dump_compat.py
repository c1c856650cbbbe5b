"""The SIGUSR1 state dump, line by line against the real xinetd 2.3.15.3.

One configuration with services of most kinds (internal, sensor, external wait and
nowait, redirect, IPv6; own and inherited passenv/env, group given or not, libwrap,
access lists of every label, host bits in `a/bits`) is run by both daemons; their dumps must be the same lines
once the differences docs/compatibility.md lists are taken out: the header, `Instances`
and `CPS` printed for every service, numeric `Bind`/`Redirect` hosts, descriptor numbers,
and the values of the environment (each daemon has its own).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port
from tests.oracle import require_xinetd, run_xinetd_dump

pytestmark = pytest.mark.oracle


def configuration(tmp_path: Path, ports: list[int]) -> str:
    server = sys.executable
    return f"""
defaults
{{
    instances = 30
    groups = yes
    umask = 022
    cps = 40 7
    per_source = 9
    max_load = 3.5
    only_from = 127.0.0.0/8 10.0.0.0/8 2001:db8::/32
    no_access = 10.1.0.0/16
    log_type = FILE {tmp_path / "services.log"}
    log_on_success = PID HOST USERID EXIT DURATION
    log_on_failure = USERID ATTEMPT HOST
    passenv = PATH
}}

service echo
{{
    type = INTERNAL UNLISTED
    socket_type = stream
    protocol = tcp
    port = {ports[0]}
    bind = 127.0.0.1
    wait = no
    env = FROM_ECHO=1
    libwrap = echosvc
}}

service sensor
{{
    type = INTERNAL UNLISTED
    flags = SENSOR
    socket_type = stream
    protocol = tcp
    port = {ports[1]}
    bind = 127.0.0.1
    wait = no
    deny_time = 5
    server = {server}
}}

service nowait
{{
    type = UNLISTED
    flags = NAMEINARGS KEEPALIVE
    socket_type = stream
    protocol = tcp
    port = {ports[2]}
    bind = 127.0.0.1
    wait = no
    user = nobody
    server = {server}
    server_args = python3 -c pass
    nice = 5
    max_load = 2
    access_times = 00:00-23:59
    only_from = 127.0.0.1 192.168.1.5/32 .example.com ::ffff:10.0.0.1 fe80::/10
    only_from += 10.1.2.3/8 10.0.0.0 128.0.12.0 127.1 2001:db8::1/64 128.138.{{200,201}}
    no_access = 127.0.0.2
    log_type = SYSLOG daemon warning
    log_on_success += TRAFFIC
    log_on_success -= TRAFFIC
    passenv = LANG
    env = FOO=bar
    libwrap = nowaitsvc
}}

service waits
{{
    type = UNLISTED
    socket_type = dgram
    protocol = udp
    port = {ports[3]}
    bind = 127.0.0.1
    wait = yes
    user = nobody
    group = nogroup
    server = {server}
    log_type = FILE {tmp_path / "own.log"} 1000 2000
}}

service relay
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {ports[4]}
    bind = 127.0.0.1
    wait = no
    user = root
    redirect = 127.0.0.1 {ports[0]}
    log_on_success += TRAFFIC
    libwrap = relaysvc
}}

service six
{{
    type = UNLISTED
    flags = IPv6
    socket_type = stream
    protocol = tcp
    port = {ports[5]}
    bind = ::1
    wait = no
    user = nobody
    server = {server}
    groups = no
}}
"""


# Lines that differ by design or by machine: dropped, or their value replaced.
_DROPPED = re.compile(r"^(INTERNAL STATE DUMP|Current time|\t\tInstances = |\t\tCPS = "
                      r"|Socket mask|pfds_last|Open descriptors|descriptors_free)")
_VALUE = re.compile(r"^(\t+(?:Bind|service fd) = ).*$|^(\t+Redirect = )[^:]*(:.*)$")


def normalised(dump: str) -> list[str]:
    lines: list[str] = []
    environment_depth = None
    for line in dump.split("\n"):
        depth = len(line) - len(line.lstrip("\t"))
        if environment_depth is not None and depth > environment_depth:
            continue  # one NAME=value of the daemon's own environment
        environment_depth = depth if line.strip() == "Environment strings:" else None
        if _DROPPED.match(line):
            continue
        lines.append(_VALUE.sub(lambda m: (m.group(1) or m.group(2)) + "X" + (m.group(3) or ""),
                                line))
    return lines


def test_dump_has_xinetds_lines(daemons: DaemonFactory, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    require_xinetd()
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    # The environment the oracle gives xinetd has LANG=C: `passenv = LANG` keeps the
    # name only where the daemon was started with it.
    monkeypatch.setenv("LANG", "C")
    text = configuration(tmp_path, [free_port() for _ in range(6)])
    daemon = daemons.start_config(text)
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("generated state dump")
    ours = dump_file.read_text()
    conf = daemon.log_path.with_suffix(".conf")
    theirs = run_xinetd_dump(conf)
    assert theirs.started, theirs.log + theirs.harness_error
    assert "ERROR" not in theirs.log, theirs.log
    assert normalised(ours) == normalised(theirs.dump)
    # What the normalisation hides is still there.
    assert "\t\tInstances = 30\n" in ours and "\tEnvironment strings:\n\t\tPATH=" in ours


def test_dump_of_unlimited_defaults_empty_log_flags_and_both_families(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Empty log flag lists (none written, or emptied by `-=`): the line ends at the
    # '=', with no blank after it.
    require_xinetd()
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    # UNLIMITED limits in the defaults are listed, per_source as xinetd's -1.
    text = (f"defaults\n{{\n    log_type = SYSLOG daemon\n    log_on_success = PID\n"
            f"    log_on_success -= PID\n    instances = UNLIMITED\n"
            f"    per_source = UNLIMITED\n}}\n"
            f"service quiet\n{{\n    type = UNLISTED\n    socket_type = stream\n"
            f"    protocol = tcp\n    port = {free_port()}\n    wait = no\n    user = nobody\n"
            f"    server = /bin/true\n    log_type = FILE {tmp_path / 'quiet.log'}\n"
            f"    log_on_failure -= HOST\n}}\n")
    # And both family flags: the dump shows the one in use.
    text += (f"service both\n{{\n    type = UNLISTED\n    socket_type = stream\n"
             f"    protocol = tcp\n    port = {free_port()}\n    wait = no\n    user = nobody\n"
             f"    server = /bin/true\n    flags = IPv4 REUSE IPv6\n}}\n")
    daemon = daemons.start_config(text)
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("generated state dump")
    ours = dump_file.read_text()
    theirs = run_xinetd_dump(daemon.log_path.with_suffix(".conf"))
    assert theirs.started, theirs.log + theirs.harness_error
    assert "\tLog_on_success flags =\n" in theirs.dump
    assert "\t\tflags = REUSE IPv6\n" in theirs.dump
    assert "\tInstances = UNLIMITED\n" in theirs.dump and "\tPER_SOURCE = -1\n" in theirs.dump
    assert normalised(ours) == normalised(theirs.dump)


def test_bytes_that_are_not_utf8_are_written_as_read(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Latin-1 service name and argument: both daemons write the bytes themselves, in
    # the dump and in the program log (pyxinetd wrote '?', so a log line named a file
    # or a service that does not exist).
    require_xinetd()
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    block = ("service {name}\n{{\n    type = UNLISTED\n    socket_type = stream\n"
             "    protocol = tcp\n    port = {port}\n    wait = no\n    user = nobody\n"
             "    server = /bin/true\n{extra}}}\n")
    included = tmp_path / "latin1.conf"
    included.write_bytes(os.fsencode(
        block.format(name="caf\udce9", port=free_port(), extra="    server_args = \udcff\n")
        + block.format(name="grp", port=free_port(), extra="    group = \udce9\n")))
    daemon = daemons.start_config(f"include {included}\n")
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("generated state dump")
    theirs = run_xinetd_dump(daemon.log_path.with_suffix(".conf"))
    assert theirs.started, theirs.log + theirs.harness_error
    ours = dump_file.read_bytes()
    assert b"Service = caf\xe9\n" in ours and b"Server argv = true \xff\n" in ours
    assert normalised(ours.decode(errors="replace")) == normalised(theirs.dump)
    line = "ERROR: Unknown group: \xe9 (service grp: ".encode("latin-1")
    assert line in daemon.log_path.read_bytes()
    assert "ERROR: Unknown group: \ufffd [file=" in theirs.log


# --------------------------------------------------------------------------- server table

# Run where the daemon listens (inside xinetd's namespaces through nsenter): one client
# at a time, each waiting for its START line so both daemons fork in the same order;
# then "ready", and the connections stay open until the process is killed.
_CLIENTS = r"""
import socket, sys, time
log, stream_nowait, stream_wait, dgram_wait = sys.argv[1], *map(int, sys.argv[2:])
held = []
def started(count):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with open(log) as f:
                if f.read().count("START:") >= count:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    sys.exit("no START line " + str(count))
held.append(socket.create_connection(("127.0.0.1", stream_nowait)))
started(1)
held.append(socket.create_connection(("127.0.0.1", stream_wait)))
started(2)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"x", ("127.0.0.1", dgram_wait))
held.append(u)
started(3)
print("ready", flush=True)
time.sleep(60)
"""


def servers_configuration(log: Path, ports: list[int]) -> str:
    def service(name: str, socket_type: str, protocol: str, wait: str, port: int) -> str:
        return (f"service {name}\n{{\n    type = UNLISTED\n    socket_type = {socket_type}\n"
                f"    protocol = {protocol}\n    port = {port}\n    wait = {wait}\n"
                "    user = nobody\n    server = /bin/sleep\n    server_args = 20\n}\n")
    return (f"defaults\n{{\n    log_type = FILE {log}\n"
            "    log_on_success = PID HOST USERID\n}\n"
            + service("nowait", "stream", "tcp", "no", ports[0])
            + service("waits", "stream", "tcp", "yes", ports[1])
            + service("datagrams", "dgram", "udp", "yes", ports[2]))


def _server_table(dump: str) -> list[str]:
    """The server table, with what differs by run (pids, times, descriptor numbers of
    service sockets, client ports) replaced by X."""
    table = dump.split("Server table dump:\n", 1)[1].split("\nRetry table dump:", 1)[0]
    table = re.sub(r"(?m)^(pid|start_time) = .*$", r"\1 = X", table)
    table = re.sub(r"(?m)^(\tdescriptor = )[0-9]+$", r"\1X", table)
    table = re.sub(r"(?m)^(\tremote_address = .*,)[1-9][0-9]*$", r"\1X", table)
    return table.split("\n")


def _clients(prefix: list[str], log: str, ports: list[int]) -> subprocess.Popen[str]:
    """Start the clients; returns once their servers run."""
    proc = subprocess.Popen([*prefix, sys.executable, "-c", _CLIENTS, log, *map(str, ports)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()      # bounded: the script exits after its deadline
    if line != "ready\n":
        # Reaped before failing: a zombie left to this process would fail every later
        # test that checks it has none.
        _, err = proc.communicate(timeout=30)
        raise AssertionError(err or line)
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)


def test_server_table_has_xinetds_lines(daemons: DaemonFactory, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    require_xinetd()
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "services.log"
    conf = tmp_path / "servers.conf"
    conf.write_text(servers_configuration(log, ports))
    dump_file = tmp_path / "xinetd.dump"
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(dump_file))
    daemon = daemons.start_config(conf.read_text())
    clients = _clients([], str(log), ports)
    try:
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log("generated state dump")
    finally:
        _stop(clients)
    ours = dump_file.read_text()

    # A log of its own: xinetd's /tmp is an overlay on this one, where pyxinetd's log
    # already holds three START lines that would let its clients report ready at once.
    their_log = tmp_path / "services-xinetd.log"
    their_conf = tmp_path / "servers-xinetd.conf"
    their_conf.write_text(servers_configuration(their_log, ports))

    def connect(pid: int) -> None:
        # In xinetd's namespaces, where its /tmp (and so the log) is its own. With its
        # root too (-r): entering a mount namespace resets the root to the namespace's,
        # which under a chroot is not xinetd's (nor has this interpreter).
        started = _clients(["nsenter", "-t", str(pid), "-n", "-m", "-r", "--"],
                           str(their_log), ports)
        running.append(started)

    running: list[subprocess.Popen[str]] = []
    try:
        theirs = run_xinetd_dump(their_conf, after_start=connect)
    finally:
        for proc in running:
            _stop(proc)
    assert theirs.started and theirs.dump, theirs.log + theirs.harness_error
    assert _server_table(ours) == _server_table(theirs.dump)
    # What the normalisation hides: a real port, and -1 for the closed connection.
    assert re.search(r"\tremote_address = ::ffff:127\.0\.0\.1,[1-9][0-9]*\n", ours)
    assert "\tdescriptor = -1\n\tflags = 3\n" in ours
