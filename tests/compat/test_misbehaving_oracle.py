"""Servers that misbehave, per dispatch model: pyxinetd against the real xinetd 2.3.15.3.

One scenario (tests/helpers/misbehaving_scenario.py) runs against each daemon at the
same time, each in its own network and mount namespaces. Servers of stream nowait,
stream wait = yes and dgram wait = yes services (tests/helpers/
misbehaving_models_server.py) exit at once with status 0 or 3, or die of SIGSEGV,
SIGKILL or SIGTERM; a dgram server exits without reading its datagram (no restart
loop: the datagram is drained), one answers one datagram of a burst (the rest is
drained); a stream wait = yes server exits without accepting (it is started again at
once for the queued connection, until cps deactivates the service, bounded here by
`cps = 3 30`), one keeps the listening socket while serving a client (the service is
`Suspended`; a second client waits for the next server), one forks a daemon and
exits (stream nowait, stream and dgram wait = yes); a server closes descriptors 0-2
at once and keeps running (stream nowait and wait = yes); one writes to its
stderr (the client gets it); servers whose exec fails (ENOENT, EACCES, a script with a
missing interpreter, ENOEXEC: broken after the configuration was read, so that the
start itself fails); one runs for minutes under `instances = 1` (the dump counts it,
a second client is refused, a third is served once it is killed); twenty clients at
once; `/bin/true` and `/bin/false`, which exit before a Python server would start.

What every client gets, each service's log lines and the program log must be the
same, but for the differences docs/compatibility.md lists, checked here to be exactly
those: an exec that fails is `FAIL: ID fork` (xinetd: `START`, then `EXIT status=0`),
its program-log line names the service; the consistency check (SIGABRT) reports no
error for a stream `wait = yes` service cps deactivated (xinetd reports two).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "misbehaving_scenario.py"
EXEC_FAILURES = {"sn-enoent": "No such file or directory", "sn-eacces": "Permission denied",
                 "sn-badinterp": "No such file or directory",
                 "sn-enoexec": "Exec format error", "dw-enoent": "No such file or directory"}

# Restarted until cps trips: how many starts fit in cps's second is timing.
LOOPS = ("sw-noaccept", "sw-true")
# Twenty servers at once: how their START and EXIT lines interleave is timing.
CONCURRENT = ("sn-crowd",)

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

Result = dict[str, Any]


def start(workdir: Path, *daemon: str) -> subprocess.Popen[str]:
    workdir.mkdir()
    return subprocess.Popen(["unshare", "-n", "-m", "--propagation", "private",
                             sys.executable, str(SCENARIO), str(workdir), *daemon],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> Result:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    result: Result = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Result]:
    """(xinetd's result, pyxinetd's), both daemons run at the same time."""
    root = tmp_path_factory.mktemp("misbehaving")
    xinetd = start(root / "x", require_xinetd())
    pyxinetd = start(root / "p", sys.executable, "-m", "pyxinetd")
    return finish(xinetd), finish(pyxinetd)


def test_clients_get_what_xinetds_clients_get(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    assert sorted(pyxinetd["clients"]) == sorted(xinetd["clients"])
    differ = {sid: (theirs, pyxinetd["clients"][sid])
              for sid, theirs in xinetd["clients"].items()
              if pyxinetd["clients"][sid] != theirs}
    assert differ == {}


def restarts(lines: list[str]) -> list[str]:
    """A restart loop's lines with its START/EXIT pairs counted once."""
    out: list[str] = []
    for line in lines:
        if line in out[-2:] and line.startswith(("START", "EXIT")):
            continue
        out.append(line)
    return out


def test_service_log_lines_are_xinetds(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    assert list(pyxinetd["services"]) == list(xinetd["services"])
    differ = {}
    for sid, theirs in xinetd["services"].items():
        ours = pyxinetd["services"][sid]
        if sid in LOOPS:
            theirs, ours = restarts(theirs), restarts(ours)
        if sid in CONCURRENT:
            theirs, ours = sorted(theirs), sorted(ours)
        if sid not in EXEC_FAILURES and ours != theirs:
            differ[sid] = (theirs, ours)
    assert differ == {}


def test_failed_execs_are_fail_lines(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    for sid in EXEC_FAILURES:
        started = [f"START: {sid} pid=N from=127.0.0.1",
                   f"EXIT: {sid} status=0 pid=N duration=N(sec)"]
        assert xinetd["services"][sid] == started * 2, sid
        assert pyxinetd["services"][sid] == [f"FAIL: {sid} fork from=127.0.0.1"] * 2, sid


CONSISTENCY = re.compile(r"(Active single-threaded service|disabled service \S+ has 0 "
                         r"running|Consistency check (detected|passed))|^$")


# pyxinetd's own words on a script whose #! interpreter is missing: a warning at load
# time, and a reason after the errno of the failed exec (xinetd says neither).
SCRIPT_WARNING = re.compile(r"WARNING: service (\S+): server \S+: its #! interpreter .* every "
                            r"exec of it will fail \[file=")
SCRIPT_HINT = "; its #! interpreter /nonexistent/interpreter does not exist"


def program_lines(result: Result) -> tuple[list[str], list[tuple[str, str]]]:
    """The program log without the start-up line, the consistency check's verdicts,
    pyxinetd's warnings about scripts and the failed execs, and the failed execs as
    (path, reason)."""
    kept, execs = [], []
    for line in result["program"]:
        text = re.sub(r"^xinetd\[N\]: ", "", line)
        failed = (re.match(r"ERROR: execv\( (\S+) \) failed: (.*) \(errno = \d+\)$", text)
                  or re.match(r"ERROR: [\w-]+: cannot start (\S+): exec: (.*)$", text))
        if failed:
            execs.append((Path(failed.group(1)).name, failed.group(2).replace(SCRIPT_HINT, "")))
        elif not (CONSISTENCY.search(text) or "started with" in text
                  or SCRIPT_WARNING.match(text)):
            kept.append(text)
    return kept, execs


def test_program_log_is_xinetds(results: tuple[Result, Result]) -> None:
    xinetd, pyxinetd = results
    theirs, their_execs = program_lines(xinetd)
    ours, our_execs = program_lines(pyxinetd)
    assert ours == theirs
    assert our_execs == their_execs
    assert [reason for _, reason in their_execs] == [
        reason for reason in EXEC_FAILURES.values() for _ in range(2)]
    # The script with a missing interpreter, named at load time and at each exec.
    warned = [m.group(1) for line in pyxinetd["program"]
              if (m := SCRIPT_WARNING.match(re.sub(r"^xinetd\[N\]: ", "", line)))]
    assert warned and all(name.endswith("-badinterp") for name in warned), warned
    assert any(SCRIPT_HINT in line for line in pyxinetd["program"])
    # The deactivation of the stream wait = yes services that never accept.
    assert theirs.count("ERROR: Deactivating service sw-noaccept due to excessive "
                        "incoming connections.  Restarting in 30 seconds.") == 1
    checks = [line for line in pyxinetd["program"] if "Consistency check" in line]
    assert checks and set(checks) == {"xinetd[N]: INFO: Consistency check passed"}


def test_the_scenario_reached_the_servers(results: tuple[Result, Result]) -> None:
    """A sample of what xinetd showed, so the equalities above compare real runs."""
    xinetd, _ = results
    services, clients = xinetd["services"], xinetd["clients"]
    for model in ("sn", "sw", "dw"):
        assert services[f"{model}-segv"][1].startswith(f"EXIT: {model}-segv signal=11 ")
        assert services[f"{model}-kill"][1].startswith(f"EXIT: {model}-kill signal=9 ")
        assert services[f"{model}-term"][1].startswith(f"EXIT: {model}-term signal=15 ")
        assert services[f"{model}-exit3"][1].startswith(f"EXIT: {model}-exit3 status=3 ")
    assert clients["dw-noread"] == {"first": {"replies": []}, "second": {"replies": []}}
    assert clients["dw-partial"]["second"] == {"replies": ["hi partial got=b1"]}
    assert len(services["dw-partial"]) == 4
    assert services["sw-noaccept"][-1] == ("FAIL: sw-noaccept connections per second "
                                           "from=<no address>")
    assert restarts(services["sw-true"]) == [
        "START: sw-true pid=N from=<no address>", "EXIT: sw-true status=0 pid=N "
        "duration=N(sec)", "FAIL: sw-true connections per second from=<no address>"]
    assert clients["sw-hold"]["first"]["during"]["state"] == "Suspended"
    assert clients["sw-hold"]["first"]["b"] == {"data": "hi hold\n", "end": "eof"}
    assert clients["sw-daemon"]["second"]["data"] == "hi daemon\nlate\n"
    assert clients["sn-stderr"]["first"]["data"] == "hi stderr\nout\nerr\n"
    assert clients["sn-closeout"]["first"]["exit_logged_at_eof"] is False
    assert "running_servers = 1" in clients["sn-long"]["first"]["during"]["counters"]
    assert clients["sn-long"]["first"]["c"] == "hi long\n"
    assert "FAIL: sn-long service_limit from=127.0.0.1" in services["sn-long"]
    assert "running_servers = 0" in clients["sn-crowd"]["first"]["after"]["counters"]
    assert sum(line.startswith("EXIT") for line in services["sn-crowd"]) == 20
