"""The C extension is an optional build: without a working compiler the build still
succeeds (and the spawner falls back to its Python-level paths)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    tree = tmp_path / "tree"
    (tree / "src" / "pyxinetd").mkdir(parents=True)
    shutil.copy(ROOT / "setup.py", tree / "setup.py")
    shutil.copy(ROOT / "src" / "pyxinetd" / "_spawn.c", tree / "src" / "pyxinetd" / "_spawn.c")
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "temp")],
        cwd=tree, env=dict(os.environ, **env), capture_output=True, text=True, timeout=120)
    return result, sorted((tmp_path / "lib").rglob("_spawn*.so"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the extension is Linux-only")
def test_build_without_a_compiler_succeeds_without_the_extension(tmp_path: Path) -> None:
    result, built = build(tmp_path, CC="false")
    assert result.returncode == 0, result.stderr
    assert built == []
    assert "pyxinetd._spawn" in result.stdout + result.stderr  # the warning names it


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_build_with_a_compiler_produces_the_extension(tmp_path: Path) -> None:
    result, built = build(tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(built) == 1
