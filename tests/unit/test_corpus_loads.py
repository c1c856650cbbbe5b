"""Every real-world configuration file of the corpus loads without an exception.

Each file is loaded as the main file (a service file is a valid main file too), as
published and with every `disable = yes` turned to `no`, and the `check` report is
built from the result: the check command must never crash on any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat.corpus import SHARED_ABSENT, corpus_cases, enable_all, shared_present


FILES = [case.source for case in corpus_cases()]


def test_corpus_found() -> None:
    if not shared_present():
        pytest.skip(SHARED_ABSENT)
    assert len(FILES) > 100


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("variant", ["asis", "enabled"])
def test_corpus_file_loads(path: Path, variant: str, tmp_path: Path) -> None:
    from pyxinetd.check import check_report, render_text
    from pyxinetd.config import Configuration, load

    if variant == "enabled":
        copy = tmp_path / "main"
        copy.write_bytes(enable_all(path.read_bytes()))
        path = copy
    config = load(str(path), environ={"PATH": "/usr/bin:/bin", "TZ": "UTC"})
    assert isinstance(config, Configuration)
    json.dumps(check_report(config))
    assert render_text(config).endswith("\n")
