"""scripts/diff-fuzz-inetd's filters: what they leave out of the comparison, and no more."""

from __future__ import annotations

from types import ModuleType

from tests.scripts import load_script

LONG = "finger stream tcp nowait nobody /usr/sbin/fingerd fingerd " + "-x" * 4100


def _fuzzer() -> ModuleType:
    return load_script("diff-fuzz-inetd")


def test_a_tcpmux_entry_after_a_long_line_is_left_out_under_xinetds_name_too() -> None:
    # xinetd names `tcpmux/+status` `tcpmux`; after a long line (xinetd's numbers of
    # the lines after it are not the file's) the entry is left out under both names.
    fuzz = _fuzzer()
    text = f"{LONG}\ntcpmux/+status stream tcp nowait nobody /usr/bin/statusd statusd\n"
    found = fuzz.entries(text)
    assert [(e.name, bool(e.deviation)) for e in found] == [("finger", True),
                                                           ("status", True)]
    assert fuzz.left_out(found, text) == {"finger", "status", "tcpmux"}


def test_entries_without_a_deviation_are_compared() -> None:
    fuzz = _fuzzer()
    text = ("tcpmux stream tcp nowait root internal\n"
            "echo stream tcp nowait root internal\n"
            "tcpmux/+status stream tcp nowait nobody /usr/bin/statusd statusd\n")
    # Only the `name/suffix` entry is left out, and xinetd's `tcpmux` for it.
    assert fuzz.left_out(fuzz.entries(text), text) == {"status", "tcpmux"}
    plain = "echo stream tcp nowait root internal\n"
    assert fuzz.left_out(fuzz.entries(plain), plain) == set()
