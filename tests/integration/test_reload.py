"""SIGHUP reconfiguration of a running daemon, with real sockets and real servers."""

from __future__ import annotations

import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.daemon import (Daemon, DaemonFactory, HELPERS, free_port, open_fds, process_state,
                          read_log, wait_until)

SERVER = HELPERS / "reload_server.py"


def service(name: str, port: int, *args: str, **attrs: str) -> str:
    """One external service running reload_server.py with `args`."""
    lines = {
        "type": "UNLISTED", "socket_type": "stream", "protocol": "tcp", "port": str(port),
        "bind": "127.0.0.1", "wait": "no", "user": "root", "server": sys.executable,
        "server_args": " ".join([str(SERVER), *args]),
    }
    lines.update(attrs)
    body = "".join(f"\t{key} = {value}\n" for key, value in lines.items())
    return f"service {name}\n{{\n{body}}}\n"


def defaults(tmp_path: Path) -> str:
    return (f"defaults\n{{\n\tlog_type = FILE {tmp_path / 'services.log'}\n"
            "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n}\n")


def conf_path(daemon: Daemon) -> Path:
    return daemon.log_path.with_suffix(".conf")


def replace_conf(daemon: Daemon, text: str) -> None:
    """Swap the file whole: a reload still running must never read it half written."""
    tmp = conf_path(daemon).with_suffix(".conf.new")
    tmp.write_text(text)
    tmp.replace(conf_path(daemon))


def reload(daemon: Daemon, text: str | None, count: int) -> str:
    """Write the new configuration (unless None), send SIGHUP, wait for reload `count`."""
    if text is not None:
        conf_path(daemon).write_text(text)
    daemon.signal(signal.SIGHUP)
    return daemon.wait_for_log(r"Reconfigured: |reconfiguration failed", count=count)


def greeting(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        return read_line(conn)


def read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


def service_log(tmp_path: Path) -> str:
    return read_log(tmp_path / "services.log")


def wait_service_log(tmp_path: Path, pattern: str) -> str:
    return str(wait_until(lambda: re.search(pattern, service_log(tmp_path)),
                          what=f"service log {pattern!r}").group(0))


def listener_inode(port: int) -> int:
    """Inode of the TCP socket listening on 127.0.0.1:port (/proc/net/tcp, state 0A)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":
            return int(fields[9])
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def holds_socket(pid: int, inode: int) -> bool:
    return f"socket:[{inode}]" in open_fds(pid).values()


def test_added_service_serves(daemons: DaemonFactory, tmp_path: Path) -> None:
    a, b = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("a", a, "A"))
    assert refused(b)
    log = reload(daemon, defaults(tmp_path) + service("a", a, "A") + service("b", b, "B"), 1)
    assert "Starting reconfiguration" in log and "readjusting service a" in log
    assert "Reconfigured: new=1 old=1 dropped=0 (services)" in log
    assert greeting(b).startswith("B pid=")
    assert greeting(a).startswith("A pid=")


def test_removed_service_refuses_and_its_servers_are_terminated(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "0.3")
    keep, polite, stubborn = free_port(), free_port(), free_port()
    text = (defaults(tmp_path) + service("keep", keep, "K")
            + service("polite", polite, "P", "hold")
            + service("stubborn", stubborn, "S", "hold", "ignore-term"))
    daemon = daemons.start_config(text)
    with socket.create_connection(("127.0.0.1", polite), timeout=10) as c1, \
            socket.create_connection(("127.0.0.1", stubborn), timeout=10) as c2:
        pid1 = int(read_line(c1).split("pid=")[1])
        pid2 = int(read_line(c2).split("pid=")[1])
        log = reload(daemon, defaults(tmp_path) + service("keep", keep, "K"), 1)
        assert "Reconfigured: new=0 old=1 dropped=2 (services)" in log
        assert "service polite deactivated" in log and "service stubborn deactivated" in log
        assert refused(polite) and refused(stubborn)
        # TERM ends the polite one; the stubborn one needs the KILL of the grace timer.
        wait_service_log(tmp_path, rf"EXIT: polite signal=15 pid={pid1}")
        wait_service_log(tmp_path, rf"EXIT: stubborn signal=9 pid={pid2}")
        log = daemon.log()
        assert f"Sending signal 15 to stubborn server {pid2}" in log
        assert f"Sending signal 9 to stubborn server {pid2}" in log
        assert f"Sending signal 9 to polite server {pid1}" not in log
        assert c1.recv(100) == b"" and c2.recv(100) == b""
    assert greeting(keep).startswith("K pid=")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT])
def test_servers_still_in_their_grace_are_killed_when_the_daemon_exits(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        signum: int) -> None:
    # The daemon exits before the SIGKILL timer of a removed service's server that
    # ignores SIGTERM: it sends that SIGKILL on its way out (xinetd sent SIGKILL at the
    # reload), instead of leaving the server running for good.
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "600")
    keep, stubborn = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("keep", keep, "K")
                                  + service("stubborn", stubborn, "S", "hold", "ignore-term"))
    with socket.create_connection(("127.0.0.1", stubborn), timeout=10) as conn:
        pid = int(read_line(conn).split("pid=")[1])
        reload(daemon, defaults(tmp_path) + service("keep", keep, "K"), 1)
        daemon.wait_for_log(rf"Sending signal 15 to stubborn server {pid}\n")
        daemon.signal(signum)
        assert daemon.wait_exit() == 0
        assert f"Sending signal 9 to stubborn server {pid}" in daemon.log()
        wait_until(lambda: process_state(pid) in (None, "Z"),
                   what="the stubborn server to be killed")
        assert conn.recv(100) == b""


def test_changed_attributes_keep_the_listener_and_queued_clients(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    waiter, plain = free_port(), free_port()
    before = (defaults(tmp_path) + service("waiter", waiter, "old", "wait", "hold", wait="yes")
              + service("plain", plain, "old"))
    daemon = daemons.start_config(before)
    inodes = {port: listener_inode(port) for port in (waiter, plain)}
    assert all(holds_socket(daemon.pid, inode) for inode in inodes.values())
    first = socket.create_connection(("127.0.0.1", waiter), timeout=10)
    assert read_line(first).startswith("old pid=")
    # The wait server holds the listener and accepts nothing more: this client stays
    # queued in the listen backlog across the reload.
    queued = socket.create_connection(("127.0.0.1", waiter), timeout=10)
    after = (defaults(tmp_path) + service("waiter", waiter, "new", "wait", wait="yes")
             + service("plain", plain, "new", only_from="10.0.0.0/8"))
    log = reload(daemon, after, 1)
    assert "readjusting service waiter" in log and "readjusting service plain" in log
    assert "Reconfigured: new=0 old=2 dropped=0 (services)" in log
    assert {port: listener_inode(port) for port in (waiter, plain)} == inodes
    assert all(holds_socket(daemon.pid, inode) for inode in inodes.values())
    # The running wait server was left alone; when it ends, the queued client is
    # served by a server started with the new arguments.
    first.close()
    assert read_line(queued).startswith("new pid=")
    queued.close()
    # The new only_from applies to new connections of the other service.
    with socket.create_connection(("127.0.0.1", plain), timeout=10) as conn:
        assert conn.recv(100) == b""
    wait_service_log(tmp_path, r"FAIL: plain address from=127.0.0.1")


def test_changed_bind_address_rebinds(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("s", port, "one"))
    old_inode = listener_inode(port)
    log = reload(daemon, defaults(tmp_path) + service("s", port, "two", bind="127.0.0.2"), 1)
    assert "Reconfigured: new=0 old=1 dropped=0 (services)" in log
    assert not holds_socket(daemon.pid, old_inode)
    assert refused(port)
    with socket.create_connection(("127.0.0.2", port), timeout=10) as conn:
        assert read_line(conn).startswith("two pid=")


def test_syntax_error_drops_only_that_service(daemons: DaemonFactory, tmp_path: Path) -> None:
    good, bad = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("good", good, "G")
                                  + service("bad", bad, "B"))
    broken = service("bad", bad, "B").replace("\tsocket_type = stream", "\tsocket_type= stream")
    text = defaults(tmp_path) + service("good", good, "G2") + broken
    log = reload(daemon, text, 1)
    line = text.splitlines().index("\tsocket_type= stream") + 1
    assert re.search(rf"ERROR: .*socket_type.* \[file={re.escape(str(conf_path(daemon)))}\] "
                     rf"\[line={line}\]", log)
    assert "service bad deactivated" in log
    assert "Reconfigured: new=0 old=1 dropped=1 (services)" in log
    assert greeting(good).startswith("G2 pid=")
    assert refused(bad)


def test_unreadable_main_file_changes_nothing(daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("s", port, "S"))
    text = conf_path(daemon).read_text()
    conf_path(daemon).unlink()
    log = reload(daemon, None, 1)
    # xinetd's words for the file, then its reconfiguration line.
    assert re.search(r"ERROR: open\( \S+ \) failed: No such file or directory "
                     r"\(errno = 2\)\n.*WARNING: reconfiguration failed", log)
    assert "Reconfigured" not in log and "deactivated" not in log
    assert greeting(port).startswith("S pid=")
    # Once the file is back, reloading works again.
    log = reload(daemon, text, 2)
    assert "Reconfigured: new=0 old=1 dropped=0 (services)" in log


def test_an_endless_main_file_changes_nothing(daemons: DaemonFactory, tmp_path: Path) -> None:
    # The main file replaced by a link to a device: read without end, it took the
    # host's memory; now refused once past any real configuration's size.
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("s", port, "S"))
    conf_path(daemon).unlink()
    conf_path(daemon).symlink_to("/dev/zero")
    log = reload(daemon, None, 1)
    assert re.search(r"ERROR: open\( \S+ \) failed: File too large \(errno = 27\)\n"
                     r".*WARNING: reconfiguration failed", log)
    assert greeting(port).startswith("S pid=")


def test_bad_defaults_value_keeps_the_daemon_running(daemons: DaemonFactory,
                                                     tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("s", port, "S"))
    bad = defaults(tmp_path).replace("\tlog_on_failure = HOST\n",
                                     "\tlog_on_failure = RECORD\n\tinstances = many\n")
    log = reload(daemon, bad + service("s", port, "T"), 1)
    assert re.search(r"ERROR: .*RECORD.*\[line=\d+\]", log)
    assert "Reconfigured: new=0 old=1 dropped=0 (services)" in log
    assert greeting(port).startswith("T pid=")
    assert daemon.proc.poll() is None


def test_no_service_left_exits_1_unless_stayalive(daemons: DaemonFactory,
                                                  tmp_path: Path) -> None:
    started = []
    for options in ({}, {"stayalive": True}):
        daemon = daemons.start_master_on(defaults(tmp_path) + service("s", free_port(), "S"),
                                         **options)
        started.append(daemon)
        daemon.log_path.with_suffix(".conf").write_text(defaults(tmp_path))
        daemon.signal(signal.SIGHUP)
    leaving, staying = started
    assert leaving.wait_exit() == 1
    assert "CRITICAL: " in leaving.log() and "No available services. Exiting" in leaving.log()
    log = staying.wait_for_log("Reconfigured: new=0 old=0 dropped=1")
    assert "No available services" not in log and staying.proc.poll() is None


def test_a_service_removed_while_its_bind_is_retried_is_abandoned_quietly(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload adds a service whose port is taken (its bind retries), the next one
    removes it: the retries stop, the first reload does not count it as available, and
    nothing is reported about it afterwards."""
    a = free_port()
    # 0.5 s between attempts: the ten retries outlast the second reload's load.
    monkeypatch.setenv("XINETD_BIND_DELAY", "500000")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        kept = defaults(tmp_path) + service("a", a, "A")
        daemon = daemons.start_config(kept)
        replace_conf(daemon, kept + service("late", taken, "L"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"NOTICE: bind retry attempt 1\n")
        replace_conf(daemon, kept)
        log = reload(daemon, None, 2)
    assert re.findall(r"Reconfigured: .*", log)[:2] == [
        "Reconfigured: new=0 old=1 dropped=0 (services)",
        "Reconfigured: new=0 old=1 dropped=1 (services)"]
    assert "Bad file descriptor" not in log
    assert "Service late failed to start" not in log
    assert "internal error" not in log
    assert greeting(a).startswith("A pid=")


def test_burst_of_reloads_leaks_nothing(daemons: DaemonFactory, tmp_path: Path) -> None:
    a, b, c = free_port(), free_port(), free_port()
    one = defaults(tmp_path) + service("a", a, "A1") + service("b", b, "B")
    two = defaults(tmp_path) + service("a", a, "A2") + service("c", c, "C")
    daemon = daemons.start_config(one)
    assert greeting(a).startswith("A1")
    wait_service_log(tmp_path, r"EXIT: a ")
    fds_before = len(open_fds(daemon.pid))

    stop = threading.Event()
    served: list[str] = []
    errors: list[OSError] = []

    def clients() -> None:
        # Service a is kept by every reload: its listener never closes, so every
        # client must be served.
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", a), timeout=10) as conn:
                    served.append(read_line(conn))
            except OSError as err:
                errors.append(err)

    thread = threading.Thread(target=clients)
    thread.start()
    try:
        for n in range(12):
            replace_conf(daemon, two if n % 2 == 0 else one)
            daemon.signal(signal.SIGHUP)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    replace_conf(daemon, one)
    daemon.signal(signal.SIGHUP)

    def settled() -> bool:
        log = daemon.log()
        return log.count("Starting reconfiguration") == log.count("Reconfigured:")
    wait_until(settled, what="every reload to finish")
    reload(daemon, None, daemon.log().count("Reconfigured:") + 1)
    assert errors == []
    assert served and all(re.fullmatch(r"A[12] pid=\d+\n", line) for line in served)
    assert greeting(a).startswith("A1")
    wait_until(lambda: not daemon.children(), what="every server to be reaped")
    wait_until(lambda: daemon.zombies() == [], what="every exited server reaped")
    assert len(open_fds(daemon.pid)) == fds_before
    assert "Traceback" not in daemon.log() + (daemon.log_path.with_suffix(".err").read_text())
    assert daemon.proc.poll() is None


def test_kept_service_whose_new_log_cannot_be_created_is_dropped(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As xinetd's readjust() (src/reconfig.c): the log is opened again there, and a
    # service whose log cannot be created is dropped as a removed one; pyxinetd's
    # start-up does not activate such a service either.
    monkeypatch.setenv("PYXINETD_KILL_GRACE", "0.3")
    keep, bad = free_port(), free_port()
    daemon = daemons.start_config(defaults(tmp_path) + service("keep", keep, "K")
                                  + service("bad", bad, "B", "hold"))
    with socket.create_connection(("127.0.0.1", bad), timeout=10) as client:
        pid = int(read_line(client).split("pid=")[1])
        log = reload(daemon, defaults(tmp_path) + service("keep", keep, "K")
                     + service("bad", bad, "B", "hold",
                               log_type=f"FILE {tmp_path / 'missing' / 'bad.log'}"), 1)
        lines = log[log.index("Starting reconfiguration"):].splitlines()
        texts = [line.split(": ", 2)[-1] for line in lines]
        at = texts.index("readjusting service bad")
        assert texts[at + 1].startswith(f"Cannot open {tmp_path / 'missing' / 'bad.log'}")
        assert texts[at + 2:at + 5] == ["creation of bad log failed",
                                        f"Sending signal 15 to bad server {pid}",
                                        "service bad deactivated"]
        assert "Reconfigured: new=0 old=1 dropped=1 (services)" in log
        assert refused(bad)
        assert client.recv(100) == b""
    assert greeting(keep).startswith("K pid=")
