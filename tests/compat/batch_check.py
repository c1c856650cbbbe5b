"""Run `pyxinetd check --json` on many files in one process; print {path: report}.

Used by the compatibility suite inside a namespace where missing server programs
exist as stubs: one interpreter for every file instead of one per file.
"""

from __future__ import annotations

import json
import sys

from pyxinetd.check import run_check


def main(paths: list[str]) -> None:
    results: dict[str, object] = {}
    for path in paths:
        try:
            output, status = run_check(path, as_json=True)
            results[path] = {"status": status, "report": json.loads(output)}
        except Exception as exc:  # the suite reports it as a failure of that file
            results[path] = {"status": None, "error": f"{type(exc).__name__}: {exc}"}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
