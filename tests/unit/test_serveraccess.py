"""Whether a service's user can run its server (pyxinetd.config.serveraccess), judged
from the mode bits as the exec after setuid will meet them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxinetd.config import load
from pyxinetd.config.serveraccess import access_problem

# A user that owns none of the test's files: nobody, unless the tests run as nobody.
OTHER_UID = 65534 if os.geteuid() != 65534 else 65533
OTHER_GID = 65534 if os.getegid() != 65534 else 65533


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder anyone can search (pytest's own are 0700), in /tmp."""
    with tempfile.TemporaryDirectory(prefix="serveraccess-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


@pytest.fixture
def folder(base: Path) -> Path:
    shared = base / "shared"
    shared.mkdir(mode=0o755)
    return shared


def server(folder: Path, mode: int, text: bytes = b"#!/bin/sh\necho hi\n") -> str:
    path = folder / "chal"
    path.write_bytes(text)
    path.chmod(mode)
    return str(path)


def test_a_runnable_server(folder: Path) -> None:
    assert access_problem(server(folder, 0o755), OTHER_UID, {OTHER_GID}) is None
    assert access_problem("/bin/cat", OTHER_UID, {OTHER_GID}) is None


def test_a_folder_the_user_cannot_search(folder: Path) -> None:
    path = server(folder, 0o755)
    folder.chmod(0o700)
    assert access_problem(path, OTHER_UID, {OTHER_GID}) == f"no search permission on {folder}"
    # Its owner (and a member of its group, with the group's bit) can.
    assert access_problem(path, os.getuid(), {OTHER_GID}) is None
    folder.chmod(0o710)
    assert access_problem(path, OTHER_UID, {os.stat(folder).st_gid}) is None


def test_a_file_the_user_cannot_execute(folder: Path) -> None:
    assert access_problem(server(folder, 0o744), OTHER_UID, {OTHER_GID}) == (
        "no execute permission on the file")


def test_a_script_the_user_cannot_read(folder: Path) -> None:
    assert access_problem(server(folder, 0o711), OTHER_UID, {OTHER_GID}) == (
        "no read permission on the script, which its interpreter must read")
    # A binary needs no read permission to be exec'd.
    assert access_problem(server(folder, 0o711, b"\x7fELF"), OTHER_UID, {OTHER_GID}) is None


def test_a_link_is_judged_where_it_leads(folder: Path, base: Path) -> None:
    target = server(folder, 0o755)
    private = base / "private"
    private.mkdir(mode=0o700)
    (private / "chal").write_bytes(Path(target).read_bytes())
    (private / "chal").chmod(0o755)
    link = folder / "link"
    link.symlink_to(private / "chal")
    assert access_problem(str(link), OTHER_UID, {OTHER_GID}) == (
        f"no search permission on {private}")


@pytest.mark.skipif(os.geteuid() != 0, reason="the user is switched to only by root")
def test_the_loader_warns_and_keeps_the_service(tmp_path: Path) -> None:
    # pytest's folders are 0700: nobody cannot reach a server there.
    path = tmp_path / "chal.sh"
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(0o755)
    conf = tmp_path / "xinetd.conf"
    conf.write_text(f"service chal\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                    f"\twait = no\n\tuser = nobody\n\tserver = {path}\n\tport = 20932\n}}\n")
    config = load(str(conf), environ={})
    assert [s.id for s in config.services] == ["chal"]
    warnings = [d.message for d in config.diagnostics if d.severity.value == "warning"]
    closed = next(str(f) for f in reversed(path.parents) if not os.stat(f).st_mode & 0o001)
    assert warnings == [f"service chal: user nobody cannot run {path}: no search "
                        f"permission on {closed}; every exec of it will fail"], warnings


def interpreter_in(folder: Path, mode: int = 0o755) -> Path:
    """A copy of /bin/sh in `folder`, as a script's #! interpreter."""
    copy = folder / "sh"
    copy.write_bytes(Path("/bin/sh").read_bytes())
    copy.chmod(mode)
    return copy


def test_a_script_whose_interpreter_the_user_cannot_reach(folder: Path, base: Path) -> None:
    # A Python under /root (0700), a virtual environment only root may enter: the
    # script is fine, its every exec fails with a bare EACCES.
    private = base / "private"
    private.mkdir(mode=0o700)
    sh = interpreter_in(private)
    path = server(folder, 0o755, f"#!{sh}\necho hi\n".encode())
    assert access_problem(path, OTHER_UID, {OTHER_GID}) == (
        f"its #! interpreter {sh}: no search permission on {private}")
    private.chmod(0o755)
    assert access_problem(path, OTHER_UID, {OTHER_GID}) is None


def test_a_script_whose_interpreter_the_user_cannot_execute(folder: Path, base: Path) -> None:
    tools = base / "tools"
    tools.mkdir(mode=0o755)
    sh = interpreter_in(tools, 0o750)
    path = server(folder, 0o755, f"#! {sh} -e\necho hi\n".encode())
    assert access_problem(path, OTHER_UID, {OTHER_GID}) == (
        f"its #! interpreter {sh}: no execute permission on the file")
    # A member of the interpreter's group may.
    assert access_problem(path, OTHER_UID, {os.stat(sh).st_gid}) is None
