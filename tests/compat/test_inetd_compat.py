"""-inetd_compat against the real xinetd 2.3.15.3, and `convert` against -inetd_compat.

For every corpus inetd.conf and every file of ./synthetic-inetd, xinetd runs on an
empty main file with -inetd_compat and the file bound over /etc/inetd.conf in its
private mount namespace (the real /etc is never written); every server the file
names exists there as a stub. In the same namespace pyxinetd loads the same file with
`check --inetd-compat`, and loads the output of `pyxinetd convert` with plain `check`.

- For the entries xinetd accepts, both must activate the same services. The
  deliberate differences (docs/compatibility.md, "inetd.conf") are applied to xinetd's
  side first: stream builtins are `NAME-stream`, not `NAME-dgram`; an entry without an
  argv[0] field runs with the server's name as argv[0], not an empty argv; `.N` rate
  suffixes become cps. Beyond that pyxinetd may only activate services for the forms
  xinetd rejects or mishandles (EXTRA below), and give other attributes to the services
  of those forms both activate (DIFFERING).
- The converted file must yield the same services (ids, ports, argv, users, ...) as
  -inetd_compat, tcpd entries compared by what tcpd would execute.
- The real xinetd, loading the converted file as its own configuration, must activate
  the services `pyxinetd check` lists for it, with the same attributes.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from corpus import compare, corpus_root, deactivated_ids
from oracle import DumpState, XinetdRun, parse_dump, run_xinetd_dump, xinetd_path

pytestmark = pytest.mark.oracle

HELPER = Path(__file__).with_name("inetd_check.py")
# The corpus, and files of the forms it lacks (tcp6, rpc/udp, `.N` and `/A/B/C` limits,
# host prefixes, continuation lines, `#` in arguments, CRLF, no final newline, upper-case
# socket types, long lines). The corpus is empty without shared/ (a plain checkout): its
# cases are then absent, not an error that stops the whole collection.
SYNTHETIC = Path(__file__).with_name("synthetic-inetd")
SOURCES: dict[str, Path] = {
    **({p.name: p for p in sorted((corpus_root() / "inetd.conf").iterdir())
        if p.is_file() and p.name != "INDEX.tsv"}
       if (corpus_root() / "inetd.conf").is_dir() else {}),
    **{p.name: p for p in sorted(SYNTHETIC.glob("*.inetd.conf"))},
}
FILES = sorted(SOURCES)

# Services pyxinetd activates from forms xinetd rejects (docs/compatibility.md): ids by file.
EXTRA: dict[str, set[str]] = {
    # `discard` is refused by xinetd; `tcp,rcvbuf=1k` rejected (options ignored here).
    # RPC lines (rstatd/1-3 ... rpc/udp) are skipped by xinetd without a word.
    "NetBSD__src__inetd.conf": {"discard-stream", "discard-dgram", "rstatd", "rusersd", "walld"},
    # `127.0.0.1:comsat`: xinetd takes the address as part of the name (no such port).
    "openbsd__src__inetd.conf": {"comsat"},
    "adamyg__inetd-win32__inetd.example": {"discard-stream", "discard-dgram", "echo-stream"},
    # tcp4, `discard`, `root:root`, rpc/udp, `127.0.0.1:smtp` and `[::1]:smtp`, and
    # `tcpmux/+status` (xinetd: a second `tcpmux`, which fails to bind).
    "edge-forms.inetd.conf": {"chargen-stream", "discard-stream", "discard-dgram", "ftp",
                              "rstatd", "smtp", "status"},
    # tcp6, udp6, rpc/tcp.
    "fuzz-forms.inetd.conf": {"telnet", "tftp", "rusersd"},
}

# Services both daemons activate, with attributes a documented deviation sets: only
# their activation is compared. Ids by file, with the reason.
DIFFERING: dict[str, dict[str, str]] = {
    "edge-forms.inetd.conf": {
        "finger": "nowait/10/0/2 sets instances and per_source",
        "time-dgram": "wait.20 is wait (xinetd: a bad wait value, nowait)",
        "ident": "the continuation line's arguments",
    },
    "fuzz-forms.inetd.conf": {"talk": "wait.5 is wait (xinetd: a bad wait value, nowait)"},
    "long-first-line.inetd.conf": {"finger": "read whole (xinetd cuts it at 8 KiB)"},
}

# Entries of the synthetic files that neither daemon serves (their converted blocks are
# dropped too): an upper-case protocol finds no port in /etc/services.
NOT_SERVED: dict[str, set[str]] = {"fuzz-forms.inetd.conf": {"daytime", "echo"}}


def _server_paths(text: str) -> list[str]:
    paths = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 6 and not words[0].startswith("#") and words[5].startswith("/"):
            paths.append(words[5])
            if words[5].endswith("/tcpd") and len(words) > 6 and words[6].startswith("/"):
                paths.append(words[6])   # the daemon the converter runs without tcpd
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[XinetdRun, Any]]]:
    if xinetd_path() is None:
        from oracle import unavailable_reason

        pytest.skip(unavailable_reason())
    base = tmp_path_factory.mktemp("inetd-compat")
    main = base / "xinetd.conf"
    main.write_text("defaults\n{\n}\n")
    before = shlex.join([sys.executable, str(HELPER), str(main)])

    def one(name: str) -> tuple[XinetdRun, Any]:
        source = SOURCES[name]
        stubs = _server_paths(source.read_text(errors="replace"))
        run = run_xinetd_dump(main, stubs=stubs, before=before, inetd_conf=source, timeout=60)
        return run, _reported(run)

    with ThreadPoolExecutor(max_workers=3) as pool:
        yield dict(zip(FILES, pool.map(one, FILES)))


def _reported(run: XinetdRun) -> Any:
    """The JSON pyxinetd printed in the run's `before` command, or what went wrong."""
    try:
        return json.loads(run.before_stdout)
    except ValueError:
        return {"error": run.before_stderr or run.before_stdout or "no output"}


def _as_pyxinetd_reads_it(state: DumpState) -> DumpState:
    """xinetd's dump with the documented deviations applied."""
    for svc in state.services:
        internal = "INTERNAL" in svc.types
        if internal and svc.socket_type == "stream" and svc.id.endswith("-dgram"):
            svc.id = svc.id[: -len("dgram")] + "stream"
        if internal and svc.id == "(null)":
            svc.id = svc.name
        if svc.server is not None and svc.server_argv == ():
            svc.server_argv = (os.path.basename(svc.server),)
        # CRLF line ends are read as LF; xinetd keeps the \r in a line's last field.
        if svc.server_argv and svc.server_argv[-1].endswith("\r"):
            svc.server_argv = (*svc.server_argv[:-1], svc.server_argv[-1][:-1])
    return state


@pytest.mark.parametrize("name", FILES)
def test_inetd_compat_same_services_as_xinetd(name: str,
                                               runs: dict[str, tuple[XinetdRun, Any]]) -> None:
    run, ours = runs[name]
    assert not run.harness_error, run.harness_error
    assert "error" not in ours, ours.get("error")
    assert run.started, run.log
    state = _as_pyxinetd_reads_it(parse_dump(run.dump))
    report = json.loads(json.dumps(ours["compat"]))   # a copy: the other test reads it too
    extra = EXTRA.get(name, set())
    # `.N` suffixes: xinetd ignores them (keeping the default cps); pyxinetd maps them.
    source = SOURCES[name].read_text(errors="replace")
    if "nowait." in source or "wait." in source:
        for svc in report["services"]:
            svc["cps"] = [50, 10]
    assert {s["id"] for s in report["services"]} >= extra
    report["services"] = [s for s in report["services"] if s["id"] not in extra]
    differing = DIFFERING.get(name, {})
    activated = {s.id for s in state.services} & {s["id"] for s in report["services"]}
    assert set(differing) <= activated, sorted(set(differing) - activated)
    state.services = [s for s in state.services if s.id not in differing]
    report["services"] = [s for s in report["services"] if s["id"] not in differing]
    diffs = compare(state, report, deactivated_ids(run.log))
    assert not diffs, "\n".join(diffs) + "\n--- xinetd log ---\n" + run.log


def _as_converted(svc: dict[str, Any]) -> dict[str, Any]:
    """A service of -inetd_compat as an xinetd file can hold it (convert warns)."""
    # A CR ending an argument (inside a line; CRLF ends are read as LF) is kept by
    # -inetd_compat as by xinetd; an xinetd file cannot hold one at a value's end.
    args = [w.rstrip("\r") for w in svc["server_args"]]
    # From a `#` word on, arguments cannot be written in an xinetd file.
    cut = next((k for k, w in enumerate(args) if w.startswith("#")), len(args))
    return {**svc, "server_args": args[:cut]}


def _effective(svc: dict[str, Any]) -> dict[str, Any]:
    """What a service runs: tcpd entries by the daemon tcpd would execute."""
    from pyxinetd.config.inetdentry import unwrap_tcpd

    server, argv = svc["server"], tuple(([svc["argv0"]] if svc["argv0"] else [])
                                        + svc["server_args"])
    if server is not None:
        server, argv = unwrap_tcpd(server, argv) or (server, argv)
    keys = ("name", "type", "socket_type", "protocol", "port", "wait", "user", "group",
            "groups", "bind", "family", "v6only", "cps", "instances", "per_source",
            "rpc_version", "rpc_number")
    return {**{k: svc.get(k) for k in keys}, "server": server, "argv": list(argv)}


@pytest.mark.parametrize("name", FILES)
def test_converted_file_gives_the_same_services(name: str,
                                                runs: dict[str, tuple[XinetdRun, Any]]) -> None:
    _, ours = runs[name]
    assert "error" not in ours, ours.get("error")
    compat = sorted(((_effective(_as_converted(s)), s["id"])
                     for s in ours["compat"]["services"]), key=repr)
    converted = sorted(((_effective(_as_converted(s)), s["id"])
                        for s in ours["converted"]["services"]), key=repr)
    assert [s for s, _ in converted] == [s for s, _ in compat], (
        f"compat {[i for _, i in compat]}\nconverted {[i for _, i in converted]}\n"
        + json.dumps(ours["converted"]["diagnostics"], indent=1))
    # Same ids, except that blocks sharing one under -inetd_compat get their own.
    shared = {i for _, i in compat if [j for _, j in compat].count(i) > 1}
    for (_, theirs), (_, mine) in zip(compat, converted):
        assert mine == theirs or (theirs in shared and mine.startswith(theirs + "-")), (
            theirs, mine)
    assert len({i for _, i in converted}) == len(converted)
    # What -inetd_compat drops with a service name, the converted file drops too
    # (lines that could not be read at all are comments in the converted file).
    dropped = sorted(d["name"] for d in ours["compat"]["dropped"] if d["name"] is not None)
    assert sorted(d["name"] for d in ours["converted"]["dropped"]) == dropped
    assert compat or dropped


CONVERTED = SOURCES


@pytest.fixture(scope="module")
def converted_runs(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[dict[str, tuple[XinetdRun, Any]]]:
    """For every corpus file: the real xinetd and `pyxinetd check` on the output of
    `pyxinetd convert --daemon-dir /usr/sbin` (the file moved off inetd.conf)."""
    if xinetd_path() is None:
        from oracle import unavailable_reason

        pytest.skip(unavailable_reason())
    from pyxinetd.convert import convert

    base = tmp_path_factory.mktemp("inetd-converted")

    def one(name: str) -> tuple[XinetdRun, Any]:
        source = CONVERTED[name].read_bytes().decode("utf-8", "surrogateescape")
        result = convert(source, name, daemon_dir="/usr/sbin")
        conf = base / f"{name}.conf"
        conf.write_text("defaults\n{\n}\n" + result.text, encoding="utf-8",
                        errors="surrogateescape")
        stubs = [line.split("=", 1)[1].strip() for line in result.text.splitlines()
                 if line.strip().startswith("server ")]
        before = shlex.join([sys.executable, "-m", "pyxinetd", "check", "--json", "-f",
                             str(conf)])
        run = run_xinetd_dump(conf, stubs=stubs, before=before, timeout=60)
        return run, _reported(run)

    with ThreadPoolExecutor(max_workers=3) as pool:
        yield dict(zip(CONVERTED, pool.map(one, CONVERTED)))


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_converted_file_is_served_alike_by_xinetd(
        name: str, converted_runs: dict[str, tuple[XinetdRun, Any]]) -> None:
    # The converted blocks name their ids, argv and limits: none of the deviations of
    # -inetd_compat applies, xinetd must activate every block as pyxinetd does.
    run, ours = converted_runs[name]
    assert not run.harness_error, run.harness_error
    assert "error" not in ours, ours.get("error")
    assert run.started, run.log
    if CONVERTED[name].parent == SYNTHETIC:   # every entry there is served
        assert ours["services"], ours["dropped"]
        assert {d["name"] for d in ours["dropped"]} == NOT_SERVED.get(name, set()), \
            ours["dropped"]
    diffs = compare(parse_dump(run.dump), ours, deactivated_ids(run.log))
    assert not diffs, "\n".join(diffs) + "\n--- xinetd log ---\n" + run.log


def test_long_first_line_is_read_whole_with_a_warning_where_xinetd_cuts_it(
        runs: dict[str, tuple[XinetdRun, Any]]) -> None:
    name = "long-first-line.inetd.conf"
    run, ours = runs[name]
    assert run.started, run.log
    theirs = next(s for s in parse_dump(run.dump).services if s.id == "finger")
    mine = next(s for s in ours["compat"]["services"] if s["id"] == "finger")
    argv = [mine["argv0"], *mine["server_args"]]
    line = SOURCES[name].read_text().split("\n", 1)[0]
    assert argv == line.split()[6:]
    # xinetd stops at 8 KiB, within a word: the words before it are the file's.
    cut = list(theirs.server_argv)
    assert len(" ".join(cut)) < 8 * 1024 < len(line)
    assert 1 < len(cut) < len(argv) and cut[:-1] == argv[:len(cut) - 1]
    assert argv[len(cut) - 1].startswith(cut[-1])
    assert [d for d in ours["compat"]["diagnostics"] if d["file"] == "/etc/inetd.conf"
            and d["line"] == 1 and d["severity"] == "warning"], ours["compat"]["diagnostics"]


def test_long_comment_line_stays_one_comment_where_xinetd_reads_its_rest_as_a_line(
        runs: dict[str, tuple[XinetdRun, Any]]) -> None:
    run, ours = runs["long-comment-line.inetd.conf"]
    assert run.started, run.log
    assert "Bad socket type: (null) [file=/etc/inetd.conf] [line=2]" in run.log, run.log
    said = [d for d in ours["compat"]["diagnostics"]
            if d["file"] == "/etc/inetd.conf" and d["severity"] in ("warning", "error")]
    assert not said
    assert [s["id"] for s in ours["compat"]["services"]] == ["echo-stream"]
