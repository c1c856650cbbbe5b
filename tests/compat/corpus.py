"""The corpus cases of the compatibility suite, and how their results are compared.

Each corpus file becomes a main configuration file for both daemons (the synthetic
files of ./synthetic are main files already and run only as they are):

- a file of corpus/xinetd.d is copied alone into an empty folder (under a name without
  '.', which includedir would skip) and the main file is just `includedir FOLDER`;
- a file of corpus/xinetd.conf is the main file itself, with the folder of every
  `includedir` line pointed at an empty folder, so the result does not depend on
  what this machine has in /etc/xinetd.d.

Variants: `asis` (the bytes as published), `enabled` (every `disable = yes` turned to
`no`, as an administrator enabling the shipped services would), and `stubbed`
(`enabled`, and every missing server program created as an executable stub inside
the private mount namespace, so that services get past the server check).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # only for annotations: the unit tests import this without oracle
    from oracle import DumpService, DumpState

REPO = Path(__file__).resolve().parents[2]


def corpus_root() -> Path:
    """shared/corpus beside the repository (CI lays it next to the clone)."""
    for base in (REPO.parent / "shared", REPO / "shared"):
        if (base / "corpus").is_dir():
            return base / "corpus"
    return REPO.parent / "shared" / "corpus"


# A plain checkout has no shared/ folder beside it: the tests that read it skip with this
# reason instead of failing. Where the folder exists (as in CI), a file missing from it
# still fails their "was found" guards.
SHARED_ABSENT = "no shared/ folder (test corpus and vectors) beside the checkout"


def shared_present() -> bool:
    return any(base.is_dir() for base in (REPO.parent / "shared", REPO / "shared"))


SYNTHETIC = Path(__file__).resolve().parent / "synthetic"


@dataclass(frozen=True)
class Case:
    kind: str        # "xinetd.d", "xinetd.conf" (corpus) or "synthetic"
    name: str        # file name in its folder

    @property
    def source(self) -> Path:
        if self.kind == "synthetic":
            return SYNTHETIC / self.name
        return corpus_root() / self.kind / self.name

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


def corpus_cases() -> list[Case]:
    root = corpus_root()
    cases: list[Case] = []
    for kind in ("xinetd.d", "xinetd.conf"):
        folder = root / kind
        if folder.is_dir():
            cases.extend(Case(kind, p.name) for p in sorted(folder.iterdir()) if p.is_file())
    return cases


def synthetic_cases() -> list[Case]:
    """Hand-written main files, each probing one corner of the configuration language."""
    return [Case("synthetic", p.name) for p in sorted(SYNTHETIC.glob("*.conf"))]


VARIANTS = ("asis", "enabled", "stubbed")

_DISABLE_YES = re.compile(rb"(?im)^([ \t]*disable[ \t]+=[ \t]*)yes(?=[ \t]*\r?$)")
_INCLUDEDIR = re.compile(rb"(?im)^([ \t]*includedir[ \t]+)(\S+)")
_SERVER = re.compile(rb"(?im)^[ \t]*server[ \t]+=[ \t]*(\S+)")


def enable_all(text: bytes) -> bytes:
    """Every `disable = yes` becomes `disable = no` (nothing else changes)."""
    return _DISABLE_YES.sub(rb"\1no", text)


def server_paths(text: bytes) -> list[str]:
    return [m.group(1).decode("utf-8", "replace") for m in _SERVER.finditer(text)]


def prepare(case: Case, variant: str, workdir: Path) -> Path:
    """Write the main configuration file for (case, variant) under `workdir`; return it."""
    text = case.source.read_bytes()
    if variant in ("enabled", "stubbed"):
        text = enable_all(text)
    workdir.mkdir(parents=True, exist_ok=True)
    main = workdir / "xinetd.conf"
    if case.kind == "synthetic":
        main.write_bytes(text)
    elif case.kind == "xinetd.d":
        confd = workdir / "confd"
        confd.mkdir(exist_ok=True)
        (confd / case.name.replace(".", "_").rstrip("~")).write_bytes(text)
        main.write_bytes(b"includedir " + str(confd).encode() + b"\n")
    else:
        empty = workdir / "empty"
        empty.mkdir(exist_ok=True)
        main.write_bytes(_INCLUDEDIR.sub(lambda m: m.group(1) + str(empty).encode(), text))
    return main


# --------------------------------------------------------------------------- comparing

COMPARED = ("name", "socket_type", "protocol", "port", "wait", "user", "server",
            "server_argv", "instances", "per_source", "cps",
            # Beyond those, whatever else the dump shows reliably:
            "types", "flags", "family", "group", "nice", "umask", "env", "passenv", "log",
            "log_on_success", "log_on_failure", "deny_time")
_FAMILY_FLAGS = {"IPv4", "IPv6"}


class _NotShown:
    """An attribute the dump does not print in this case: it matches any value."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<not in the dump>"


NOT_SHOWN: Any = _NotShown()


def _log_of_dump(text: str | None) -> tuple[str, ...]:
    if text is None or text == "No logging":
        return ("none",)
    if text == "Logging to common log file":
        return ("common",)
    m = re.fullmatch(r"Logging to file: (\S+) \(.*\)", text)
    if m:
        return ("file", m.group(1))
    m = re.fullmatch(r"Logging to syslog\. Facility = (\S+), level = (\S+)", text)
    if m:
        return ("syslog", m.group(1), m.group(2))
    return ("unknown", text)


def _log_of_report(log: dict[str, Any] | None) -> tuple[str, ...]:
    if log is None:
        return ("none",)
    if log["kind"] == "file":
        return ("common",) if log["common"] else ("file", log["path"])
    return ("syslog", log["facility"], log["level"])


def _effective_env(additions: tuple[str, ...]) -> list[str]:
    """The env strings as the server gets them: the dump lists every string written
    (`env = A=1 A=2` shows both), while the server's environment holds the last value
    of each name (checked against the running xinetd)."""
    last: dict[str, str] = {}
    for item in additions:
        name, _, value = item.partition("=")
        last[name] = value
    return sorted(f"{k}={v}" for k, v in last.items())


def project_oracle(state: DumpState, svc: DumpService) -> dict[str, Any]:
    """The compared attributes of one service of xinetd's dump."""
    logging = _log_of_dump(svc.log)
    umask = svc.umask if svc.umask is not None else state.defaults.umask
    return {
        "name": svc.name,
        "socket_type": svc.socket_type,
        "protocol": svc.protocol,
        # A TCPMUX service's port line is kept in the dump but never listened on.
        "port": None if {"TCPMUX", "TCPMUXPLUS"} & set(svc.types) else svc.port,
        "wait": svc.wait,
        "user": svc.user,
        "server": svc.server,
        "server_argv": list(svc.server_argv) if svc.server_argv is not None else None,
        "instances": state.effective_instances(svc),
        "per_source": state.effective_per_source(svc),
        "cps": list(state.effective_cps(svc)),
        "types": sorted(svc.types),
        "flags": sorted(set(svc.flags) - _FAMILY_FLAGS),
        "family": "inet" if "IPv4" in svc.flags else "inet6",
        "group": svc.group if svc.group is not None else NOT_SHOWN,
        "nice": svc.nice,
        "umask": umask,
        "env": _effective_env(svc.env_additions),
        "passenv": sorted(svc.passenv) if svc.passenv is not None else NOT_SHOWN,
        "log": logging,
        # The flags are printed only for a service that logs.
        "log_on_success": sorted(svc.log_on_success) if logging != ("none",) else NOT_SHOWN,
        "log_on_failure": sorted(svc.log_on_failure) if logging != ("none",) else NOT_SHOWN,
        "deny_time": svc.deny_time if svc.deny_time is not None else NOT_SHOWN,
    }


def project_pyxinetd(svc: dict[str, Any]) -> dict[str, Any]:
    """The same attributes from one service of `pyxinetd check --json`."""
    server = svc["server"]
    types = set(svc["type"])
    if "SENSOR" in svc["flags"]:
        # xinetd turns sensors INTERNAL (so its dump shows no server); pyxinetd keeps the
        # types and the server line, which is never run (docs/compatibility.md).
        types.add("INTERNAL")
        server = None
    return {
        "name": svc["name"],
        "socket_type": svc["socket_type"],
        "protocol": svc["protocol"],
        "port": svc["port"],
        "wait": svc["wait"],
        "user": svc["user"],
        "server": server,
        "server_argv": ([svc["argv0"], *svc["server_args"]] if server is not None else None),
        "instances": svc["instances"],
        "per_source": svc["per_source"],
        "cps": list(svc["cps"]),
        "types": sorted(types),
        "flags": sorted(set(svc["flags"]) - _FAMILY_FLAGS),
        "family": svc["family"],
        "group": svc["group"],
        "nice": svc["nice"],
        "umask": svc["umask"],
        "env": sorted(f"{k}={v}" for k, v in svc["env"].items()),
        "passenv": sorted(svc["passenv"]) if svc["passenv"] is not None else None,
        "log": _log_of_report(svc["log_type"]),
        "log_on_success": sorted(svc["log_on_success"]),
        "log_on_failure": sorted(svc["log_on_failure"]),
        "deny_time": svc["deny_time"],
    }


def _by_id(items: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


_DEACTIVATED = re.compile(r"Service (\S+) failed to start and is deactivated")


def deactivated_ids(log: str) -> Counter[str]:
    """Services xinetd accepted but could not start (bind or portmapper failure), by id.

    They are gone from the dump, yet the configuration was fine: `check` does not
    bind, so it lists them. Their attributes cannot be compared, only their presence.
    """
    return Counter(_DEACTIVATED.findall(log))


def compare(state: DumpState | None, report: dict[str, Any],
            deactivated: Counter[str] | None = None) -> list[str]:
    """Differences between xinetd's activated services and pyxinetd's (empty = agree).

    `state` None means xinetd never started working (e.g. it exited on a fatal error
    in `defaults`): it activates nothing then. `deactivated`: see deactivated_ids().
    """
    deactivated = deactivated or Counter()
    ours = _by_id([(s["id"], project_pyxinetd(s)) for s in report["services"]])
    theirs: dict[str, list[dict[str, Any]]] = {}
    if state is not None:
        theirs = _by_id([(s.id, project_oracle(state, s)) for s in state.services])
    diffs: list[str] = []
    for sid in sorted(set(ours) | set(theirs)):
        mine, real = list(ours.get(sid, [])), theirs.get(sid, [])
        if not mine:
            diffs.append(f"{sid}: activated by xinetd, not by pyxinetd")
            continue
        if not real and not deactivated[sid]:
            diffs.append(f"{sid}: activated by pyxinetd, not by xinetd")
            continue
        # Pair each of xinetd's entries with an identical one of ours when there is one
        # (entries sharing an id need not come in the same order once some failed to bind).
        for entry in real:
            same = next((m for m in mine if all(m[k] == entry[k] for k in COMPARED)), None)
            if same is None and mine:
                same = mine[0]
                for key in COMPARED:
                    if same[key] != entry[key]:
                        diffs.append(f"{sid}: {key}: xinetd {entry[key]!r}, "
                                     f"pyxinetd {same[key]!r}")
            if same is not None:
                mine.remove(same)
        if len(mine) > deactivated[sid] or len(real) > len(ours.get(sid, [])):
            diffs.append(f"{sid}: xinetd activates {len(real)} entries with this id "
                         f"({deactivated[sid]} more failed to bind), pyxinetd "
                         f"{len(ours.get(sid, []))}")
    return diffs


_RPC_TYPE = re.compile(rb"(?im)^[ \t]*type[ \t]+=.*\bRPC\b")


def slow_first(confs: dict[tuple[str, str], Path]) -> list[tuple[tuple[str, str], Path]]:
    """Order runs so the slow ones start first (RPC services: xinetd waits about 1 s
    per version for a portmapper that is not there), which keeps the wall time short."""
    def has_rpc(main: Path) -> bool:
        return any(_RPC_TYPE.search(f.read_bytes()) for f in main.parent.rglob("*")
                   if f.is_file())

    return sorted(confs.items(), key=lambda item: not has_rpc(item[1]))
