"""A log, dump or server stderr path in a sticky world-writable folder (/tmp) where another user put a
symlink: the daemon, root, does not follow it, as the kernel refuses with
fs.protected_symlinks = 1 (Debian's default), whatever this host's setting. A link the
folder's owner or the daemon's user made is followed as before."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port
from tests.integration.test_dispatch import connect, read_all
from tests.integration.test_logs_creation import refused, service

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a link owned by nobody)")

SECRET = "root's file, not a log\n"


def shared_folder(tmp_path: Path) -> Path:
    """A folder like /tmp: sticky, writable by everyone."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


def planted(folder: Path, name: str, target: Path, owner: str | None) -> Path:
    """A symlink FOLDER/NAME to `target`, owned by `owner` (None: root, this process)."""
    link = folder / name
    link.symlink_to(target)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.lchown(link, entry.pw_uid, entry.pw_gid)
    return link


def secret(tmp_path: Path) -> Path:
    target = tmp_path / "secret"
    target.write_text(SECRET)
    target.chmod(0o600)
    return target


def test_a_log_symlink_planted_by_another_user_is_not_followed(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    target = secret(tmp_path)
    link = planted(shared_folder(tmp_path), "x.log", target, "nobody")
    bad_port, good_port = free_port(), free_port()
    daemon = daemons.start_config(service("bad", bad_port, link)
                                  + service("good", good_port, tmp_path / "good.log"))
    text = daemon.log()
    assert f"Cannot open {link}: Permission denied (errno = 13)" in text
    assert "ERROR: creation of bad log failed" in text
    assert refused(bad_port)
    with connect(good_port) as conn:
        assert read_all(conn) == b"hi\n"
    assert target.read_text() == SECRET


def test_a_log_symlink_of_the_folders_owner_is_followed(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    target = tmp_path / "real.log"
    link = planted(shared_folder(tmp_path), "x.log", target, None)
    port = free_port()
    daemon = daemons.start_config(service("linked", port, link).replace(
        "log_type", "log_on_success = PID\n\tlog_type"))
    assert "Started working: 1 available service" in daemon.log()
    with connect(port) as conn:
        assert read_all(conn) == b"hi\n"
    daemon.wait_for_log(r"Started working")
    assert "START: linked pid=" in target.read_text()


def test_a_dump_symlink_planted_by_another_user_is_not_followed(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = secret(tmp_path)
    link = planted(shared_folder(tmp_path), "xinetd.dump", target, "nobody")
    monkeypatch.setenv("PYXINETD_DUMP_FILE", str(link))
    daemon = daemons.start_config(service("s", free_port(), tmp_path / "s.log"))
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log(rf"ERROR: failed to open {re.escape(str(link))}: Permission denied")
    assert daemon.proc.poll() is None
    assert target.read_text() == SECRET


def test_a_stderr_symlink_planted_by_another_user_is_not_handed_to_the_server(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    target = secret(tmp_path)
    link = planted(shared_folder(tmp_path), "server.err", target, "nobody")
    port = free_port()
    conf = (f"service s\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = nobody\n\tserver = /bin/echo\n\tserver_args = hi\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tstderr = {link}\n}}\n")
    daemon = daemons.start_config(conf)
    with connect(port) as conn:
        assert read_all(conn) == b"hi\n"
    daemon.wait_for_log(rf"cannot open stderr file {re.escape(str(link))} "
                        rf"\(Permission denied")
    assert target.read_text() == SECRET


def test_a_log_path_through_a_planted_folder_link_is_not_followed(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # /tmp/logs -> a folder of root's: the kernel checks every link of a path, not only
    # its last name.
    folder = tmp_path / "root-only"
    folder.mkdir()
    target = secret(folder)
    link = planted(shared_folder(tmp_path), "logs", folder, "nobody") / target.name
    bad_port, good_port = free_port(), free_port()
    daemon = daemons.start_config(service("bad", bad_port, link)
                                  + service("good", good_port, tmp_path / "good.log"))
    assert f"Cannot open {link}: Permission denied (errno = 13)" in daemon.log()
    assert refused(bad_port)
    with connect(good_port) as conn:
        assert read_all(conn) == b"hi\n"
    assert target.read_text() == SECRET


def test_a_link_of_the_folders_owner_to_a_planted_link_is_not_followed(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    shared = shared_folder(tmp_path)
    target = secret(tmp_path)
    planted(shared, "planted.log", target, "nobody")
    link = planted(shared, "x.log", shared / "planted.log", None)
    port = free_port()
    daemon = daemons.start_config(service("s", port, link))
    assert f"Cannot open {link}: Permission denied (errno = 13)" in daemon.log()
    assert refused(port)
    assert target.read_text() == SECRET


def test_the_check_of_the_daemons_options_refuses_a_planted_filelog(tmp_path: Path) -> None:
    # The init script asks it before stopping a running daemon: it must fail where the
    # daemon's own open of the -filelog would.
    target = secret(tmp_path)
    link = planted(shared_folder(tmp_path), "xinetd.log", target, "nobody")
    conf = tmp_path / "xinetd.conf"
    conf.write_text(service("s", free_port(), tmp_path / "s.log"))
    done = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "--daemon-options",
                           f"-f {conf} -filelog {link}"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done
    assert done.stderr == ("pyxinetd: msg_init failed: can't open log file "
                           "(Permission denied)\n")
    assert target.read_text() == SECRET
