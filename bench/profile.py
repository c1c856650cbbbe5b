"""Sampling the pyxinetd master with py-spy during a case, and summarising where time goes.

py-spy (`pip install py-spy`) attaches to the running daemon by pid, samples its Python
stacks without stopping it (--nonblocking) and, on SIGINT, writes them in collapsed form
("frame;frame;frame count" per line). The summary gives, per function, the share of
samples in which it is on the stack (inclusive) and the share in which it is the
innermost Python frame (self). Sampling costs CPU on the same cores, so rates measured
with --profile are lower than without it and are not compared with anything.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.procs import Janitor

RATE_HZ = 250


class Sampler:
    def __init__(self, janitor: Janitor, pid: int, output: Path) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.janitor = janitor
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        self.log = output.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "record", "-p", str(pid), "-r", str(RATE_HZ), "--nonblocking",
                 "--format", "raw", "-o", str(output)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        janitor.track_popen(self.proc)

    def finish(self) -> dict[str, object]:
        """Stop sampling (SIGINT makes py-spy write its file) and summarise the stacks."""
        try:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        self.janitor.stop_popen(self.proc)
        if not self.output.exists():
            return {"error": self.log.read_text(errors="replace")[-500:]}
        return summarise(self.output)


def _frame(text: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = text.partition(" (")
    module = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{name} ({module})" if where else name


def summarise(path: Path, top: int = 25) -> dict[str, object]:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += n
        leaf[frames[-1]] += n
    if not total:
        return {"samples": 0}

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "file": str(path), "inclusive_pct": shares(inclusive),
            "self_pct": shares(leaf)}
