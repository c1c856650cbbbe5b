"""pyxinetd.installation: the package's files compared with the ones recorded."""

from __future__ import annotations

import os
from pathlib import Path

from pyxinetd.installation import Installation, Replacement


def package(root: Path, version: str = "1.0") -> Path:
    folder = root / "pyxinetd"
    (folder / "config").mkdir(parents=True)
    (folder / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (folder / "config" / "model.py").write_text("FIELDS = 1\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    return folder


def rewrite(path: Path, text: str) -> None:
    """As an installer writes a file: a new file, a new mtime."""
    mtime = path.stat().st_mtime_ns
    path.unlink()
    path.write_text(text)
    os.utime(path, ns=(mtime + 1_000_000, mtime + 1_000_000))


def test_the_same_contents_rewritten_are_not_a_replacement(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    rewrite(folder / "config" / "model.py", "FIELDS = 1\n")
    assert recorded.replaced() is None
    # The new stamps are kept: the next check compares stats only.
    assert recorded.stamps == Installation.read(str(folder), "1.0").stamps


def test_bytecode_is_not_looked_at(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    (folder / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\1\2")
    assert recorded.replaced() is None


def test_a_changed_file_is_named_with_the_version_on_disk(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    rewrite(folder / "config" / "model.py", "FIELDS = 2\n")
    assert recorded.replaced() == Replacement("1.0", "1.0", "config/model.py")
    rewrite(folder / "__init__.py", '__version__ = "2.0"\n')
    replaced = recorded.replaced()
    assert replaced is not None
    assert str(replaced) == "pyxinetd on disk is now 2.0 (this daemon runs 1.0)"


def test_an_added_module_is_a_replacement(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    (folder / "config" / "fields.py").write_text("")
    assert recorded.replaced() == Replacement("1.0", "1.0", "config/fields.py")


def test_a_removed_package_is_named_so(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    (folder / "__init__.py").unlink()
    replaced = recorded.replaced()
    assert replaced == Replacement("1.0", None, "__init__.py")
    assert str(replaced) == "pyxinetd 1.0 is no longer installed (__init__.py is missing)"


def test_no_descriptor_to_look_with_is_not_a_replacement(tmp_path: Path) -> None:
    """Out of descriptors (EMFILE), the folder cannot be listed: that says nothing of an
    upgrade (it was taken for a removed package, and the name resolver was then never
    started, where the shortage should be reported as itself)."""
    import subprocess
    import sys

    folder = package(tmp_path)
    script = (
        "import os, resource, sys\n"
        "from pyxinetd.installation import Installation\n"
        f"recorded = Installation.read({str(folder)!r}, '1.0')\n"
        "used = len(os.listdir('/proc/self/fd'))\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (used - 1, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1]))\n"
        "try:\n"
        "    os.scandir('/')\n"
        "except OSError as err:\n"
        "    print('EMFILE' if err.errno == 24 else err)\n"
        "print(recorded.replaced())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["EMFILE", "None"], done


def test_an_editor_lock_file_is_not_code(tmp_path: Path) -> None:
    # Emacs locks a file it edits with a dangling symlink named `.#NAME`: no module
    # can be imported from it. It used to fail the stat of every check, reported as
    # a changed __init__.py, and to leave the daemon with no record at all.
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    lock = folder / "config" / ".#model.py"
    lock.symlink_to("someone@host.1234:5678")
    assert recorded.replaced() is None
    assert Installation.read(str(folder), "1.0").stamps == recorded.stamps


def test_a_file_removed_while_listed_is_named(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    # A dangling symlink is what a file removed between the listing and its stat
    # looks like to the stat.
    (folder / "config" / "model.py").unlink()
    (folder / "config" / "model.py").symlink_to("gone")
    assert recorded.replaced() == Replacement("1.0", "1.0", "config/model.py")


def test_a_copy_or_another_pythons_extension_is_not_code(tmp_path: Path) -> None:
    # Neither is ever imported: `model.orig.py` names no module, and an extension
    # built for another Python has a suffix this one does not load.
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    (folder / "config" / "model.orig.py").write_text("FIELDS = 0\n")
    (folder / "_spawn.cpython-19-x86_64-linux-gnu.so").write_bytes(b"\0")
    assert recorded.replaced() is None


def test_an_extension_module_is_code(tmp_path: Path) -> None:
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    (folder / "_spawn.so").write_bytes(b"\0")
    assert recorded.replaced() == Replacement("1.0", "1.0", "_spawn.so")


def test_a_copied_folder_is_not_code(tmp_path: Path) -> None:
    # `config.orig/` names no package: nothing in it is ever imported. A new package
    # (a folder named like one, with or without __init__.py) is code all the same.
    folder = package(tmp_path)
    recorded = Installation.read(str(folder), "1.0")
    for copy in ("config.orig", "config copy"):
        (folder / copy).mkdir()
        (folder / copy / "model.py").write_text("FIELDS = 0\n")
    assert recorded.replaced() is None
    (folder / "newpkg").mkdir()
    (folder / "newpkg" / "model.py").write_text("FIELDS = 0\n")
    assert recorded.replaced() == Replacement("1.0", "1.0", "newpkg/model.py")


def test_a_fifo_put_where_a_module_was_is_a_replacement_read_without_blocking(
        tmp_path: Path) -> None:
    # An empty module (as many __init__.py are) replaced by a FIFO: the same size, a new
    # mtime, so its contents are compared. Opened as before, open(2) waited for a
    # writer, and the daemon's loop with it (it checks at every reload).
    folder = package(tmp_path)
    empty = folder / "config" / "__init__.py"
    empty.write_bytes(b"")
    recorded = Installation.read(str(folder), "1.0")
    mtime = empty.stat().st_mtime_ns
    empty.unlink()
    os.mkfifo(empty)
    os.utime(empty, ns=(mtime + 1_000_000, mtime + 1_000_000))
    assert recorded.replaced() == Replacement("1.0", "1.0", "config/__init__.py")
