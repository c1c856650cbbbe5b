"""pyxinetd.filerights.only_root_can_change: which paths the daemon opens as root."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pyxinetd.filerights import only_root_can_change, root_only_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the folders must be root's")


def test_a_root_folder_path_is_roots_alone() -> None:
    assert only_root_can_change("/etc/passwd")
    assert only_root_can_change("/etc/no-such-file")     # the daemon may create it


@pytest.mark.parametrize("path", ["etc/passwd", "/etc/../etc/passwd", "/etc/", ""])
def test_relative_dotted_or_folder_paths_are_not(path: str) -> None:
    assert not only_root_can_change(path)


def test_a_file_in_a_sticky_shared_folder_is_only_when_it_is_there_and_roots() -> None:
    # Anyone may create a missing name in /tmp first; root's existing file no one can
    # replace.
    with tempfile.NamedTemporaryFile(dir="/tmp") as f:
        assert only_root_can_change(f.name)
        os.chown(f.name, 65534, 65534)
        assert not only_root_can_change(f.name)
    assert not only_root_can_change("/tmp/pyxinetd-no-such-file")


def test_a_folder_of_roots_inside_a_sticky_one_keeps_its_files(tmp_path: Path) -> None:
    # pytest's folders are root's, under the sticky /tmp: no one else can rename them.
    assert only_root_can_change(str(tmp_path / "banner"))


def test_a_folder_of_another_user_or_writable_by_others_is_not(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    assert not only_root_can_change(str(theirs / "banner"))
    assert not only_root_can_change(str(theirs / "deeper" / "banner"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    assert not only_root_can_change(str(shared / "banner"))
    # A link on the way: root's, to root's folder, as /var/run -> /run, is followed;
    # one of another user's, or leading to their folder, is not.
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert root_only_path(str(link / "banner")) == str(tmp_path / "banner")
    into_theirs = tmp_path / "into-theirs"
    into_theirs.symlink_to(theirs)
    assert not only_root_can_change(str(into_theirs / "banner"))
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path)
    os.lchown(planted, 65534, 65534)
    assert not only_root_can_change(str(planted / "banner"))


@pytest.mark.parametrize(("path", "own"), [
    ("/proc/self/fd/2", True), ("/proc/thread-self/fd/1", True), ("/proc/1/fd/1", True),
    ("/proc/{pid}/fd/0", True), ("/proc/self/root/tmp/x", False),
    ("/proc/self/cwd/x", False), ("/proc/1234567/fd/1", False), ("/proc/self/fd/x", False),
    ("/dev/fd/2", True), ("/dev/fd/../x", False)])
def test_the_proc_links_followed_as_the_daemon(path: str, own: bool) -> None:
    # Descriptors of the daemon or of init (a container's logs): not paths in /tmp.
    from pyxinetd.filerights import _own_or_inits_proc
    assert _own_or_inits_proc(path.format(pid=os.getpid())) is own


def test_acting_as_another_user_gives_every_id_back() -> None:
    # In a process of its own (the switch is process-wide): ids, groups and the
    # dumpable flag, which a change of effective ids clears, are as they were.
    import subprocess
    import sys
    script = (
        "import os\n"
        "from pyxinetd.filerights import NOBODY, Rights, acting_as, _dumpable\n"
        "os.setgroups([4, 27])\n"
        "before = (os.geteuid(), os.getegid(), sorted(os.getgroups()), _dumpable())\n"
        "with acting_as(Rights(65534, 65534, (100,))):\n"
        "    inside = (os.geteuid(), os.getegid(), sorted(os.getgroups()))\n"
        "after = (os.geteuid(), os.getegid(), sorted(os.getgroups()), _dumpable())\n"
        "print(before == after, inside, before)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split(" ", 1)
    assert out[0] == "True", out
    assert out[1].startswith("(65534, 65534, [100])"), out
