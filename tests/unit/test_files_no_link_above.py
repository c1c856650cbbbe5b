"""Which paths the log, dump and stderr files are opened through at once (a single
O_NOFOLLOW open) rather than by the walk that checks each symlink: only those whose
folders no one but root could swap for a link between the check and the open."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from pyxinetd.files import _no_link_above, open_for_append

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a folder of nobody)")


def sticky_shared(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


def test_a_path_below_folders_of_root_is_opened_at_once(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    assert _no_link_above(str(tmp_path / "logs" / "x.log"))


@needs_root
def test_a_folder_another_user_owns_in_a_sticky_folder_is_walked(tmp_path: Path) -> None:
    # Its owner may rename it and put a link in its place between a check and the open.
    theirs = sticky_shared(tmp_path) / "theirs"
    theirs.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    assert not _no_link_above(str(theirs / "x.log"))


def test_a_folder_of_root_in_a_sticky_folder_is_opened_at_once(tmp_path: Path) -> None:
    mine = sticky_shared(tmp_path) / "mine"
    mine.mkdir()
    assert _no_link_above(str(mine / "x.log")) == (os.geteuid() == mine.stat().st_uid)


def test_a_folder_in_a_group_writable_folder_is_walked(tmp_path: Path) -> None:
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "logs").mkdir()
    holder.chmod(0o775)
    assert not _no_link_above(str(holder / "logs" / "x.log"))


def test_a_path_with_dot_dot_or_a_missing_folder_is_walked(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    assert not _no_link_above(str(tmp_path / "logs" / ".." / "x.log"))
    assert not _no_link_above(str(tmp_path / "missing" / "x.log"))


def test_a_folder_link_is_walked(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "logs")
    assert not _no_link_above(str(tmp_path / "via" / "x.log"))


@needs_root
def test_a_planted_folder_link_named_with_a_trailing_slash_is_refused(tmp_path: Path) -> None:
    # "log/" makes the kernel follow the link whatever O_NOFOLLOW says: the walk
    # refuses it as planted, as without the slash, rather than reporting a folder.
    folder = tmp_path / "private"
    folder.mkdir()
    link = sticky_shared(tmp_path) / "log"
    link.symlink_to(folder)
    nobody = pwd.getpwnam("nobody")
    os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    for path in (f"{link}/", f"{link}/."):
        with pytest.raises(PermissionError):
            open_for_append(path)
