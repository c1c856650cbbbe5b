"""Unknown users and groups: the message fits the file. xinetd.conf takes numeric ids,
so its message suggests one; inetd.conf takes names only, so its message does not."""

from __future__ import annotations

from pathlib import Path

from pyxinetd.config import Configuration, Severity, load

CAT = "/bin/cat"
XINETD_SERVICE = """\
service ghost
{{
    type        = UNLISTED
    port        = 4777
    socket_type = stream
    protocol    = tcp
    wait        = no
    server      = {cat}
    {line}
}}
"""


def load_both(tmp_path: Path, xinetd_line: str, inetd_text: str) -> Configuration:
    main = tmp_path / "xinetd.conf"
    main.write_text("defaults\n{\n}\n" + XINETD_SERVICE.format(cat=CAT, line=xinetd_line))
    inetd = tmp_path / "inetd.conf"
    inetd.write_text(inetd_text)
    return load(str(main), inetd_compat=True, inetd_path=str(inetd))


def errors(config: Configuration, file: Path) -> list[str]:
    return [f"{d.line}: {d.message}" for d in config.diagnostics
            if d.severity is Severity.ERROR and d.file == str(file)]


def test_unknown_user_in_inetd_conf_asks_for_a_name(tmp_path: Path) -> None:
    config = load_both(tmp_path, "user = nobody",
                       f"\ndaytime stream tcp nowait nosuchuser-x {CAT} cat\n")
    assert errors(config, tmp_path / "inetd.conf") == [
        "2: Unknown user: nosuchuser-x (service daytime: expected a user name (inetd.conf "
        "takes names only); service disabled)"]
    assert [s.id for s in config.services] == ["ghost"]


def test_unknown_group_in_inetd_conf_asks_for_a_name(tmp_path: Path) -> None:
    config = load_both(tmp_path, "user = nobody",
                       f"daytime stream tcp nowait nobody:nosuchgroup-x {CAT} cat\n")
    assert errors(config, tmp_path / "inetd.conf") == [
        "1: Unknown group: nosuchgroup-x (service daytime: expected a group name (inetd.conf "
        "takes names only); service disabled)"]


def test_unknown_user_in_xinetd_conf_still_suggests_a_uid(tmp_path: Path) -> None:
    config = load_both(tmp_path, "user = nosuchuser-x",
                       f"daytime stream tcp nowait nosuchuser-y {CAT} cat\n")
    assert errors(config, tmp_path / "xinetd.conf") == [
        "12: Unknown user: nosuchuser-x (service ghost: expected a user name or a numeric "
        "uid; service disabled)"]
    assert not config.services


def test_unknown_group_in_xinetd_conf_still_suggests_a_gid(tmp_path: Path) -> None:
    config = load_both(tmp_path, "group = nosuchgroup-x", "")
    assert errors(config, tmp_path / "xinetd.conf") == [
        "12: Unknown group: nosuchgroup-x (service ghost: expected a group name or a "
        "numeric gid; service disabled)"]


def test_numeric_ids_keep_their_meaning_in_each_file(tmp_path: Path) -> None:
    # xinetd.conf: a uid; inetd.conf: refused, as inetd and xinetd -inetd_compat do.
    config = load_both(tmp_path, "user = 65534", f"daytime stream tcp nowait 65534 {CAT} cat\n")
    assert [(s.id, s.user) for s in config.services] == [("ghost", 65534)]
    inetd_errors = errors(config, tmp_path / "inetd.conf")
    assert len(inetd_errors) == 1 and "user '65534' is a number" in inetd_errors[0]
