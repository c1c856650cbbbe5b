"""The developer tools in scripts/ (the differential fuzzers) loaded as modules, for the
tests that run a seeded batch of them or check their rules."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/NAME (no .py suffix) as a module named NAME with `_` for `-`. Registered
    in sys.modules first, as an import would be, since dataclasses look their module up
    there."""
    module_name = name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(module_name, str(SCRIPTS / name))
    spec = importlib.util.spec_from_loader(module_name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(module_name, module)
    loader.exec_module(module)
    return module
