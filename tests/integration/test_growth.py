"""The daemon's tables follow what is active, not what it has seen.

Each test runs the real daemon under tests/helpers/census_daemon.py, which adds to the
SIGUSR1 dump a census of every table reachable from the master (and from pyxinetd's
module-level objects), the loop's registrations and timers, and the descriptors. Many
distinct clients come from 127.0.0.0/8 (each bound to its own source address), or a
configuration is reloaded many times; once the traffic is over and its deadlines have
passed, the tables are back to their size at the start. Counts, never timings.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.timers import COMPACT_MIN_CANCELLED
from tests.daemon import HELPERS, Daemon, DaemonFactory, free_port, wait_until
from tests.integration.test_reload import conf_path

CENSUS = HELPERS / "census_daemon.py"


def start(daemons: DaemonFactory, tmp_path: Path, conf_text: str) -> tuple[Daemon, Path]:
    log_path, err_path = daemons._paths()
    conf = tmp_path / f"daemon{daemons._n}.conf"
    conf.write_text(conf_text)
    out = tmp_path / f"census{daemons._n}.json"
    argv = [sys.executable, str(CENSUS), str(out), "-f", str(conf), "-dontfork",
            "-filelog", str(log_path)]
    return daemons._spawn(argv, log_path, err_path, ready=True), out


def census(daemon: Daemon, out: Path) -> dict[str, Any]:
    """SIGUSR1, then the census the dump wrote."""
    out.unlink(missing_ok=True)
    daemon.signal(signal.SIGUSR1)
    wait_until(out.exists, 10.0, what="census")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def source(i: int) -> str:
    """The i-th distinct client address of 127.0.0.0/8 (127.0.0.1 excluded)."""
    return f"127.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def connect(port: int, i: int, data: bytes = b"") -> bytes:
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source(i), 0))
        s.connect(("127.0.0.1", port))
        if data:
            s.sendall(data)
        try:
            return s.recv(100)
        except OSError:
            return b""


@pytest.fixture(autouse=True)
def dump_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(tmp_path / "dump"))


def external(name: str, port: int, extra: str = "") -> str:
    return f"""
service {name}
{{
  type = UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  user = root
  server = /bin/echo
  server_args = {name}
  port = {port}
  cps = 100000 1
{extra}}}
"""


def reload(daemon: Daemon, text: str, generation: int) -> None:
    """The configuration file now holds `text`, and the daemon has applied it: its
    `generation`-th `Reconfigured` line (a failed reload does not count)."""
    conf_path(daemon).write_text(text)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("Reconfigured", count=generation)


def reload_generations(daemon: Daemon, conf: Callable[[int], str], ports: list[int]) -> None:
    """Reload conf(1) to conf(15) in turn, each time served at every port (by the
    services `one` and `two`) by a client from a new address."""
    for generation in range(1, 16):
        reload(daemon, conf(generation), generation)
        for port in ports:
            assert connect(port, generation).strip() in (b"one", b"two")


def test_reloads_leave_one_access_plan_and_one_spawn_plan_per_service(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    ports = [free_port() for _ in range(2)]

    def conf(generation: int) -> str:
        # Every reload changes both services: each gets a new configuration object.
        return (external("one", ports[0], f"  only_from = 127.0.0.0/8 10.0.0.{generation}\n")
                + external("two", ports[1], f"  env = GENERATION={generation}\n"))

    daemon, out = start(daemons, tmp_path, conf(0))
    reload_generations(daemon, conf, ports)
    tables = census(daemon, out)["tables"]
    assert tables["master.dispatcher.access._plans"] <= 2
    assert tables["pyxinetd.spawner._DEFAULT._plans"] <= 2


def test_reloads_that_rename_the_services_leave_no_plan_of_a_removed_id(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    ports = [free_port() for _ in range(2)]

    def conf(generation: int) -> str:
        # Each reload removes both ids and adds two new ones, on the same ports.
        return (external("one", ports[0], f"  id = one-{generation}\n"
                                          "  only_from = 127.0.0.0/8\n")
                + external("two", ports[1], f"  id = two-{generation}\n"))

    daemon, out = start(daemons, tmp_path, conf(0))
    reload_generations(daemon, conf, ports)
    tables = census(daemon, out)["tables"]
    assert tables["master.dispatcher.access._plans"] <= 2
    assert tables["pyxinetd.spawner._DEFAULT._plans"] <= 2


def test_a_hosts_allow_option_leaves_no_spawn_plan_per_connection(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    # setenv makes a copy of the service for each connection it allows.
    allow.write_text("ALL: ALL: setenv SEEN yes\n")
    deny.write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(allow))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(deny))
    port = free_port()
    daemon, out = start(daemons, tmp_path, external("one", port))
    for i in range(200):
        assert connect(port, i).strip() == b"one"
    tables = census(daemon, out)["tables"]
    assert tables["pyxinetd.spawner._DEFAULT._plans"] <= 1


def sensor_conf(sensor_port: int, deny_time: str, port: int) -> str:
    return f"""
service sensor
{{
  type = INTERNAL UNLISTED
  id = trap
  socket_type = stream
  protocol = tcp
  wait = no
  port = {sensor_port}
  flags = SENSOR
  deny_time = {deny_time}
}}
{external("one", port)}"""


def test_a_deny_list_of_forever_entries_keeps_no_timer(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A scrub finds nothing to do in a list that only holds FOREVER entries: no timer
    # may wake the idle daemon for it.
    monkeypatch.setenv("PYXINETD_SENSOR_MINUTE", "0.2")
    sensor_port, port = free_port(), free_port()
    daemon, out = start(daemons, tmp_path, sensor_conf(sensor_port, "FOREVER", port))
    connect(sensor_port, 1)
    daemon.wait_for_log(r"Adding (::ffff:)?127\.1\.0\.2 to the global_no_access list")
    report = census(daemon, out)
    assert report["timers_live"] == 0
    assert report["tables"]["master.dispatcher.sensor._deny"] == 1
    # Still listed: refused by the other service.
    assert connect(port, 1) == b""


def test_the_scrub_timer_stops_once_only_forever_entries_are_left(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYXINETD_SENSOR_MINUTE", "0.2")
    forever, minute, port = free_port(), free_port(), free_port()
    conf = sensor_conf(forever, "FOREVER", port) + f"""
service sensor
{{
  type = INTERNAL UNLISTED
  id = brief
  socket_type = stream
  protocol = tcp
  wait = no
  port = {minute}
  flags = SENSOR
  deny_time = 1
}}
"""
    daemon, out = start(daemons, tmp_path, conf)
    connect(forever, 1)
    connect(minute, 2)
    daemon.wait_for_log(r"Adding (::ffff:)?127\.1\.0\.3 to the global_no_access list for 1 minutes")
    daemon.wait_for_log("At least 1 DENY_TIME has expired")
    report = census(daemon, out)
    assert report["timers_live"] == 0
    assert report["tables"]["master.dispatcher.sensor._deny"] == 1
    assert "global_no_access list is empty." not in daemon.log()
    assert connect(port, 2).strip() == b"one"


def channel_tables(report: dict[str, Any]) -> list[int]:
    return [size for path, size in report["tables"].items() if path.endswith("._channels")]


def test_an_intercepted_datagram_server_keeps_channels_for_its_active_senders_only(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A wait = yes server that runs for long: each sender's channel (a descriptor) is
    # closed once quiet, not kept until the server exits.
    monkeypatch.setenv("PYXINETD_INTERCEPT_IDLE", "0.5")
    port = free_port()
    daemon, out = start(daemons, tmp_path, f"""
service icept
{{
  type = UNLISTED
  socket_type = dgram
  protocol = udp
  wait = yes
  user = root
  port = {port}
  bind = 127.0.0.1
  server = {sys.executable}
  server_args = -I -S {HELPERS / "intercept_server.py"} 1000 60
  flags = INTERCEPT
  log_type = FILE {tmp_path / "services.log"}
  log_on_success = PID HOST
}}
""")
    before = census(daemon, out)

    def ask(i: int) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.bind((source(i), 0))
            s.sendto(b"hello", ("127.0.0.1", port))
            return s.recv(1000).decode()

    first = ask(0)
    for i in range(1, 60):
        assert ask(i).split()[0] == first.split()[0]    # one server for them all

    def quiet() -> dict[str, Any] | None:
        report = census(daemon, out)
        return report if channel_tables(report) in ([], [0]) else None

    after = wait_until(quiet, 20.0, what="the quiet channels closed")
    assert after["fds"] == before["fds"]
    assert after["timers_live"] == 0
    # A sender back after its channel closed is checked and served again.
    assert ask(5).split()[0] == first.split()[0]
    assert (tmp_path / "services.log").read_text().count(f"from={source(5)}\n") == 2


def test_many_clients_leave_the_tables_as_they_were(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # per_source counts, in-loop sessions, redirect relays, a datagram refusal's log
    # throttle and name lookups, each driven by 300 distinct client addresses.
    # A name the DNS does not answer must not make each client wait 5 s.
    monkeypatch.setenv("PYXINETD_LOOKUP_TIMEOUT", "0.3")
    echo, relay, udp, named = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "services.log"
    daemon, out = start(daemons, tmp_path, f"""
defaults
{{
  log_type = FILE {log}
  log_on_success = PID HOST EXIT
  log_on_failure = HOST
  cps = 100000 1
}}
service echo
{{
  type = INTERNAL UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  port = {echo}
  per_source = 2
}}
service relay
{{
  type = UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  user = root
  port = {relay}
  redirect = 127.0.0.1 {echo}
}}
service echo
{{
  type = INTERNAL UNLISTED
  id = udp-refused
  socket_type = dgram
  protocol = udp
  wait = yes
  port = {udp}
  only_from = 10.0.0.1
}}
service echo
{{
  type = INTERNAL UNLISTED
  id = named
  socket_type = stream
  protocol = tcp
  wait = no
  port = {named}
  only_from = localhost 127.0.0.0/8
}}
""")
    # Made once and kept (one per service, the resolver helper's socket): made before
    # the baseline by a first client of each service.
    assert connect(echo, 10_000, b"x") == b"x"
    assert connect(relay, 10_000, b"x") == b"x"
    assert connect(named, 10_000, b"x") == b"x"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"q", ("127.0.0.1", udp))
    wait_until(lambda: "FAIL: udp-refused" in log.read_text(), 10.0, what="refusal")
    before = census(daemon, out)
    for i in range(300):
        assert connect(echo, i, b"x") == b"x"
        assert connect(relay, i, b"y") == b"y"
        assert connect(named, i, b"z") == b"z"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source(i), 0))
            s.sendto(b"q", ("127.0.0.1", udp))
    wait_until(lambda: log.read_text().count("FAIL: udp-refused") == 301, 20.0,
               what="every datagram refused")

    last: dict[str, Any] = {}

    def settled() -> dict[str, Any] | None:
        report = census(daemon, out)
        last.update(report)
        return report if report["tables"] == before["tables"] else None

    try:
        after = wait_until(settled, 20.0, what="the tables back to their size")
    except AssertionError:
        changed = {k: (before["tables"].get(k), last["tables"].get(k))
                   for k in set(before["tables"]) | set(last["tables"])
                   if before["tables"].get(k) != last["tables"].get(k)}
        raise AssertionError(f"tables changed: {changed}") from None
    for key in ("registered", "timers_live", "fds"):
        assert after[key] == before[key], key


def test_cancelled_per_connection_timers_do_not_pile_up_behind_a_live_one(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Each tcpmux connection gets a 60 s timer for its name, cancelled as soon as the
    # name comes. The sensor's scrub timer (a minute away) stays live meanwhile: the
    # cancelled ones behind it must not wait for their own deadlines to leave the heap.
    sensor_port, port = free_port(), free_port()
    daemon, out = start(daemons, tmp_path, f"""
service daytime
{{
  type = INTERNAL UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  port = {sensor_port}
  flags = SENSOR
  deny_time = 5
}}
service tcpmux
{{
  type = INTERNAL UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  port = {port}
  cps = 100000 1
}}
""")
    connect(sensor_port, 0)
    daemon.wait_for_log("to the global_no_access list")
    before = census(daemon, out)
    assert before["timers_live"] == 1
    for i in range(1, 3 * COMPACT_MIN_CANCELLED + 1):
        assert connect(port, i, b"nosuch\r\n").startswith(b"-")
    after = census(daemon, out)
    assert after["timers_live"] == 1
    assert after["timers_heap"] <= 1 + COMPACT_MIN_CANCELLED


def test_a_reload_keeps_no_recheck_once_its_verdicts_are_in(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # Each reload checks the running sessions of a kept service again; a recheck that
    # is over must not stay behind, holding the sessions it checked.
    port = free_port()

    def conf(generation: int) -> str:
        return f"""
service echo
{{
  type = INTERNAL UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  port = {port}
  only_from = 127.0.0.0/8 10.0.0.{generation}
}}
"""
    daemon, out = start(daemons, tmp_path, conf(0))
    clients = []
    try:
        for i in range(3):
            s = socket.socket()
            clients.append(s)
            s.settimeout(5)
            s.bind((source(i), 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        reload(daemon, conf(1), 1)
        report = census(daemon, out)
        assert report["tables"]["master.dispatcher.sessions._records"] == 3  # still served
        assert report["tables"]["master.reconfig._rechecks._jobs"] == 0
        for s in clients:
            s.sendall(b"y")
            assert s.recv(1) == b"y"
    finally:
        for s in clients:
            s.close()
