"""`include` and `includedir` at load time, against the real xinetd 2.3.15.3.

Each case builds a small tree of files in tmp_path; xinetd loads it in private
namespaces (tests/oracle.py) and answers with its state dump, pyxinetd through
`pyxinetd check --json`. Both must activate the same services in the same order (the
order the files are read in), and every line xinetd logs about the configuration must
have a pyxinetd line of the same level that starts with xinetd's text, about the same
file. pyxinetd's lines xinetd has no counterpart for are listed per case (EXTRA): each
is a deliberate addition (docs/compatibility.md).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corpus import compare, deactivated_ids
from oracle import parse_dump, require_xinetd, run_xinetd_dump

pytestmark = pytest.mark.oracle

_LOG_LINE = re.compile(r"^\S+ xinetd\[\d+\]: ([A-Z]+): (.*?)(?: \[file=([^\]]*)\] \[line=\d+\])?$")
# xinetd's lines about starting and stopping, not about the files.
_NOT_ABOUT_FILES = re.compile(r"started with |Started working|generated state dump|"
                              r"^Exiting\.\.\.$|bind failed|bind retry attempt|failed to start")


def _service(name: str, port: int) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = /bin/true\n"
            f"\tport = {port}\n}}\n")


@dataclass(frozen=True)
class Special:
    """A tree entry that is not a text file: a symlink (to `target`), a FIFO or a folder."""

    kind: str
    target: str = ""


FIFO, FOLDER = Special("fifo"), Special("folder")


def _symlink(target: str) -> Special:
    return Special("symlink", target)


Tree = dict[str, "str | Special"]


@dataclass(frozen=True)
class Case:
    tree: Tree                          # relative path -> text (`@` = the root) or a Special
    main: str
    extra: tuple[str, ...] = ()         # pyxinetd-only lines: "LEVEL: text start"
    xinetd_only: tuple[str, ...] = ()   # xinetd's lines pyxinetd has no match for, likewise
    xinetd_fails: str = ""              # pinned: "crashes" or "hangs" (never starts working)
    services: tuple[str, ...] = field(default=())   # pyxinetd's, in order, when xinetd fails


CASES: dict[str, Case] = {
    "skipped-names-and-order": Case(
        {"d/a.conf": _service("dotted", 9001), "d/b~": _service("tilde", 9002),
         "d/.hidden": _service("hidden", 9003), "d/c#x": _service("hashname", 9004),
         "d/#c": _service("hashfirst", 9005), "d/Z": _service("dup", 9006),
         "d/a": _service("dup", 9007), "d/e f": _service("spaced", 9010),
         "d/-": _service("dash", 9011), "d/empty": "",
         "d/x.dpkg-dist": _service("leftover", 9012)},
        "includedir @/d\n",
        extra=("INFO: @/d/a.conf is not read",
               "WARNING: service dup: id dup is also used")),
    "symlinks-and-subfolders": Case(
        {"other": _service("vialink", 9009), "d/sub": FOLDER, "d/sub/x": _service("insub", 9008),
         "d/lnk": _symlink("@/other"), "d/lnkdir": _symlink("@/d/sub"),
         "d/dangling": _symlink("@/nothere"), "d/pipe": FIFO},
        "includedir @/d\n"),
    "missing-targets": Case({}, "include @/nofile\nincludedir @/nodir\nincludedir @/main.conf\n"
                                + _service("after", 9020)),
    # Each file is parsed on its own: an entry a file leaves open ends there, with
    # xinetd's lines at that file's last line, and the next file starts afresh.
    "files-ending-inside-entries": Case(
        {"d/a": _service("cut", 9034)[:-2] + "\n# the end\n",
         "d/b": "defaults\n{\n\tinstances = 5\n",
         "d/c": _service("whole", 9035),
         "d/d": "service bare\n\n",
         "d/e": _service("off", 9036).replace("\tport", "\tdisable = yes\n\tport")[:-2]},
        "includedir @/d\n", extra=("DEBUG: removing off: disabled (disable = yes)",)),
    # Twenty files deep, each including the next: no loop, every one is read.
    "deep-include-chain": Case(
        {**{f"f{i}": _service(f"deep{i}", 9040 + i) + f"include @/f{i + 1}\n"
            for i in range(1, 21)}, "f21": ""},
        "include @/f1\n"),
    # xinetd opens a folder, reads nothing from it and says it is reading it; pyxinetd
    # says it cannot be read (docs/compatibility.md). The services are the same.
    "include-a-folder": Case({"sub": FOLDER, "x": _service("afterdir", 9060)},
                             "include @/sub\ninclude @/x\n",
                             extra=("ERROR: Unable to open included configuration file: @/sub "
                                    "(Is a directory)",),
                             xinetd_only=("DEBUG: Reading included configuration file: @/sub",)),
    # A folder written with a trailing '/': xinetd names its files FOLDER//NAME, in
    # its lines and in the [file=] of every line about them.
    "trailing-slash": Case(
        {"d/a": _service("slashed", 9061).replace("\tport", "\twait = no\n\tport"),
         "d/b": _service("other", 9062)},
        "includedir @//d//\n"),
    "include-a-fifo": Case({"pipe": FIFO}, "include @/pipe\n" + _service("after", 9021),
                           xinetd_fails="hangs", services=("after",)),
    "in-a-service-block": Case(
        {"x": _service("xx", 9024)},
        _service("blk", 9025).replace("\tport", "\tinclude @/x\n\tport")),
    "trailing-blanks": Case({"x": _service("tr", 9026), "dd/y": _service("trd", 9027)},
                            "include @/x \t\nincludedir @/dd\t \n"),
    "defaults-in-an-included-file": Case(
        {"x": "defaults\n{\n\tinstances = 7\n}\n" + _service("dflt", 9028)}, "include @/x\n"),
    "relative-path": Case({"x": _service("rel", 9030)}, "include ..@/x\n"),
    "includes-itself": Case({"self": "include @/self\n" + _service("inself", 9031)},
                            "include @/self\n", extra=("ERROR: @/self includes itself",
                                   "DEBUG: Reading included configuration file: @/self"),
                            xinetd_fails="crashes", services=("inself",)),
    "include-cycle": Case({"a": "include @/b\n" + _service("ina", 9032),
                           "b": "include @/a\n" + _service("inb", 9033)},
                          "include @/a\n", extra=("ERROR: @/a includes itself",
                                 "DEBUG: Reading included configuration file: @/"),
                          xinetd_fails="crashes", services=("inb", "ina")),
}


def _build(case: Case, root: Path) -> Path:
    """Make the case's tree under root; `@` in texts and targets stands for root."""
    base = str(root)
    for rel, content in case.tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content.replace("@", base))
        elif content.kind == "symlink":
            path.symlink_to(content.target.replace("@", base))
        elif content.kind == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir(exist_ok=True)
    main = root / "main.conf"
    # A relative path is written from the folder both daemons start in, /run.
    main.write_text(case.main.replace("..@", "../" + base.lstrip("/")).replace("@", base))
    return main


def _lines_of_xinetd(log: str) -> list[tuple[str, str, str | None]]:
    lines = []
    for raw in log.splitlines():
        m = _LOG_LINE.match(raw)
        if m and not _NOT_ABOUT_FILES.search(m.group(2)):
            lines.append((m.group(1), m.group(2), m.group(3)))
    return lines


def _lines_of_pyxinetd(report: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(d["severity"].upper(), d["message"], d["file"]) for d in report["diagnostics"]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_includes_load_as_in_xinetd(name: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from pyxinetd.check import run_check

    require_xinetd()
    case = CASES[name]
    main = _build(case, tmp_path)
    # xinetd waits in open() on a FIFO until a signal (the harness's SIGTERM) breaks it.
    run = run_xinetd_dump(main, timeout=3 if case.xinetd_fails == "hangs" else 15)
    assert not run.harness_error, run.harness_error
    monkeypatch.chdir("/run")          # xinetd's working folder in its namespace
    report = json.loads(run_check(str(main), as_json=True)[0])
    ours = [s["id"] for s in report["services"]]
    if case.xinetd_fails == "crashes":
        # xinetd recurses into the same file until its stack runs out (SIGSEGV);
        # pyxinetd reads each file once and says so.
        assert not run.started and run.returncode not in (0, None), run.log[-2000:]
        assert run.log.count("Reading included configuration file") > 100
        assert ours == list(case.services)
    elif case.xinetd_fails == "hangs":
        # pyxinetd refuses the FIFO at once with xinetd's line and goes on.
        assert not run.started, run.log
        assert ours == list(case.services)
    else:
        state = parse_dump(run.dump) if run.started else None
        assert compare(state, report, deactivated_ids(run.log)) == []
        theirs = [s.id for s in state.services] if state is not None else []
        assert ours == theirs
    base = str(tmp_path)
    mine = _lines_of_pyxinetd(report)
    xinetd_only = [x.replace("@", base) for x in case.xinetd_only]
    for level, text, where in ([] if case.xinetd_fails == "crashes" else _lines_of_xinetd(run.log)):
        if text.startswith("Reading included configuration file"):
            # xinetd places an includedir's later files at the previous file's end
            # (docs/compatibility.md, "Diagnostics"): only the text is compared.
            match = [m for m in mine if m[:2] == (level, text)]
        else:
            # xinetd names no file for some lines; pyxinetd always does.
            match = [m for m in mine if m[0] == level and m[1].startswith(text)
                     and where in (None, m[2])]
        if not match and f"{level}: {text}" in xinetd_only:
            xinetd_only.remove(f"{level}: {text}")
            continue
        assert match, (f"xinetd's {level}: {text} [file={where}] has no pyxinetd line:\n"
                       + "\n".join(map(str, mine)))
        mine.remove(match[0])
    assert xinetd_only == [], f"xinetd no longer logs: {xinetd_only}"
    expected = [e.replace("@", base) for e in case.extra]
    unexplained = [m for m in mine
                   if not any(f"{m[0]}: {m[1]}".startswith(e) for e in expected)]
    assert unexplained == [], "pyxinetd-only lines:\n" + "\n".join(map(str, unexplained))
