"""An rlimit or nice the daemon cannot give its server: the nearest it can, warned at load.

The daemon (and `pyxinetd check`) runs under prlimit with a lowered RLIMIT_NOFILE hard
limit, and for the refusing cases under setpriv without CAP_SYS_RESOURCE (the state of
root in many containers) or in a user namespace of its own, whose CAP_SYS_RESOURCE the
kernel does not count for rlimits: an `rlimit_files` above that hard limit gives the
server soft = hard = the daemon's hard limit, and the warning says so once, at load
time, with the attribute's file:line. Likewise a `nice` below what the daemon may set
(no CAP_SYS_NICE, as in a container): the server runs at the lowest nice the daemon's
RLIMIT_NICE allows. The servers are prlimit and nice themselves, reporting what they got.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyxinetd.config.ceilings import Ceilings
from tests.daemon import DaemonFactory, free_port
from tests.integration.test_dispatch import read_all

SETPRIV = shutil.which("setpriv")
PRLIMIT = shutil.which("prlimit")
NICE = shutil.which("nice")
UNSHARE = shutil.which("unshare")
HARD = 1024
LOWERED = [str(PRLIMIT), f"--nofile={HARD}:{HARD}", "--"]
NO_SYS_RESOURCE = [str(SETPRIV), "--inh-caps=-sys_resource", "--bounding-set=-sys_resource",
                   *LOWERED]
NO_SYS_NICE = [str(SETPRIV), "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (and capabilities to drop)"),
    pytest.mark.skipif(SETPRIV is None or PRLIMIT is None or NICE is None,
                       reason="needs util-linux and coreutils"),
]


def _service(name: str, port: int, files: int) -> str:
    """A server that prints its own RLIMIT_NOFILE, soft and hard."""
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
            f"\tsocket_type = stream\n\twait = no\n\tuser = root\n\tserver = {PRLIMIT}\n"
            f"\tserver_args = --nofile --output=SOFT,HARD --noheadings\n"
            f"\trlimit_files = {files}\n}}\n")


def _nice_service(name: str, port: int, nice: int) -> str:
    """A server that prints its own nice."""
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
            f"\tsocket_type = stream\n\twait = no\n\tuser = root\n\tserver = {NICE}\n"
            f"\tnice = {nice}\n}}\n")


def _warning(sid: str, value: int, why: str = "it lacks CAP_SYS_RESOURCE") -> str:
    """The warning, as a pattern."""
    return re.escape(f"service {sid}: rlimit_files = {value} is above the daemon's hard "
                     f"limit ({HARD}), which the daemon cannot raise ({why}): its servers "
                     f"get {HARD} (xinetd 2.3.15.3 leaves them the daemon's limit)")


def _ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        return read_all(conn)


def _limits(port: int) -> list[int]:
    return [int(word) for word in _ask(port).split()]


def _check(conf: Path, wrapper: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*wrapper, sys.executable, "-m", "pyxinetd", "check", "-f",
                           str(conf)], capture_output=True, text=True, timeout=60)


def test_warned_once_at_start_up_and_servers_get_the_daemons_hard_limit(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    high, within = free_port(), free_port()
    conf = _service("high", high, HARD * 4) + _service("within", within, HARD // 2)
    daemon = daemons.start_config(conf, wrapper=NO_SYS_RESOURCE)
    path = tmp_path / "daemon1.conf"
    log = daemon.log()
    # The attribute's line: the second block's rlimit_files is line 10 of the first.
    assert len(re.findall(_warning("high", HARD * 4), log)) == 1, log
    assert f"[file={path}] [line=10]" in log.split("rlimit_files = 4096")[1].splitlines()[0]
    assert "within" not in log.split("Started working")[0], log

    assert _limits(within) == [HARD // 2, HARD // 2]
    for _ in range(2):
        assert _limits(high) == [HARD, HARD]
    # Once per service: connections add no warning, and nothing failed.
    assert len(re.findall(r"rlimit_files = 4096 is above", daemon.log())) == 1
    assert "cannot start" not in daemon.log()

    checked = _check(path, NO_SYS_RESOURCE)
    assert checked.returncode == 0, checked.stderr
    assert re.search(rf"{re.escape(str(path))}:10: warning: {_warning('high', HARD * 4)}",
                     checked.stdout), checked.stdout
    assert checked.stdout.count("rlimit_files =") == 1


def test_reload_warns_for_a_new_service(daemons: DaemonFactory, tmp_path: Path) -> None:
    within, added = free_port(), free_port()
    daemon = daemons.start_config(_service("within", within, HARD), wrapper=NO_SYS_RESOURCE)
    assert "rlimit_files =" not in daemon.log()
    conf = tmp_path / "daemon1.conf"
    conf.write_text(_service("within", within, HARD) + _service("added", added, HARD + 1))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: new=1")
    assert len(re.findall(_warning("added", HARD + 1), daemon.log())) == 1
    assert _limits(added) == [HARD, HARD]


def _raised_nice_limit() -> list[str]:
    """A wrapper giving RLIMIT_NICE 25 (nice down to 20 - 25 = -5 without CAP_SYS_NICE);
    raising its hard limit needs CAP_SYS_RESOURCE."""
    wrapper = [str(PRLIMIT), "--nice=25:25", "--"]
    if subprocess.run([*wrapper, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot raise RLIMIT_NICE here (needs CAP_SYS_RESOURCE)")
    return wrapper


def test_a_nice_below_what_rlimit_nice_allows_runs_at_the_lowest_it_allows(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    wrapper = _raised_nice_limit()
    low, lower, higher = free_port(), free_port(), free_port()
    conf = (_nice_service("low", low, -5) + _nice_service("lower", lower, -10)
            + _nice_service("higher", higher, 7))
    daemon = daemons.start_config(conf, wrapper=[*wrapper, *NO_SYS_NICE])
    path = tmp_path / "daemon1.conf"
    assert _ask(low) == b"-5\n"
    assert _ask(lower) == b"-5\n"
    assert _ask(higher) == b"7\n"
    warning = ("service lower: nice = -10 asks for nice -10, below -5, the lowest the daemon "
               "may set (it lacks CAP_SYS_NICE): its servers run at nice -5 (xinetd 2.3.15.3 "
               "leaves them the daemon's nice)")
    log = daemon.log()
    assert log.count(warning) == 1, log
    assert log.count("nice =") == 1, log
    assert "cannot start" not in log
    # The nice attribute of the second block: line 9 of ten-line blocks.
    assert f"[file={path}] [line=19]" in log.split(warning)[1].splitlines()[0], log


def test_without_cap_sys_nice_servers_go_no_lower_than_the_daemons_nice(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The daemon runs at nice 5 with RLIMIT_NICE 0: it may raise nice, never lower it.
    low, higher = free_port(), free_port()
    wrapper = [*NO_SYS_NICE, str(PRLIMIT), "--nice=0:0", "--", str(NICE), "-n", "5"]
    daemon = daemons.start_config(_nice_service("low", low, -3)
                                  + _nice_service("higher", higher, 2), wrapper=wrapper)
    assert _ask(low) == b"5\n"
    assert _ask(higher) == b"7\n"
    warning = ("service low: nice = -3 asks for nice 2, below 5, the lowest the daemon may "
               "set (it lacks CAP_SYS_NICE): its servers run at nice 5 (xinetd 2.3.15.3 "
               "leaves them the daemon's nice)")
    assert daemon.log().count(warning) == 1, daemon.log()
    assert "cannot start" not in daemon.log()
    checked = _check(tmp_path / "daemon1.conf", wrapper)
    assert f"daemon1.conf:9: warning: {warning}" in checked.stdout, checked.stdout
    assert checked.stdout.count("warning:") == 1, checked.stdout


def _has_sys_resource() -> bool:
    status = Path("/proc/self/status").read_text()
    cap_eff = int(status.split("CapEff:")[1].split()[0], 16)
    return bool(cap_eff >> 24 & 1) and Path("/proc/self/uid_map").read_text().split() == [
        "0", "0", "4294967295"]


@pytest.mark.skipif(not _has_sys_resource(), reason="needs CAP_SYS_RESOURCE (a container's "
                    "root may lack it)")
def test_no_warning_when_the_daemon_may_raise_the_limit(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(_service("high", port, HARD * 4), wrapper=LOWERED)
    assert _limits(port) == [HARD * 4, HARD * 4]
    assert "rlimit_files =" not in daemon.log()
    checked = _check(tmp_path / "daemon1.conf", LOWERED)
    assert checked.returncode == 0 and "warning" not in checked.stdout, checked.stdout


def test_a_limit_above_fs_nr_open_is_given_as_fs_nr_open_at_most(tmp_path: Path) -> None:
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    conf = tmp_path / "x.conf"
    conf.write_text(_service("huge", free_port(), nr_open + 1))
    checked = _check(conf, [])
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if _has_sys_resource() or hard >= nr_open:
        why, given = (f"fs.nr_open ({nr_open}), which Linux refuses whatever the "
                      "privilege"), nr_open
    else:
        # The daemon's hard limit is the lower ceiling, and the one the line names.
        why, given = (f"the daemon's hard limit ({hard}), which the daemon cannot raise "
                      "(it lacks CAP_SYS_RESOURCE)"), hard
    assert (f"{conf}:10: warning: service huge: rlimit_files = {nr_open + 1} is above "
            f"{why}: its servers get {given}") in checked.stdout, checked.stdout


@pytest.mark.skipif(UNSHARE is None, reason="needs unshare")
def test_a_user_namespace_capability_does_not_count(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text(_service("high", free_port(), HARD * 4))
    probe = subprocess.run([str(UNSHARE), "-U", "-r", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no user namespaces here")
    checked = _check(conf, [str(UNSHARE), "-U", "-r", *LOWERED])
    why = "its CAP_SYS_RESOURCE is that of a user namespace"
    assert re.search(_warning("high", HARD * 4, why), checked.stdout), checked.stdout


def test_what_is_given_and_what_is_not() -> None:
    # The decision itself, for the cases the machine running the tests may not offer.
    inf = resource.RLIM_INFINITY
    hard = {"files": 1024, "stack": 8 << 20, "cpu": inf}
    capable = Ceilings(hard, None, 1 << 20)
    lacking = Ceilings(hard, "it lacks CAP_SYS_RESOURCE", 1 << 20)
    assert capable.refusal("files", 4096) is None and capable.granted("files", 4096) == 4096
    assert capable.refusal("stack", inf) is None and capable.granted("stack", inf) == inf
    assert lacking.refusal("files", 1024) is None
    assert lacking.refusal("files", inf) is None   # given as the daemon's hard limit
    assert lacking.refusal("cpu", inf) is None     # no hard limit to pass
    assert lacking.refusal("stack", 8 << 20) is None
    for name, value in (("files", 1025), ("stack", (8 << 20) + 1), ("stack", inf)):
        assert lacking.refusal(name, value) == (
            f"is above the daemon's hard limit ({hard[name]}), which the daemon cannot "
            "raise (it lacks CAP_SYS_RESOURCE)")
        assert lacking.granted(name, value) == hard[name]
    for ceilings, given in ((capable, 1 << 20), (Ceilings({}, None, 1 << 20), 1 << 20),
                            (Ceilings({"files": 2 << 20}, "it lacks CAP_SYS_RESOURCE",
                                      1 << 20), 1 << 20)):
        assert ceilings.refusal("files", (1 << 20) + 1) == (
            f"is above fs.nr_open ({1 << 20}), which Linux refuses whatever the privilege")
        assert ceilings.granted("files", (1 << 20) + 1) == given
    # Above both ceilings, the reason is the one that decides what is given: here the
    # daemon's hard limit, below fs.nr_open.
    assert lacking.refusal("files", (1 << 20) + 1) == (
        "is above the daemon's hard limit (1024), which the daemon cannot raise (it lacks "
        "CAP_SYS_RESOURCE)")
    assert lacking.granted("files", (1 << 20) + 1) == 1024
    # nice: own 3, floor 0 (RLIMIT_NICE 20, no CAP_SYS_NICE).
    floored = Ceilings({}, None, None, own_nice=3, nice_floor=0,
                       cannot_renice="it lacks CAP_SYS_NICE")
    assert floored.granted_nice(5) == 5 and floored.nice_refusal(5) is None
    assert floored.granted_nice(-3) == -3 and floored.nice_refusal(-3) is None
    assert floored.granted_nice(-4) == -3
    assert floored.nice_refusal(-4) == ("asks for nice -1, below 0, the lowest the daemon "
                                        "may set (it lacks CAP_SYS_NICE)")
    assert floored.granted_nice(40) == 40   # the kernel keeps the result within 19
    free = Ceilings({}, None, None, own_nice=3)
    assert free.granted_nice(-40) == -40 and free.nice_refusal(-40) is None


def test_a_limit_lowered_on_the_running_daemon_is_followed_from_the_next_reload(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    daemon = daemons.start_config(_service("files", port, 3000), wrapper=[
        str(SETPRIV), "--inh-caps=-sys_resource", "--bounding-set=-sys_resource",
        str(PRLIMIT), "--nofile=4096:4096", "--"])
    assert _limits(port) == [3000, 3000]
    subprocess.run([str(PRLIMIT), f"--pid={daemon.pid}", "--nofile=2048:2048"], check=True)
    # The start-up prepared before asks for more than the daemon now has: that start
    # fails, reported, and the daemon goes on.
    assert _ask(port) == b""
    daemon.wait_for_log(r"ERROR: files: cannot start \S+prlimit: rlimit_files: Operation not "
                        r"permitted")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured")
    assert "rlimit_files = 3000 is above the daemon's hard limit (2048)" in daemon.log()
    assert _limits(port) == [2048, 2048]
