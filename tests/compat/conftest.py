"""Make tests/oracle.py importable as `oracle` from the compatibility suite."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from compat_runs import compat_results  # noqa: E402,F401  (the shared session fixture)
