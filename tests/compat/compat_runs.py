"""One run of both daemons per corpus case, shared by the compatibility tests.

For every corpus file and variant (see corpus.py) and every synthetic file, the real
xinetd runs once (tests/oracle.py, a few in parallel) and pyxinetd loads the same main
file through `pyxinetd check --json`. The session fixture `compat_results` (made
available by conftest.py) holds the outcome; test_xinetd_compat.py compares the
services, test_diagnostics_oracle.py the log lines about the configuration.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corpus import VARIANTS, corpus_cases, prepare, server_paths, slow_first, synthetic_cases
from oracle import XinetdRun, run_xinetd_dump, xinetd_path

CASES = corpus_cases()
SYNTHETIC = synthetic_cases()
BATCH_CHECK = Path(__file__).with_name("batch_check.py")
PARALLEL_RUNS = 3   # xinetd runs mostly wait on the daemon; 3 keep 2 cores busy


def case_params() -> list[Any]:
    """(variant, case) parameters: every corpus file in every variant, synthetic as is."""
    return ([pytest.param(v, c, id=f"{v}:{c.label}") for v in VARIANTS for c in CASES]
            + [pytest.param("asis", c, id=c.label) for c in SYNTHETIC])


@dataclass
class CaseResult:
    run: XinetdRun
    report: dict[str, Any] | None
    error: str | None             # pyxinetd raised (it never may)


def _check_in_process(conf: Path) -> tuple[dict[str, Any] | None, str | None]:
    from pyxinetd.check import run_check

    try:
        output, _status = run_check(str(conf), as_json=True)
        return json.loads(output), None
    except Exception as exc:  # recorded: the test for that file fails with it
        return None, f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def compat_results() -> Iterator[dict[tuple[str, str], CaseResult]]:
    if xinetd_path() is None:
        from oracle import unavailable_reason

        pytest.skip(unavailable_reason())
    with tempfile.TemporaryDirectory(prefix="pyxinetd-compat-") as tmp:
        base = Path(tmp)
        confs = {(v, c.label): prepare(c, v, base / v / c.label.replace("/", "__"))
                 for v in VARIANTS for c in CASES}
        confs.update({("asis", c.label): prepare(c, "asis", base / "synthetic" / c.name)
                      for c in SYNTHETIC})
        stubs = sorted({p for c in CASES for p in server_paths(c.source.read_bytes())})
        stubbed = [str(confs[("stubbed", c.label)]) for c in CASES]
        # pyxinetd must see the stubs too: one interpreter, inside the same kind of
        # namespace, loads every stubbed file (xinetd itself runs on an empty file).
        empty = base / "empty.conf"
        empty.write_text("")
        batch_cmd = shlex.join([sys.executable, str(BATCH_CHECK), *stubbed])
        runs: dict[tuple[str, str], Any] = {}
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
            batch = pool.submit(run_xinetd_dump, empty, stubs=stubs, before=batch_cmd,
                                timeout=120.0)
            for (variant, label), conf in slow_first(confs):
                runs[(variant, label)] = pool.submit(
                    run_xinetd_dump, conf, stubs=stubs if variant == "stubbed" else ())
            reports = {key: _check_in_process(conf) for key, conf in confs.items()
                       if key[0] != "stubbed"}
            batch_run = batch.result()
            try:
                batched = json.loads(batch_run.before_stdout)
            except ValueError:
                batched = {}
            for c in CASES:
                item = batched.get(str(confs[("stubbed", c.label)]))
                if item is None:
                    reports[("stubbed", c.label)] = (
                        None, f"batch check gave nothing: {batch_run.before_stderr[-2000:]}")
                elif item.get("error"):
                    reports[("stubbed", c.label)] = (None, item["error"])
                else:
                    reports[("stubbed", c.label)] = (item["report"], None)
            results = {key: CaseResult(fut.result(), *reports[key]) for key, fut in runs.items()}
        yield results


