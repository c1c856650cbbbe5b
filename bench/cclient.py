"""The load generator's C client (bench/loadclient.c) and C reference server
(bench/refserver.c), compiled once per run.

The benchmark's clients run on the same two cores as the daemon they measure: what a
client spends per request is taken from the daemon. The C client does what the Python
request loop in bench/loadgen.py does, request for request, for a fraction of its CPU;
the Python loop stays as the fallback where no C compiler is installed (`--python-clients`
forces it). The ceiling is then measured against the C reference server: a Python one
spends more per request than the C clients do, and would be the ceiling itself.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class CTools:
    client: Path        # bench/loadclient.c
    refserver: Path     # bench/refserver.c


def build(workdir: Path) -> tuple[CTools | None, str]:
    """Compile both into `workdir`: (their paths, what was used) or (None, why not)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (cc, gcc) found"
    built = []
    for name in ("loadclient", "refserver"):
        binary = workdir / name
        try:
            done = subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary),
                                   str(HERE / f"{name}.c")],
                                  capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{compiler} failed: {e}"
        if done.returncode != 0:
            return None, f"{compiler} failed on {name}.c: {done.stderr.strip()[-300:]}"
        built.append(binary)
    return CTools(*built), f"C (loadclient.c, refserver.c; {Path(compiler).name} -O2)"
