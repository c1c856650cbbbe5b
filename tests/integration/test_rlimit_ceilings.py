"""An rlimit the daemon cannot give its server is reported when the service is loaded.

The daemon (and `pyxinetd check`) runs under prlimit with a lowered RLIMIT_NOFILE hard
limit, and for the refusing cases under setpriv without CAP_SYS_RESOURCE (the state of
root in many containers) or in a user namespace of its own, whose CAP_SYS_RESOURCE the
kernel does not count for rlimits: an `rlimit_files` above that hard limit then fails
every start of the server, and the warning says so once, at load time, with the
attribute's file:line.
"""

from __future__ import annotations

import os
import re
import shutil
import resource
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
UNSHARE = shutil.which("unshare")
HARD = 1024
LOWERED = [str(PRLIMIT), f"--nofile={HARD}:{HARD}", "--"]
NO_SYS_RESOURCE = [str(SETPRIV), "--inh-caps=-sys_resource", "--bounding-set=-sys_resource",
                   *LOWERED]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (and CAP_SYS_RESOURCE to drop)"),
    pytest.mark.skipif(SETPRIV is None or PRLIMIT is None, reason="needs util-linux"),
]


def _service(name: str, port: int, files: int) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
            "\tsocket_type = stream\n\twait = no\n\tuser = root\n\tserver = /bin/echo\n"
            f"\tserver_args = served\n\trlimit_files = {files}\n}}\n")


def _warning(sid: str, value: int, why: str = "it lacks CAP_SYS_RESOURCE") -> str:
    """The warning, as a pattern."""
    return re.escape(f"service {sid}: rlimit_files = {value} is above the daemon's hard "
                     f"limit ({HARD}), which the daemon cannot raise ({why}): every start "
                     "of its server will fail (cannot start /bin/echo: rlimit_files: "
                     "Operation not permitted; xinetd 2.3.15.3 starts it with the limit "
                     "unchanged)")


def _ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        return read_all(conn)


def _check(conf: Path, wrapper: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*wrapper, sys.executable, "-m", "pyxinetd", "check", "-f",
                           str(conf)], capture_output=True, text=True, timeout=60)


def test_warned_once_at_start_up_and_every_start_fails(daemons: DaemonFactory,
                                                        tmp_path: Path) -> None:
    high, within = free_port(), free_port()
    conf = _service("high", high, HARD * 4) + _service("within", within, HARD // 2)
    daemon = daemons.start_config(conf, wrapper=NO_SYS_RESOURCE)
    path = tmp_path / "daemon1.conf"
    log = daemon.log()
    # The attribute's line: the second block's rlimit_files is line 10 of the first.
    assert len(re.findall(_warning("high", HARD * 4), log)) == 1, log
    assert f"[file={path}] [line=10]" in log.split("rlimit_files = 4096")[1].splitlines()[0]
    assert "within" not in log.split("Started working")[0], log

    assert _ask(within) == b"served\n"
    for _ in range(2):
        assert _ask(high) == b""
    daemon.wait_for_log(r"ERROR: high: cannot start /bin/echo: rlimit_files: Operation not "
                        r"permitted", count=2)
    # Once per service: connections add no warning.
    assert len(re.findall(r"rlimit_files = 4096 is above", daemon.log())) == 1

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
    assert _ask(added) == b""
    daemon.wait_for_log(r"ERROR: added: cannot start /bin/echo: rlimit_files: Operation not "
                        r"permitted")


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
    assert _ask(port) == b"served\n"
    assert "rlimit_files =" not in daemon.log()
    checked = _check(tmp_path / "daemon1.conf", LOWERED)
    assert checked.returncode == 0 and "warning" not in checked.stdout, checked.stdout


def test_a_limit_above_fs_nr_open_fails_whatever_the_privilege(tmp_path: Path) -> None:
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    conf = tmp_path / "x.conf"
    conf.write_text(_service("huge", free_port(), nr_open + 1))
    checked = _check(conf, [])
    assert (f"{conf}:10: warning: service huge: rlimit_files = {nr_open + 1} is above "
            f"fs.nr_open ({nr_open}), which Linux refuses whatever the privilege: every "
            "start of its server will fail") in checked.stdout, checked.stdout


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



def test_what_fails_and_what_does_not() -> None:
    # The decision itself, for the cases the machine running the tests may not offer.
    inf = resource.RLIM_INFINITY
    hard = {"files": 1024, "stack": 8 << 20, "cpu": inf}
    capable = Ceilings(hard, None, 1 << 20)
    lacking = Ceilings(hard, "it lacks CAP_SYS_RESOURCE", 1 << 20)
    assert capable.refusal("files", 4096) is None
    assert capable.refusal("stack", inf) is None
    assert lacking.refusal("files", 1024) is None
    assert lacking.refusal("files", inf) is None   # given as the daemon's hard limit
    assert lacking.refusal("cpu", inf) is None     # no hard limit to pass
    assert lacking.refusal("stack", 8 << 20) is None
    for name, value in (("files", 1025), ("stack", (8 << 20) + 1), ("stack", inf)):
        assert lacking.refusal(name, value) == (
            f"is above the daemon's hard limit ({hard[name]}), which the daemon cannot "
            "raise (it lacks CAP_SYS_RESOURCE)")
    for ceilings in (capable, lacking, Ceilings({}, None, 1 << 20)):
        assert ceilings.refusal("files", (1 << 20) + 1) == (
            f"is above fs.nr_open ({1 << 20}), which Linux refuses whatever the privilege")
