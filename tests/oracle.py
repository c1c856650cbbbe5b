"""The real xinetd 2.3.15.3 as a test oracle.

`xinetd_path()` fetches Debian's binary once per test session (scripts/fetch-xinetd)
and answers None when it cannot be had; tests then skip with `unavailable_reason()`.

`run_xinetd_dump()` starts the real daemon on a configuration file and returns its
SIGUSR1 state dump and its program log. Every run gets fresh namespaces:

- a private network namespace (`unshare -n`) with only `lo` up, so the services it
  binds never touch the host network and parallel runs cannot collide on ports;
- a private mount namespace (`unshare -m`) in which the run's own folder is bound
  onto /run: the dump path is fixed (/var/run/xinetd.dump, /var/run -> /run), so
  this is what keeps concurrent runs apart, and it lets the host read the dump;
- /tmp and /var/log are overlaid with a private tmpfs layer, so log files named by
  the configuration under test (`log_type = FILE /var/log/...`) are written there
  and vanish with the namespace instead of landing on the host;
- optionally, missing server programs are created as tiny executable stubs in an
  overlay over their nearest existing folder. The overlay's writable layer is the
  private tmpfs: nothing is ever written into the real /usr.

`parse_dump()` turns the dump into comparable data (`DumpState`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FETCH_SCRIPT = REPO / "scripts" / "fetch-xinetd"

STARTED_MARK = "Started working"
DUMP_END_MARK = "END OF DUMP"

# Runs inside `unshare -n -m` as bash; the host side passes everything through the
# environment. /run is the run folder from the host's point of view, so the dump and
# the program log written there are visible outside; priv/ holds the tmpfs that backs
# every overlay's writable layer.
_NAMESPACE_SCRIPT = r"""
set -eu
ip link set lo up
mount --bind "$ORACLE_RUN" /run
mount -t tmpfs -o mode=0700 tmpfs /run/priv
n=0
writable() {   # FOLDER [STUB LAYER]: writes go to the private tmpfs
    [ -d "$1" ] || return 0
    n=$((n + 1))
    mkdir -p "/run/priv/$n/u" "/run/priv/$n/w"
    mount -t overlay overlay \
        -o "lowerdir=${2:+$2:}$1,upperdir=/run/priv/$n/u,workdir=/run/priv/$n/w" "$1"
}
writable /tmp
writable /var/log
# Read-only overlays: FOLDER<TAB>LAYER, the layer holding the stubs at their places.
while IFS="$(printf '\t')" read -r dir layer; do
    [ -n "$dir" ] && mount -t overlay overlay -o "lowerdir=$layer:$dir" "$dir"
done <<EOF_LAYERS
$ORACLE_LAYERS
EOF_LAYERS
# Stubs under the writable folders (a layer cannot live inside the folder it covers).
printf '#!/bin/sh\nexit 0\n' > /run/priv/stub
chmod 0755 /run/priv/stub
while IFS= read -r p; do
    [ -n "$p" ] || continue
    { mkdir -p "$(dirname "$p")" && cp -p /run/priv/stub "$p"; } 2>/dev/null || true
done <<EOF_STUBS
$ORACLE_STUBS
EOF_STUBS
# -inetd_compat reads the fixed path /etc/inetd.conf: bind the file under test over it.
# When the host has none, /etc gets a writable overlay (tmpfs layer) to hold the mount
# point, so the real /etc is never written.
compat=""
if [ -n "${ORACLE_INETD:-}" ]; then
    [ -e /etc/inetd.conf ] || { writable /etc; : > /etc/inetd.conf; }
    mount --bind "$ORACLE_INETD" /etc/inetd.conf
    compat="-inetd_compat"
fi
cd /run
if [ -n "${ORACLE_BEFORE:-}" ]; then
    sh -c "$ORACLE_BEFORE" >/run/before.out 2>/run/before.err || true
fi
exec "$ORACLE_XINETD" -dontfork -f "$ORACLE_CONF" -filelog /run/xinetd.log $compat
"""


# --------------------------------------------------------------------------- fetching


def run_fetch_script(script: Path, usable: Callable[[str], bool]) -> tuple[str | None, str]:
    """Run one of scripts/fetch-*, which prints the path of what it fetched last; (that
    path, '') when the script succeeded and `usable(path)`, or (None, why not)."""
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True,
                              timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"scripts/{script.name} failed: {exc}"
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path or not usable(path):
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        return None, f"scripts/{script.name} failed (status {done.returncode}): {tail}"
    return path, ""


@functools.lru_cache(maxsize=1)
def _fetch() -> tuple[str | None, str]:
    """Run scripts/fetch-xinetd once; (wrapper path, '') or (None, why not)."""
    if os.geteuid() != 0:
        return None, "the xinetd oracle needs root (network and mount namespaces)"
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return None, f"the xinetd oracle needs {tool!r} (util-linux, iproute2)"
    path, why = run_fetch_script(FETCH_SCRIPT, lambda p: os.access(p, os.X_OK))
    if path is None:
        return None, why
    # Namespaces may be forbidden even to root (a seccomp profile, a locked container).
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True,
                           timeout=30, check=False)
    if probe.returncode != 0:
        return None, f"unshare -n -m is not permitted here: {probe.stderr.strip()}"
    return path, ""


def xinetd_path() -> str | None:
    """Path of the wrapper running Debian's xinetd 2.3.15.3, or None if unavailable."""
    return _fetch()[0]


def unavailable_reason() -> str:
    return _fetch()[1] or "xinetd is available"


def require_xinetd() -> str:
    """The wrapper path, or skip the calling test with the reason."""
    import pytest

    path = xinetd_path()
    if path is None:
        pytest.skip(unavailable_reason())
    return path


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class XinetdRun:
    """What one run of the real xinetd produced."""

    dump: str                 # the state dump ('' if it never got that far)
    log: str                  # the program log (-filelog)
    started: bool             # `Started working` was logged
    returncode: int | None    # exit status; None when it had to be killed
    before_stdout: str = ""   # output of the `before` command, if one was given
    before_stderr: str = ""
    harness_error: str = ""   # set when the namespace set-up failed and xinetd never ran


# Folders overlaid read-write in every run; stubs under them are created in place.
_WRITABLE = ("/tmp", "/var/log")
# Never overlaid: the system's own configuration and the kernel's file systems.
_UNTOUCHABLE = ("/etc", "/proc", "/sys", "/dev", "/run", "/var/run", "/boot")
_STUB_TEXT = "#!/bin/sh\nexit 0\n"


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def stub_plan(paths: Iterable[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Where to put executable stubs for the absolute paths that do not exist.

    Returns (read-only overlays as (folder, stub paths under it), stubs to create in
    the writable folders). Each missing path goes under an overlay of its nearest
    existing ancestor; ancestors nested in another chosen one share its overlay.
    Paths whose nearest ancestor is /, or lies in _UNTOUCHABLE, stay missing.
    """
    stubs: dict[str, str] = {}
    for raw in paths:
        if not raw.startswith("/") or "\n" in raw or "\t" in raw:
            continue
        path = os.path.normpath(raw)
        if os.path.lexists(path):
            continue
        parent = os.path.dirname(path)
        while not os.path.isdir(parent):
            if os.path.lexists(parent):   # a file where a folder would be needed
                parent = ""
                break
            parent = os.path.dirname(parent)
        if parent in ("", "/") or any(_under(parent, u) for u in _UNTOUCHABLE):
            continue
        stubs[path] = parent
    in_place = sorted(p for p, d in stubs.items() if any(_under(d, w) for w in _WRITABLE))
    chosen: list[str] = []
    for d in sorted({d for p, d in stubs.items() if p not in in_place},
                    key=lambda p: (p.count("/"), p)):
        if not any(_under(d, c) for c in chosen):
            chosen.append(d)
    overlays = [(c, sorted(p for p in stubs if p not in in_place and _under(p, c)))
                for c in chosen]
    return overlays, in_place


_LAYERS: dict[tuple[tuple[str, tuple[str, ...]], ...], list[tuple[str, str]]] = {}


def _stub_layers(overlays: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """Build (once per process and plan) the read-only layers holding the stubs.

    They live in /dev/shm (or the fetch cache): an overlay refuses a layer inside the
    folder it covers, and /tmp is itself overlaid in every run.
    """
    key = tuple((d, tuple(ps)) for d, ps in overlays)
    if key in _LAYERS:
        return _LAYERS[key]
    base_dir = "/dev/shm" if os.path.isdir("/dev/shm") else str(REPO / ".cache")
    base = Path(tempfile.mkdtemp(prefix="xinetd-stubs-", dir=base_dir))
    atexit.register(shutil.rmtree, base, True)
    layers: list[tuple[str, str]] = []
    for n, (folder, files) in enumerate(overlays):
        layer = base / str(n)
        for path in files:
            target = layer / os.path.relpath(path, folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_STUB_TEXT)
            target.chmod(0o755)
        layers.append((folder, str(layer)))
    _LAYERS[key] = layers
    return layers


def run_xinetd_dump(conf_path: str | os.PathLike[str], *, stubs: Sequence[str] = (),
                    before: str | None = None, timeout: float = 20.0,
                    inetd_conf: str | os.PathLike[str] | None = None,
                    after_start: Callable[[int], None] | None = None) -> XinetdRun:
    """Run the real xinetd on `conf_path` in private namespaces and return its state.

    Waits (up to `timeout`) for `Started working`, sends SIGUSR1, waits for the dump,
    then SIGTERM. `stubs`: server paths to create as executable stubs when missing.
    `before`: a shell command run in the same namespaces just before xinetd starts
    (to have another program see exactly the same file system); its output is
    returned in `before_stdout`/`before_stderr`. `inetd_conf`: run with -inetd_compat,
    this file bound over /etc/inetd.conf inside the namespace. `after_start`: called
    with xinetd's pid once it has started, before the SIGUSR1 (to start clients in its
    namespaces with `nsenter -t PID`, so that the dump shows running servers).
    """
    with _xinetd_in_namespace(conf_path, stubs, before, inetd_conf) as (proc, run):
        return _drive(proc, run, timeout, before is not None, after_start)


def xinetd_startup_seconds(conf_path: str | os.PathLike[str],
                           timeout: float = 120.0) -> float | None:
    """Seconds from starting the real xinetd to its `Started working` line (None if it
    never got there), namespace set-up included; the daemon is then stopped."""
    with _xinetd_in_namespace(conf_path, (), None) as (proc, run):
        start = time.monotonic()
        log_path = run / "xinetd.log"
        if not _wait_for(lambda: STARTED_MARK in _read(log_path), proc, start + timeout,
                         max_delay=0.002):
            return None
        return time.monotonic() - start


@contextlib.contextmanager
def _xinetd_in_namespace(conf_path: str | os.PathLike[str], stubs: Sequence[str],
                         before: str | None, inetd_conf: str | os.PathLike[str] | None = None,
                         ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start xinetd in fresh namespaces; on exit, stop it and remove its run folder."""
    xinetd = xinetd_path()
    if xinetd is None:
        raise RuntimeError(unavailable_reason())
    overlays, in_place = stub_plan(stubs)
    layers = _stub_layers(overlays) if overlays else []
    run = Path(tempfile.mkdtemp(prefix="xinetd-oracle-"))
    try:
        (run / "priv").mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "ORACLE_RUN": str(run),
            "ORACLE_XINETD": xinetd,
            "ORACLE_CONF": os.path.abspath(conf_path),
            "ORACLE_LAYERS": "\n".join(f"{d}\t{layer}" for d, layer in layers),
            "ORACLE_STUBS": "\n".join(in_place),
            "ORACLE_BEFORE": before or "",
            "ORACLE_INETD": os.path.abspath(inetd_conf) if inetd_conf is not None else "",
            "LANG": "C",
        }
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "HOME"):
            if name in os.environ:
                env[name] = os.environ[name]
        with open(run / "stderr", "wb") as err:
            # --pdeathsig: xinetd runs in a session of its own, so a caller killed before
            # its clean-up (a fuzzer stopped by `timeout`) would leave it running; the
            # kernel kills it when the thread that started it goes.
            proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL",
                 "unshare", "-n", "-m", "--propagation", "private",
                 "bash", "-c", _NAMESPACE_SCRIPT],
                env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True)
        try:
            yield proc, run
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _read(path: Path) -> str:
    # Bytes decoded as they are: read_text() would turn a \r that xinetd copies from a
    # value into its message (`Server /bin/cat\r is not executable`) into a line break.
    try:
        return path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[bytes], deadline: float,
              max_delay: float = 0.05) -> bool:
    """Poll `predicate()` until true, the process exits, or the deadline passes."""
    delay = 0.002
    while True:
        if predicate():
            return True
        if proc.poll() is not None or time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def _drive(proc: subprocess.Popen[bytes], run: Path, timeout: float,
           has_before: bool, after_start: Callable[[int], None] | None = None) -> XinetdRun:
    deadline = time.monotonic() + timeout
    log_path, dump_path = run / "xinetd.log", run / "xinetd.dump"
    started = _wait_for(lambda: STARTED_MARK in _read(log_path), proc, deadline)
    dump = ""
    if started and after_start is not None and proc.poll() is None:
        after_start(proc.pid)
    if started and proc.poll() is None:
        proc.send_signal(signal.SIGUSR1)
        if _wait_for(lambda: DUMP_END_MARK in _read(dump_path), proc, deadline):
            dump = _read(dump_path)
    returncode: int | None = proc.poll()
    if returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            returncode = None
    log = _read(log_path)
    # No program log at all: xinetd never ran, the namespace set-up failed.
    harness_error = "" if log or started else (_read(run / "stderr").strip()
                                                 or f"exit status {returncode}")
    return XinetdRun(dump=dump, log=log, started=started, returncode=returncode,
                     before_stdout=_read(run / "before.out") if has_before else "",
                     before_stderr=_read(run / "before.err") if has_before else "",
                     harness_error=harness_error)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Make sure the run's process group is gone (it is ours: start_new_session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- the dump


@dataclass
class DumpService:
    """One service of the state dump. None means the dump printed no such line."""

    name: str
    id: str = ""
    state: str = ""
    flags: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    socket_type: str | None = None
    protocol: str | None = None
    protocol_number: int | None = None
    port: int | None = None
    # Printed only when the service set it itself: 'UNLIMITED', a number, or None.
    instances: str | None = None
    wait: bool | None = None
    user: int | None = None
    group: int | None = None
    groups: bool | None = None
    umask: int | None = None
    nice: int | None = None
    cps: tuple[int, int] | None = None      # printed only when the service set it
    per_source: int | None = None           # -1 = UNLIMITED
    bind: str | None = None
    server: str | None = None
    server_argv: tuple[str, ...] | None = None
    redirect: str | None = None
    only_from: str | None = None
    no_access: str | None = None
    access_times: str | None = None
    deny_time: int | None = None
    log: str | None = None
    log_on_success: tuple[str, ...] = ()
    log_on_failure: tuple[str, ...] = ()
    passenv: tuple[str, ...] | None = None
    env_additions: tuple[str, ...] = ()
    libwrap: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class DumpState:
    defaults: DumpService
    services: list[DumpService]

    def by_id(self) -> dict[str, DumpService]:
        return {s.id: s for s in self.services}

    def effective_instances(self, svc: DumpService) -> int | None:
        """instances as the service runs: its own value, else the defaults', else UNLIMITED.

        The dump prints `Instances` only for a value the service set itself (and for
        the defaults section); inherited values are applied after parsing without
        being printed, so they are taken from the defaults section.
        """
        text = svc.instances if svc.instances is not None else self.defaults.instances
        if text is None or text.upper() == "UNLIMITED":
            return None
        return int(text)

    def effective_cps(self, svc: DumpService) -> tuple[int, int]:
        """cps as the service runs: its own, else the defaults', else 50 10 (same reason)."""
        if svc.cps is not None:
            return svc.cps
        if self.defaults.cps is not None:
            return self.defaults.cps
        return (50, 10)

    @staticmethod
    def effective_per_source(svc: DumpService) -> int | None:
        return None if svc.per_source is None or svc.per_source < 0 else svc.per_source


_CPS_RE = re.compile(r"max conn:(\d+) wait:(\d+)")
_PROTO_RE = re.compile(r"\((.*),(-?\d+)\)")


def _apply_line(svc: DumpService, key: str, value: str) -> None:
    lowered = key.lower()
    if lowered == "id":
        svc.id = value
    elif lowered == "state":
        svc.state = value
    elif lowered == "flags":
        svc.flags = tuple(value.split())
    elif lowered == "type":
        svc.types = tuple(value.split())
    elif lowered == "socket_type":
        svc.socket_type = value
    elif lowered == "protocol (name,number)":
        m = _PROTO_RE.fullmatch(value)
        if m:
            svc.protocol, svc.protocol_number = m.group(1), int(m.group(2))
    elif lowered == "port":
        svc.port = int(value)
    elif lowered == "instances":
        svc.instances = value
    elif lowered == "wait":
        svc.wait = value == "yes"
    elif lowered == "user":
        svc.user = int(value)
    elif lowered == "group":
        svc.group = int(value)
    elif lowered == "groups":
        svc.groups = value == "yes"
    elif lowered == "umask":
        svc.umask = int(value, 8)
    elif lowered == "nice":
        svc.nice = int(value)
    elif lowered == "cps":
        m = _CPS_RE.search(value)
        if m:
            svc.cps = (int(m.group(1)), int(m.group(2)))
    elif lowered == "per_source":
        svc.per_source = int(value)
    elif lowered == "bind":
        svc.bind = value
    elif lowered == "server":
        svc.server = value
    elif lowered == "server argv":
        svc.server_argv = tuple(w for w in value.split(" ") if w)
    elif lowered == "redirect":
        svc.redirect = value
    elif lowered == "access times":
        svc.access_times = value
    elif lowered == "log_on_success flags":
        svc.log_on_success = tuple(value.split())
    elif lowered == "log_on_failure flags":
        svc.log_on_failure = tuple(value.split())
    elif lowered == "passenv":
        svc.passenv = tuple(value.split())
    elif lowered == "libwrap":
        svc.libwrap = value
    else:
        svc.extra[key] = value


def _split(line: str) -> tuple[str, str] | None:
    """'key = value' or 'Key: value' -> (key, value)."""
    for sep in (" = ", ": "):
        if sep in line:
            key, _, value = line.partition(sep)
            return key.strip(" \t"), value.strip(" \t")
    if line.endswith(" =") or line.endswith(":"):   # 'Server argv =' with nothing after
        return line.rstrip(" =:").strip(), ""
    return None


def parse_dump(text: str) -> DumpState:
    """Parse a SIGUSR1 state dump into the defaults and the services it lists.

    The dump file is appended to, so only the last dump in `text` is read.
    """
    start = text.rfind("INTERNAL STATE DUMP")
    if start > 0:
        text = text[start:]
    defaults = DumpService(name="defaults")
    services: list[DumpService] = []
    current: DumpService | None = None
    sub: str | None = None            # a multi-line block inside the current service
    sub_depth = 0                     # the tab depth of that block's heading
    # Lines end at '\n' only, and only blanks are stripped: a \r xinetd keeps in a value
    # (`server_args = -s\r`) is part of it.
    for raw in text.split("\n"):
        if raw.startswith("Server table dump:"):
            break
        stripped = raw.strip(" \t")
        if not stripped:
            continue
        depth = len(raw) - len(raw.lstrip("\t"))
        if depth == 0:
            sub = None
            if stripped == "Service defaults":
                current = defaults
            elif stripped.startswith("Service = "):
                current = DumpService(name=stripped[len("Service = "):])
                services.append(current)
            else:
                current = None
            continue
        if current is None:
            continue
        if stripped.startswith("Service configuration:"):
            continue
        if sub is not None and depth > sub_depth:
            if sub == "env":
                current.env_additions += (stripped,)
            continue
        sub = None
        if stripped == "Environment additions:":
            sub, sub_depth = "env", depth
            continue
        if stripped in ("Environment strings:", "RPC data"):
            sub, sub_depth = "skip", depth
            continue
        if stripped.startswith("Only from:"):
            current.only_from = stripped[len("Only from:"):].strip()
            continue
        if stripped.startswith("No access:"):
            current.no_access = stripped[len("No access:"):].strip()
            continue
        if stripped.startswith("Deny Time:"):
            current.deny_time = int(stripped.split(":", 1)[1])
            continue
        if stripped.startswith(("Logging to", "No logging")):
            current.log = stripped
            continue
        pair = _split(stripped)
        if pair is not None:
            _apply_line(current, *pair)
    return DumpState(defaults=defaults, services=services)
