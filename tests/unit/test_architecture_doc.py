"""The module map of docs/architecture.md names every module of src/pyxinetd, and no other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "pyxinetd"


def _module_map() -> list[tuple[str, str]]:
    """(first cell, whole row) of every row of the module map table."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    body = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in body.splitlines():
        if line.startswith("| `"):
            rows.append((line.split("|")[1], line))
    return rows


def _modules() -> list[Path]:
    return sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*")
                  if p.suffix in (".py", ".c") and p.name != "__init__.py"
                  and "__pycache__" not in p.parts)


def test_every_module_is_in_the_map() -> None:
    rows = _module_map()
    missing = []
    for module in _modules():
        name = f"`{module.name}`"
        if len(module.parts) == 1:
            found = any(name in first for first, _ in rows)
        else:
            package = f"`{module.parts[0]}/`"
            found = any(package in first and name in row for first, row in rows)
        if not found:
            missing.append(str(module))
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_every_module_the_map_names_exists() -> None:
    named = {m for first, _ in _module_map() for m in re.findall(r"`([a-z_]+\.(?:py|c))`", first)}
    absent = sorted(m for m in named if not (PACKAGE / m).is_file())
    assert not absent, f"docs/architecture.md names modules that do not exist: {absent}"
    packages = {m for first, _ in _module_map() for m in re.findall(r"`([a-z_]+)/`", first)}
    assert all((PACKAGE / p / "__init__.py").is_file() for p in packages), packages
