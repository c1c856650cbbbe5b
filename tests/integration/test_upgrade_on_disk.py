"""pyxinetd upgraded on disk under a running daemon (docs/reload.md, "An upgrade under a
running daemon").

The daemon runs from a copy of the package installed in a virtual environment of its
own, not from the tree under test; the copy is then replaced as an installer replaces
it (the old files removed, the new ones written: a file rewritten in place would change
the C extension the daemon has mapped), and the daemon reloads, dumps, starts its name
resolver and serves.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pyxinetd
from tests.daemon import Daemon, DaemonFactory, free_port

PACKAGE = Path(pyxinetd.__file__).resolve().parent
RUNNING = pyxinetd.__version__
NEW_VERSION = f"{RUNNING}.post1"


class Installation:
    """A copy of the package in a virtual environment (`--system-site-packages`, for
    pyparsing and the rest), and a way to start the daemon from it."""

    def __init__(self, root: Path) -> None:
        self.venv = root / "venv"
        try:
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                            "--without-pip", str(self.venv)], check=True,
                           capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as err:
            pytest.skip(f"no virtual environment can be made here: {err}")
        self.python = self.venv / "bin" / "python"
        site = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True, env=self.environment(),
            timeout=60).stdout.strip()
        self.package = Path(site) / "pyxinetd"
        if sys.prefix != sys.base_prefix:
            # The suite runs in a virtual environment: its packages (pyparsing, click...)
            # are not the system's that --system-site-packages shows, so they are listed
            # (after this environment's own, so the copy below is the pyxinetd found).
            ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
            (Path(site) / "suite-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
        self.install()
        imported = subprocess.run(
            [str(self.python), "-c", "import pyxinetd; print(pyxinetd.__file__)"],
            check=True, capture_output=True, text=True, env=self.environment(), cwd="/",
            timeout=60).stdout.strip()
        assert Path(imported).parent == self.package

    @staticmethod
    def environment() -> dict[str, str]:
        """The test's environment without the PYTHONPATH that points at the tree."""
        return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def install(self, change: Callable[[Path], None] | None = None) -> None:
        """Put a copy of the tree's package in place of the installed one (new files,
        new mtimes), changed by `change` (given the copy's folder) first."""
        staged = self.package.with_name("pyxinetd.new")
        shutil.copytree(PACKAGE, staged, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", "*.c"))
        if change is not None:
            change(staged)
        shutil.rmtree(self.package, ignore_errors=True)
        staged.rename(self.package)

    def wrapper(self) -> list[str]:
        """For DaemonFactory.start_config: runs its command with this environment's
        interpreter instead of the test's, without PYTHONPATH, under the same pid."""
        return ["sh", "-c", f'shift; unset PYTHONPATH; exec "{self.python}" "$@"', "sh"]


def new_version(package: Path) -> None:
    init = package / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{RUNNING}"',
                                             f'__version__ = "{NEW_VERSION}"'))


def new_field(package: Path) -> None:
    """A model with one more field, and a loader that fills it: the daemon's own model,
    inherited by the loader child, has no such field."""
    model = package / "config" / "model.py"
    text = model.read_text()
    anchor = "    own_environment: tuple[str, ...] | None = None\n"
    assert anchor in text
    model.write_text(text.replace(anchor, anchor + "    listen_queue: int = 64\n", 1))
    pipeline = package / "config" / "pipeline.py"
    text = pipeline.read_text()
    anchor = "own_environment=own_environment,"
    assert anchor in text
    pipeline.write_text(text.replace(anchor, anchor + " listen_queue=128,", 1))


def renamed_answer(package: Path) -> None:
    """A helper whose answers name the client's host under another key."""
    helper = package / "access" / "resolverhelper.py"
    text = helper.read_text()
    anchor = 'send({"id": request_id, "name": info.name'
    assert anchor in text
    helper.write_text(text.replace(anchor, 'send({"id": request_id, "host": info.name'))


def echo(name: str, port: int, extra: str = "") -> str:
    return (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = {name}\n"
            f"\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n\tuser = root\n"
            f"\tport = {port}\n\tbind = 127.0.0.1\n{extra}}}\n")


def echoes(port: int) -> bool:
    """The service at `port` echoes a line back (False: refused or closed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"ping\n")
            conn.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := conn.recv(64):
                data += chunk
            return data == b"ping\n"
    except ConnectionError:
        return False
    except OSError as err:
        # A refusal's reset can come before the shutdown: ENOTCONN there.
        if err.errno == errno.ENOTCONN:
            return False
        raise


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Installation]:
    yield Installation(tmp_path / "install")


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("plain", "byname", "added")}


def start(daemons: DaemonFactory, installed: Installation, ports: dict[str, int]) -> Daemon:
    conf = echo("plain", ports["plain"]) + echo("byname", ports["byname"],
                                                 "\tonly_from = localhost\n")
    daemon = daemons.start_config(conf, wrapper=installed.wrapper())
    assert f"pyxinetd {RUNNING} " in daemon.log()
    return daemon


def add_service(daemon: Daemon, ports: dict[str, int]) -> None:
    conf = daemon.log_path.with_suffix(".conf")
    conf.write_text(conf.read_text() + echo("added", ports["added"]))


def resolver_helpers(daemon: Daemon) -> list[int]:
    def command(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""
    return [pid for pid in daemon.children() if b"pyxinetd/access/resolverstart.py" in command(pid)]


def refusal(daemon: Daemon) -> list[str]:
    return re.findall(r"[^\n]*restart it to load the new code[^\n]*", daemon.log())


def test_the_same_files_reinstalled_change_nothing(daemons: DaemonFactory,
                                                   installed: Installation,
                                                   ports: dict[str, int]) -> None:
    daemon = start(daemons, installed, ports)
    assert echoes(ports["byname"])
    helper = resolver_helpers(daemon)
    assert len(helper) == 1
    installed.install()
    add_service(daemon, ports)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log(r"Reconfigured: new=1 old=2 dropped=0")
    assert echoes(ports["added"]) and echoes(ports["plain"])
    # The helper restarted from the reinstalled files answers as before.
    os.kill(helper[0], signal.SIGKILL)
    daemon.wait_for_log("name resolver exited")
    assert echoes(ports["byname"])
    assert len(resolver_helpers(daemon)) == 1
    assert refusal(daemon) == []


def test_a_reload_after_an_upgrade_is_refused_and_the_services_keep_serving(
        daemons: DaemonFactory, installed: Installation, ports: dict[str, int]) -> None:
    daemon = start(daemons, installed, ports)
    # Only the version: the new loader would load, and its configuration be applied by
    # the old daemon, each reading the model its own way.
    installed.install(new_version)
    add_service(daemon, ports)
    daemon.signal(signal.SIGHUP)
    log = daemon.wait_for_log("reconfiguration failed")
    assert (f"ERROR: pyxinetd on disk is now {NEW_VERSION} (this daemon runs {RUNNING}): "
            "restart it to load the new code; the running configuration is kept") in log
    assert "exited without a result" not in log and "Swapping defaults" not in log
    assert echoes(ports["plain"]) and not echoes(ports["added"])
    # The dump reads nothing from disk: the running state, under the running version.
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("generated state dump")
    dump = (daemons.tmp_path / "xinetd.dump").read_text()
    assert f"pyxinetd {RUNNING} " in dump and "id = plain" in dump
    assert "id = added" not in dump
    # Every reload is refused the same way until a restart.
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("reconfiguration failed", count=2)
    assert len(refusal(daemon)) == 2
    assert daemon.proc.poll() is None


def test_a_change_without_a_new_version_names_the_first_changed_file(
        daemons: DaemonFactory, installed: Installation, ports: dict[str, int]) -> None:
    daemon = start(daemons, installed, ports)
    installed.install(new_field)
    daemon.signal(signal.SIGHUP)
    log = daemon.wait_for_log("reconfiguration failed")
    assert ("ERROR: pyxinetd's files on disk changed since this daemon started "
            f"(config/model.py; version {RUNNING} still): restart it to load the new code; "
            "the running configuration is kept") in log
    assert echoes(ports["plain"])


def test_the_name_resolver_is_not_started_from_replaced_files(
        daemons: DaemonFactory, installed: Installation, ports: dict[str, int]) -> None:
    daemon = start(daemons, installed, ports)
    installed.install(renamed_answer)
    # No name was needed before the upgrade: the helper would start from the new files.
    assert not echoes(ports["byname"])
    log = daemon.wait_for_log("the name resolver is not started")
    assert ("ERROR: pyxinetd's files on disk changed since this daemon started "
            f"(access/resolverhelper.py; version {RUNNING} still): restart it to load the "
            "new code; the name resolver is not started until then (the name of 127.0.0.1 "
            "is not looked up)") in log
    assert resolver_helpers(daemon) == []
    # Said once; the services that need no name serve on.
    assert not echoes(ports["byname"])
    assert echoes(ports["plain"])
    assert len(refusal(daemon)) == 1


def test_a_restart_runs_the_new_code(daemons: DaemonFactory, installed: Installation,
                                     ports: dict[str, int]) -> None:
    daemon = start(daemons, installed, ports)
    installed.install(lambda package: (new_version(package), new_field(package)))
    daemon.stop()
    conf = daemon.log_path.with_suffix(".conf").read_text()
    restarted = daemons.start_config(conf + echo("added", ports["added"]),
                                     wrapper=installed.wrapper())
    assert f"pyxinetd {NEW_VERSION} " in restarted.log()
    assert echoes(ports["added"])
    restarted.signal(signal.SIGHUP)
    restarted.wait_for_log(r"Reconfigured: new=0 old=3 dropped=0")
    assert refusal(restarted) == []


def test_a_deny_rule_whose_aclexec_check_the_replaced_files_stopped_refuses(
        daemons: DaemonFactory, installed: Installation, ports: dict[str, int],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check is not run (the helper would run the new files): it is no check that
    # failed, whose rule does not apply. The deny rule skipped let every client in.
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text("echo: ALL: aclexec /bin/true\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    daemon = daemons.start_config(echo("gated", ports["plain"]), wrapper=installed.wrapper())
    installed.install(renamed_answer)
    assert not echoes(ports["plain"])
    log = daemon.wait_for_log("the name resolver is not started")
    assert "(aclexec not run: /bin/true)" in log
    assert "did not finish" not in log
    assert resolver_helpers(daemon) == []


def test_the_name_resolver_is_the_daemons_package_not_one_found_first_on_the_path(
        daemons: DaemonFactory, installed: Installation, ports: dict[str, int],
        tmp_path: Path) -> None:
    """Another pyxinetd installed, after the daemon started, in a folder the search path
    names first (pip into /usr/local over the distribution's package): the name
    resolver, a new interpreter, must still run the daemon's package, whose files the
    installation check watches, not the other one (started with `-m`, it ran the
    other, and no check saw it)."""
    shadow = tmp_path / "earlier-on-the-path"
    shadow.mkdir()
    marker = tmp_path / "the-other-pyxinetd-was-imported"
    conf = echo("plain", ports["plain"]) + echo("byname", ports["byname"],
                                                 "\tonly_from = localhost\n")
    wrapper = ["sh", "-c", f'shift; export PYTHONPATH="{shadow}"; exec "{installed.python}" "$@"',
               "sh"]
    daemon = daemons.start_config(conf, wrapper=wrapper)
    other = shadow / "pyxinetd"
    shutil.copytree(PACKAGE, other, ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    init = other / "__init__.py"
    init.write_text(f"open({str(marker)!r}, 'w').close()\n" + init.read_text())

    assert echoes(ports["byname"])      # only_from = localhost: looked up by the helper
    helpers = resolver_helpers(daemon)
    assert len(helpers) == 1
    command = Path(f"/proc/{helpers[0]}/cmdline").read_bytes().split(b"\0")
    assert str(installed.package / "access" / "resolverstart.py").encode() in command
    assert not marker.exists()
    assert refusal(daemon) == []
