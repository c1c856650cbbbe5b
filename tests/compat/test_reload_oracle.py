"""Reconfiguration (SIGHUP) side by side: pyxinetd against the real xinetd 2.3.15.3.

tests/helpers/reload_diff_scenario.py runs one configuration with clients and servers
running through some thirty edits, each followed by SIGHUP (a service removed, renamed,
moved to another port or address, its only_from or instances tightened, wait and
socket_type flipped, an include file deleted, a syntax error and its fix, disable
toggled, the defaults' log_type changed, ...). Both daemons run the scenario at the
same time, each in its own network namespace; after every reload the scenario records
what a client sees (the answers of the ports concerned, the held clients whose
connection ended), what the servers noted (the signal they got) and the new program-
and service-log lines, normalised.

Every step must look the same on both daemons once the documented deviations are
taken out (`canonical()`; each rule names its place in docs/compatibility.md). The
steps where pyxinetd deliberately does something else are in DEVIATIONS, each checked
on both daemons.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "reload_diff_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))

Steps = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Steps, Steps]:
    """(xinetd's steps, pyxinetd's), the two scenarios run side by side."""
    xinetd = require_xinetd()
    root = tmp_path_factory.mktemp("reload-diff")
    procs = []
    for name, daemon in (("x", [xinetd]), ("p", [sys.executable, "-m", "pyxinetd"])):
        (root / name).mkdir()
        procs.append(subprocess.Popen(
            ["unshare", "-n", sys.executable, str(SCENARIO), str(root / name), *daemon],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        # A bound for a scenario that hangs, not for a slow one: on a loaded machine
        # pyxinetd's run takes about 100 s (20 s alone).
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        steps = json.loads(out.strip().splitlines()[-1])["steps"]
        results.append({name: seen for name, seen in steps})
    return results[0], results[1]


# --------------------------------------------------------------------------- normalising

# Builtins and redirects that xinetd forks and pyxinetd serves in its loop.
IN_LOOP = ("echo-stream", "redir", "flipsock")
_EXPLANATION = re.compile(r" \(.*\)(?= \[file=)")


def _whole_lines(lines: list[str]) -> list[str]:
    """xinetd's freed id (below) may hold a newline byte: a line that does not start
    with a level belongs to the one before it."""
    whole: list[str] = []
    for line in lines:
        if whole and not re.match(r"[A-Z]+: ", line):
            whole[-1] += "\n" + line
        else:
            whole.append(line)
    return whole


def program_lines(lines: list[str], *, xinetd: bool) -> Counter[str]:
    out: list[str] = []
    readjusting = ""
    for line in (_whole_lines(lines) if xinetd else lines):
        if line.startswith("NOTICE: readjusting service "):
            readjusting = line.rsplit(" ", 1)[1]
        if xinetd and re.fullmatch(r"NOTICE: service (.*[^\w.-].*|) deactivated", line,
                                   re.S | re.ASCII):
            # When readjust() fails, xinetd prints the id it has just freed (bytes that
            # are no id, or none at all when the freed memory starts with a NUL). An id
            # is ASCII: freed bytes read as non-ASCII letters ("ɓs8PU") are no id either.
            line = f"NOTICE: service {readjusting} deactivated"
        if not xinetd and line.startswith("ERROR: Cannot open "):
            continue  # the reason before `creation of ID log failed`, as at start-up
        if line.startswith("DEBUG:"):
            continue  # DEBUG lines only with -d (compatibility.md, configuration messages)
        if "unknown child process" in line or "started with" in line:
            continue  # xinetd's early bookkeeping (§6.2); the version banner
        if xinetd:
            if re.search(rf"Sending signal \d+ to ({'|'.join(IN_LOOP)}) server", line):
                continue  # pyxinetd serves them in its loop: closed, not signalled
            # xinetd SIGKILLs external servers at once, and its wait loop may log the
            # same line twice (reconfig.c sendsig()); pyxinetd sends SIGTERM first.
            line = line.replace("Sending signal 9 to", "Sending signal 15 to")
            if out and out[-1] == line and "Sending signal" in line:
                continue
        else:
            line = _EXPLANATION.sub("", line)   # pyxinetd's reason after xinetd's words
        out.append(line)
    return Counter(out)


def canonical(seen: dict[str, Any], *, xinetd: bool) -> dict[str, Any]:
    """What must match, the documented deviations taken out."""
    noted = [n for n in seen["servers noted"] if xinetd or n.split()[1] != "sig=SIGTERM"]
    return {
        "probes": seen["probes"],
        "held clients ended": seen["held clients ended"],
        "servers noted": sorted(noted),
        "program log": program_lines(seen["program log"], xinetd=xinetd),
        "service logs": {f: sorted(lines) for f, lines in seen["service logs"].items()},
    }


# Steps where pyxinetd differs on purpose, or as a consequence of an earlier one.
DEVIATIONS = {
    "bind changed",                     # connection servers kept on a socket change
    "only_from excludes the client",    # running servers checked again (the manual)
    "instances lowered",                # idem
    "socket_type flipped",              # in-loop sessions closed, §8.2 #6
    "two services swap their bind addresses",
    "a service's closing brace missing",  # the next entry is not swallowed, §8.2 #10
    "closing brace back",               # ... so it was never removed
    "defaults: disabled = ID",          # ... so its server ends only now
    "end",
    "bad value in defaults",            # xinetd exits, §8.2 #9
}


def test_every_step_was_run(runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    assert list(x) == list(p)
    assert len(x) > 30


@pytest.mark.parametrize("step", [
    "start", "nothing changed", "service removed", "service renamed", "port changed",
    "wait flipped", "service added", "include file removed", "syntax error",
    "syntax fixed", "disabled", "enabled again", "server changed", "id changes case only",
    "redirect target changed", "wait = yes dgram: bind changed", "new service's port in use",
    "wait = yes dgram: port changed", "wait = yes dgram removed",
    "file named by include removed", "defaults: disabled removed", "bind removed",
    "redirect removed", "a service's own log_type set",
    "wait = yes stream: server_args changed", "wait = yes stream: bind changed",
    "main file missing", "defaults log_type changed",
    "a service's log file cannot be created",
])
def test_step_looks_the_same(runs: tuple[Steps, Steps], step: str) -> None:
    x, p = runs
    assert step not in DEVIATIONS
    ours, theirs = canonical(p[step], xinetd=False), canonical(x[step], xinetd=True)
    assert ours == theirs, _difference(ours, theirs)


def _difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """What differs, item by item: for counted lines, those only pyxinetd's run has
    and those only xinetd's has (pytest's own diff cuts long counters short)."""
    parts = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if a == b:
            continue
        if isinstance(a, Counter) and isinstance(b, Counter):
            parts.append(f"{key}: only pyxinetd {dict(a - b)}; only xinetd {dict(b - a)}")
        else:
            parts.append(f"{key}: pyxinetd {a!r}; xinetd {b!r}")
    return "\n".join(parts)


def test_removed_servers_get_sigterm_where_xinetd_sends_sigkill(
        runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    for step in ("service removed", "service renamed", "port changed", "wait flipped",
                 "include file removed", "syntax error", "disabled"):
        assert any("Sending signal 9 to" in line for line in x[step]["program log"]), step
        assert any("Sending signal 15 to" in line for line in p[step]["program log"]), step
        assert any("sig=SIGTERM" in n for n in p[step]["servers noted"]), step
        assert not any("sig=" in n for n in x[step]["servers noted"]), step


def test_a_socket_change_keeps_connection_servers(runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    step = "bind changed"
    assert x[step]["probes"] == p[step]["probes"] == {
        "127.0.0.1": "refused", "127.0.0.2": "answer 'mvbind\\n'"}
    assert x[step]["held clients ended"] == {"mvbind": "closed"}
    assert p[step]["held clients ended"] == {}


def test_running_servers_are_checked_again(runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    for step, reason, ended in (("only_from excludes the client", "address", "acl"),
                                ("instances lowered", "instances", "inst-2")):
        assert x[step]["held clients ended"] == {}
        assert p[step]["held clients ended"] == {ended: "closed"}
        assert any(f"no longer allowed (reason={reason})" in line
                   for line in p[step]["program log"])
        # New clients are refused by both.
        assert x[step]["probes"].keys() == p[step]["probes"].keys()
        assert all(r in ("closed", "reset") for r in [*x[step]["probes"].values(),
                                                      *p[step]["probes"].values()])


def test_in_loop_sessions_of_a_removed_builtin_are_closed(runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    step = "socket_type flipped"
    assert x[step]["probes"] == p[step]["probes"] == {"tcp": "refused", "udp": "silent"}
    assert x[step]["held clients ended"] == {}   # xinetd's forked discard survives
    assert p[step]["held clients ended"] == {"discard-flipsock": "closed"}


def test_services_swapping_addresses_both_serve(runs: tuple[Steps, Steps]) -> None:
    # xinetd re-creates each socket in turn: the first cannot bind, the address is still
    # the other's, and stays deactivated. pyxinetd serves both.
    x, p = runs
    step = "two services swap their bind addresses"
    assert x[step]["probes"] == {"127.0.0.1": "answer 'swap2\\n'", "127.0.0.2": "refused"}
    assert any("bind failed" in line for line in x[step]["program log"])
    assert p[step]["probes"] == {"127.0.0.1": "answer 'swap2\\n'",
                                 "127.0.0.2": "answer 'swap1\\n'"}
    assert not any("bind failed" in line for line in p[step]["program log"])


def test_an_unclosed_block_does_not_swallow_the_next_service(
        runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    step = "a service's closing brace missing"
    assert x[step]["probes"] == {"unc": "refused", "next service": "refused"}
    assert p[step]["probes"] == {"unc": "refused", "next service": "answer 'dis2\\n'"}


def test_survivors(runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    assert x["end"]["probes"]["echo-stream"] == p["end"]["probes"]["echo-stream"] \
        == "answer 'again\\n'"
    # Kept by xinetd, which checks nothing again: acl and the second inst server.
    # Kept by pyxinetd: mvbind and the swapped servers (their sockets changed).
    assert Counter(x["end"]["probes"]["servers alive"]) - Counter(
        p["end"]["probes"]["servers alive"]) == Counter(["acl", "inst"])
    assert Counter(p["end"]["probes"]["servers alive"]) - Counter(
        x["end"]["probes"]["servers alive"]) == Counter(["mvbind", "swap1", "swap2"])
    for step in ("end",):
        assert x[step]["service logs"] == p[step]["service logs"]


def test_a_bad_defaults_value_does_not_stop_pyxinetd(runs: tuple[Steps, Steps]) -> None:
    x, p = runs
    step = "bad value in defaults"
    assert x[step]["probes"] == {"added": "refused"}
    assert any("xinetd will exit" in line for line in x[step]["program log"])
    assert p[step]["probes"] == {"added": "answer 'added\\n'"}
    assert any(line.startswith("NOTICE: Reconfigured:") for line in p[step]["program log"])
