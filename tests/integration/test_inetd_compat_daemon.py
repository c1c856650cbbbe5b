"""The daemon with -inetd_compat serves /etc/inetd.conf, and reads it again on SIGHUP.

/etc/inetd.conf is a fixed path, so the daemon runs in a private mount namespace where
/etc is overlaid by a tmpfs layer and a test file is bound over /etc/inetd.conf (and
one over /etc/services, naming a free port): the real /etc is never written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daemon import free_port, wait_until  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a private mount namespace")

_SCRIPT = r"""
set -eu
mount -t tmpfs tmpfs "$T/mnt"
mkdir -p "$T/mnt/u" "$T/mnt/w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/mnt/u,workdir=$T/mnt/w" /etc
if [ -n "${MISSING:-}" ]; then
    rm -f /etc/inetd.conf
    # Created later from within this namespace (and root: the tests may run in a
    # chroot), once the test asks for it: bounded, 30 s at most.
    ( i=0; while [ $i -lt 300 ]; do
          if [ -f "$T/create" ]; then cp "$T/inetd.conf" /etc/inetd.conf; break; fi
          sleep 0.1; i=$((i+1))
      done ) &
else
    : > /etc/inetd.conf
    mount --bind "$T/inetd.conf" /etc/inetd.conf
fi
mount --bind "$T/services" /etc/services
exec "$PY" -m pyxinetd -f "$T/xinetd.conf" -dontfork -filelog "$T/log" -inetd_compat
"""


def _read(port: int, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=10) as conn:
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        return data


def _answer(port: int) -> bytes | None:
    try:
        return _read(port)
    except OSError:
        return None


def _start(tmp_path: Path, entry: str, defaults: str = "",
           env: dict[str, str] | None = None, services: str = "",
           ) -> tuple[subprocess.Popen[bytes], int]:
    """pyxinetd -inetd_compat with `entry` (for the service `pyxinetd-test`) as
    /etc/inetd.conf and `services` (blocks) after the defaults, once it has started
    working; returns it and the service's port."""
    port = free_port()
    (tmp_path / "mnt").mkdir()
    (tmp_path / "xinetd.conf").write_text(f"defaults\n{{\n{defaults}}}\n{services}")
    (tmp_path / "services").write_text(f"pyxinetd-test {port}/tcp\n")
    (tmp_path / "inetd.conf").write_text(entry)
    log = tmp_path / "log"
    env = {**os.environ, **(env or {}), "T": str(tmp_path), "PY": sys.executable}
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash", "-c", _SCRIPT],
                            env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: log.exists() and "Started working" in log.read_text(),
                   timeout=15, what="Started working")
    except BaseException:
        _stop(proc)
        raise
    return proc, port


def _helper_waiting(pid: int) -> bool:
    """Whether the daemon's namespace helper (its child, forked before the exec) is
    still there: it exits once it has created the file."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    return any(Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"bash")
               for child in children if Path(f"/proc/{child}").exists())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def test_inetd_compat_serves_and_reloads(tmp_path: Path) -> None:
    proc, port = _start(tmp_path, "pyxinetd-test stream tcp nowait nobody /bin/echo echo first\n")
    inetd, log = tmp_path / "inetd.conf", tmp_path / "log"
    try:
        assert _read(port) == b"first\n"
        # Same inode: the bind mount shows the new text.
        with open(inetd, "r+") as handle:
            handle.truncate(0)
            # The arguments on a continuation line (BSD inetd's rule) reach the server.
            handle.write("pyxinetd-test stream tcp nowait nobody /bin/echo\n\techo second\n")
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: "Starting reconfiguration" in log.read_text(), timeout=15,
                   what="the reload")
        wait_until(lambda: _answer(port) == b"second\n", timeout=15,
                   what="the reloaded inetd.conf entry")
    finally:
        _stop(proc)


def test_inetd_compat_entry_gets_passenv_but_not_only_from_of_defaults(tmp_path: Path) -> None:
    # As xinetd 2.3.15.3 does at run time (its state dump shows no passenv for such a
    # service, but the server gets only the listed variables); only_from is not applied.
    defaults = "\tpassenv = PYX_KEPT\n\tonly_from = 192.0.2.1\n"
    proc, port = _start(tmp_path, "pyxinetd-test stream tcp nowait nobody /usr/bin/env env\n",
                        defaults, {"PYX_KEPT": "kept", "PYX_DROPPED": "dropped"})
    try:
        environment = _read(port).decode().splitlines()
        assert "PYX_KEPT=kept" in environment
        assert not [v for v in environment if v.startswith(("PYX_DROPPED=", "PATH="))]
    finally:
        _stop(proc)


def test_tcp6_twin_of_a_duplicate_tcp_line_serves_ipv6_itself(tmp_path: Path) -> None:
    # The xinetd file has the port on IPv4: the tcp line is a duplicate, dropped, so its
    # dual-stack socket serves no IPv6 client and the tcp6 line listens itself.
    block = ("service pyxinetd-test\n{\n\tsocket_type = stream\n\twait = no\n"
             "\tuser = nobody\n\tserver = /bin/echo\n\tserver_args = four\n"
             "\tflags = IPv4\n}\n")
    proc, port = _start(tmp_path, "pyxinetd-test stream tcp nowait nobody /bin/echo echo six\n"
                                  "pyxinetd-test stream tcp6 nowait nobody /bin/echo echo six\n",
                        services=block)
    try:
        assert _read(port) == b"four\n"
        assert _read(port, "::1") == b"six\n"
    finally:
        _stop(proc)


def test_an_inetd_conf_created_after_the_start_is_served_after_a_reload(
        tmp_path: Path) -> None:
    # Debian's init script passes -inetd_compat whether or not /etc/inetd.conf exists;
    # update-inetd may create it later, and a reload must serve it.
    proc, port = _start(tmp_path, "", env={"MISSING": "1"})
    log = tmp_path / "log"
    try:
        assert "no /etc/inetd.conf to read (-inetd_compat)" in log.read_text()
        assert "WARNING" not in log.read_text()
        # The namespace's own helper copies it to its /etc (never the host's).
        (tmp_path / "inetd.conf").write_text(
            "pyxinetd-test stream tcp nowait nobody /bin/echo echo late\n")
        (tmp_path / "create").touch()
        wait_until(lambda: not _helper_waiting(proc.pid), timeout=15,
                   what="/etc/inetd.conf created in the daemon's namespace")
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: _answer(port) == b"late\n", timeout=15,
                   what="the inetd.conf entry created after the start")
    finally:
        _stop(proc)
