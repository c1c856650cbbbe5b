"""Starting, watching and stopping the two daemons under test.

Both run in the foreground (`-dontfork`), with a program log file (`-filelog`), each in a
new session so that one killpg() ends it. Readiness is the "Started working" line both
write to the program log once their services are set up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Janitor

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"Started working: (\d+) available service")
FALLBACK_XINETD = "/tmp/xi/usr/sbin/xinetd"


class DaemonError(RuntimeError):
    pass


@dataclass(frozen=True)
class DaemonSpec:
    name: str  # "xinetd" or "pyxinetd"
    argv: tuple[str, ...]  # command before the options

    def command(self, conf: Path, log: Path) -> list[str]:
        return [*self.argv, "-f", str(conf), "-dontfork", "-filelog", str(log)]


def xinetd_spec(path: str | None = None) -> DaemonSpec:
    """The real xinetd: an explicit path, else scripts/fetch-xinetd's wrapper."""
    if path is None:
        script = REPO / "scripts" / "fetch-xinetd"
        if script.exists():
            out = subprocess.run([str(script)], capture_output=True, text=True, timeout=300)
            if out.returncode == 0 and out.stdout.strip():
                path = out.stdout.strip().splitlines()[-1]
            else:
                raise DaemonError(f"scripts/fetch-xinetd failed: {out.stderr.strip()}")
        elif os.access(FALLBACK_XINETD, os.X_OK):
            path = FALLBACK_XINETD
        else:
            raise DaemonError("no xinetd: scripts/fetch-xinetd is missing")
    return DaemonSpec("xinetd", (path,))


def pyxinetd_spec(command: str | None = None) -> DaemonSpec:
    argv = tuple(command.split()) if command else (sys.executable, "-m", "pyxinetd")
    return DaemonSpec("pyxinetd", argv)


@dataclass
class Running:
    spec: DaemonSpec
    proc: subprocess.Popen[bytes]
    log: Path
    services: int  # from the "Started working" line

    @property
    def pid(self) -> int:
        return self.proc.pid


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(janitor: Janitor, spec: DaemonSpec, conf: Path, workdir: Path, tag: str,
          timeout: float = 30.0) -> Running:
    """Start `spec` on `conf` and wait (bounded) for its "Started working" line."""
    log = workdir / f"{tag}.log"
    out = workdir / f"{tag}.out"
    log.unlink(missing_ok=True)
    with open(out, "wb") as output:
        proc = subprocess.Popen(spec.command(conf, log), stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd="/")
    janitor.track_popen(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            match = READY.search(log.read_text(errors="replace"))
        except FileNotFoundError:
            match = None
        if match:
            return Running(spec, proc, log, int(match.group(1)))
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    status = proc.poll()
    janitor.stop_popen(proc)
    why = f"exited with status {status}" if status is not None else f"not ready in {timeout:g} s"
    raise DaemonError(f"{spec.name} {why}\n--- {log}\n{_tail(log)}\n--- {out}\n{_tail(out)}")


def stop(janitor: Janitor, running: Running) -> None:
    janitor.stop_popen(running.proc)
