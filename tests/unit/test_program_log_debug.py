"""Which DEBUG lines the program log writes without -d (pyxinetd.log.ProgramLog):
those xinetd writes without it too (Diagnostic.always), no others."""

from __future__ import annotations

from pathlib import Path

from pyxinetd.config.diagnostics import Diagnostic, Severity
from pyxinetd.log import ProgramLog


def test_the_lines_xinetd_keeps_for_d_are_left_out(tmp_path: Path) -> None:
    log_path = tmp_path / "p.log"
    program = ProgramLog.to_file(str(log_path))
    try:
        program.diagnostic(Diagnostic(Severity.DEBUG, "a.conf", 1, "removing x: disabled"))
        program.diagnostic(Diagnostic(Severity.DEBUG, "a.conf", 2, "added service daytime",
                                      always=True))
    finally:
        program.close()
    text = log_path.read_text()
    assert "removing" not in text
    assert "DEBUG: added service daytime [file=a.conf] [line=2]\n" in text
