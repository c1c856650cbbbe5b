"""inetd.conf users and groups are names: a number is refused, as by every inetd and by
xinetd -inetd_compat (`Unknown user: 0`), with FILE:LINE and the name to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxinetd.config import Configuration, Severity, load
from pyxinetd.convert import convert

CAT = "/bin/cat"


def load_inetd(tmp_path: Path, text: str) -> Configuration:
    main = tmp_path / "xinetd.conf"
    main.write_text("defaults\n{\n}\n")
    inetd = tmp_path / "inetd.conf"
    inetd.write_text(text)
    return load(str(main), inetd_compat=True, inetd_path=str(inetd))


@pytest.mark.parametrize(("field", "message"), [
    ("0", "user '0' is a number: inetd.conf takes user names only"),
    ("65534", "user '65534' is a number"),
    ("0.0", "user '0' is a number"),
    ("nobody.65534", "group '65534' is a number: inetd.conf takes group names only"),
    ("nobody:65534", "group '65534' is a number"),
])
def test_numeric_user_or_group_is_refused_with_file_and_line(tmp_path: Path, field: str,
                                                              message: str) -> None:
    config = load_inetd(tmp_path, f"# numbers\ntime stream tcp nowait {field} {CAT} cat\n"
                                  "daytime stream tcp nowait nobody.nogroup internal\n")
    assert [s.id for s in config.services] == ["daytime-stream"]
    errors = [str(d) for d in config.diagnostics if d.severity is Severity.ERROR]
    assert len(errors) == 1 and "inetd.conf:2:24: error: " in errors[0], errors
    assert message in errors[0] and errors[0].endswith("; entry skipped")
    assert [d.line for d in config.dropped] == [2]


def test_the_message_names_the_account_to_write() -> None:
    result = convert(f"time stream tcp nowait 0 {CAT} cat\n")
    assert result.skipped == 1 and "service time" not in result.text
    assert any("<stdin>:1:" in p and "write 'root'" in p for p in result.problems())


@pytest.mark.parametrize(("field", "message"), [
    ("nobody.", "no group name after 'nobody.'"),
    ("nobody:", "no group name after 'nobody:'"),
    (".nogroup", "no user name in '.nogroup'"),
])
def test_an_empty_user_or_group_is_refused_with_file_and_line(tmp_path: Path, field: str,
                                                              message: str) -> None:
    # xinetd: `Unknown group: ` and the entry is skipped; a group forgotten after the
    # separator is not run silently with the user's own group.
    config = load_inetd(tmp_path, f"time stream tcp nowait {field} {CAT} cat\n")
    assert not config.services
    errors = [str(d) for d in config.diagnostics if d.severity is Severity.ERROR]
    assert len(errors) == 1 and "inetd.conf:1:24: error: " in errors[0], errors
    assert message in errors[0] and errors[0].endswith("; entry skipped")
    assert "not converted" in convert(f"time stream tcp nowait {field} {CAT} cat\n").text
