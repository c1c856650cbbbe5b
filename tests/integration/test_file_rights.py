"""Files the daemon opens for a service (`stderr`, banners) get no more than the
service's own rights where a user other than root controls the folder
(pyxinetd.filerights). The service's user, owning the folder, swaps the file for a
symlink to a root-only file: a root open sent that file to every client as a banner,
or gave the server a root-opened descriptor on it (local root). Real daemon, real
servers as nobody, real files. Root only (the folder is nobody's)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, wait_until
from tests.integration.test_stderr import ask

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a folder of nobody's)")

NOBODY = 65534
SECRET = b"root-only secret line\n"
TIMEOUT = 10.0
ECHO = "/bin/echo"


class Place:
    """A folder any user can search (root's, 0755) holding a root-only file, the
    server, and a folder of nobody's, as a challenge folder or a service's home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secret = root / "secret"
        self.secret.write_bytes(SECRET)
        self.secret.chmod(0o600)
        self.server = root / "talker"
        self.server.write_text("#!/bin/sh\necho out\necho attacker-line >&2\n")
        self.server.chmod(0o755)
        self.users = root / "users"
        self.users.mkdir()
        os.chown(self.users, NOBODY, NOBODY)

    def planted(self, name: str, target: Path) -> Path:
        """A symlink of nobody's in nobody's folder."""
        link = self.users / name
        link.symlink_to(target)
        os.lchown(link, NOBODY, NOBODY)
        return link


@pytest.fixture
def place() -> Iterator[Place]:
    folder = tempfile.mkdtemp(prefix="pyxinetd-rights-")
    try:
        os.chmod(folder, 0o755)
        yield Place(Path(folder))
    finally:
        shutil.rmtree(folder)


def service(port: int, server: Path | str, *lines: str) -> str:
    body = "".join(f"\t{line}\n" for line in lines)
    return (f"service talker\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n\tuser = nobody\n\tserver = {server}\n"
            f"{body}}}\n")


def test_a_stderr_link_planted_by_the_services_user_gets_no_root_open(
        daemons: DaemonFactory, place: Place) -> None:
    link = place.planted("err.log", place.secret)
    dangling = place.planted("new.log", place.root / "created-by-root")
    port, port2 = free_port(), free_port()
    daemon = daemons.start_config(
        service(port, place.server, f"stderr = {link}")
        + service(port2, place.server, f"stderr = {dangling}").replace(
            "service talker", "service talker2"))
    assert ask(port) == b"out\n"
    assert ask(port2) == b"out\n"
    wait_until(lambda: daemon.log().count("cannot open stderr file") >= 2, TIMEOUT)
    assert place.secret.read_bytes() == SECRET
    assert not (place.root / "created-by-root").exists()
    assert f"cannot open stderr file {link} (Permission denied (errno = 13))" in daemon.log()


def test_roots_link_into_the_services_folder_is_followed_with_its_rights(
        daemons: DaemonFactory, place: Place) -> None:
    # A link root made, in root's folder, leads into nobody's: what it leads to there
    # is nobody's to choose, so it is opened with nobody's rights.
    planted = place.planted("err.log", place.secret)
    link = place.root / "err.log"
    link.symlink_to(planted)
    port = free_port()
    daemon = daemons.start_config(service(port, place.server, f"stderr = {link}"))
    assert ask(port) == b"out\n"
    wait_until(lambda: "cannot open stderr file" in daemon.log(), TIMEOUT)
    assert place.secret.read_bytes() == SECRET


def test_a_stderr_file_in_the_services_own_folder_is_its_own(daemons: DaemonFactory,
                                                              place: Place) -> None:
    # Opened with nobody's rights there: created by and for nobody, and written.
    path = place.users / "err.log"
    port = free_port()
    daemons.start_config(service(port, place.server, f"stderr = {path}"))
    assert ask(port) == b"out\n"
    wait_until(lambda: path.exists() and path.read_bytes() == b"attacker-line\n", TIMEOUT)
    assert path.stat().st_uid == NOBODY


def test_a_stderr_file_in_roots_folder_is_created_by_the_daemon(daemons: DaemonFactory,
                                                                 place: Place) -> None:
    # A folder only root can change: the daemon creates the file (0640, root's) and a
    # nobody server writes to it, as the attribute promises.
    path = place.root / "err.log"
    port = free_port()
    daemons.start_config(service(port, place.server, f"stderr = {path}"))
    assert ask(port) == b"out\n"
    wait_until(lambda: path.exists() and path.read_bytes() == b"attacker-line\n", TIMEOUT)
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (0, 0o640)


def test_a_banner_link_planted_by_the_services_user_sends_nothing(daemons: DaemonFactory,
                                                                  place: Place) -> None:
    link = place.planted("banner.txt", place.secret)
    port = free_port()
    daemon = daemons.start_config(service(port, ECHO, "server_args = out",
                                          f"banner_success = {link}", f"banner = {link}"))
    assert ask(port) == b"out\n"
    wait_until(lambda: daemon.log().count("open of banner") >= 2, TIMEOUT)
    assert f"open of banner {link} failed: Permission denied" in daemon.log()


@pytest.mark.parametrize("planted", [True, False], ids=["link", "own-file"])
def test_a_tcp_wrappers_banner_link_sends_nothing(daemons: DaemonFactory, place: Place,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  planted: bool) -> None:
    # hosts.allow `banners DIR`, the file named after the server: in nobody's folder.
    if planted:
        place.planted("talker", place.secret)
    else:
        (place.users / "talker").write_bytes(b"welcome\n")
    allow, deny = place.root / "hosts.allow", place.root / "hosts.deny"
    allow.write_text(f"talker: ALL: banners {place.users}\n")
    deny.write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(allow))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(deny))
    port = free_port()
    daemons.start_config(service(port, place.server, "stderr = /dev/null"))
    assert ask(port) == (b"out\n" if planted else b"welcome\r\nout\n")   # libwrap: CRLF


def test_a_banner_in_the_services_folder_is_sent(daemons: DaemonFactory, place: Place) -> None:
    path = place.users / "banner.txt"
    path.write_bytes(b"welcome\n")
    port = free_port()
    daemons.start_config(service(port, ECHO, "server_args = out",
                                 f"banner_success = {path}"))
    assert ask(port) == b"welcome\nout\n"
