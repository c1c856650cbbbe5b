"""Run a real pyxinetd daemon for a test, and clean up after it.

Two ways to start one, both in their own session (start_new_session) with the program
log in a file:
- `start_config(conf_text, *args)`: `python -m pyxinetd -f CONF -dontfork -filelog LOG`;
- `start_services(services, **options)`: tests/helpers/run_master.py runs a Master on
  ServiceConfig objects built with tests.factories (no configuration loader needed).
Readiness is the `Started working` log line, awaited with a deadline. At the end the
daemon's process group is killed, and so is every server it started that is still
alive (servers call setsid, so they are not in the daemon's group).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyxinetd.config.model import ServiceConfig
from pyxinetd.master import MasterOptions
from tests.helpers import ports
from tests.helpers.procs import children_of

HELPERS = Path(__file__).parent / "helpers"
READY_TIMEOUT = 15.0


# Ports handed out recently by free_port(): the kernel may give the same free port to
# two bind(0) calls in a row, and a test asking for two ports before starting its
# daemon would then configure two services on one port.
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=256)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1, and for TCP on every address of
    both families (a service without `bind` listens there: a client socket of an
    earlier test on 127.0.0.2 or ::1 with that port would make its bind fail), not
    handed out recently (racy by nature against other processes; rare)."""
    port = ports.free_port(_RECENT_PORTS, _bind_everywhere)
    _RECENT_PORTS.append(port)
    return port


def _bind_everywhere(port: int) -> None:
    """Raise OSError unless a TCP socket can take `port` on every address (the IPv6
    wildcard in dual stack, or the IPv4 one where there is no IPv6)."""
    try:
        wildcard = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as v4:
            v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            v4.bind(("0.0.0.0", port))
        return
    with wildcard:
        wildcard.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # As the daemon binds (SO_REUSEADDR): sockets in TIME_WAIT do not count.
        wildcard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wildcard.bind(("::", port))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def start_of_a_second() -> None:
    """Until just after the monotonic clock turns a second. pyxinetd counts cps in its
    whole seconds (the tests share that clock with the daemon), and the elapsed time of
    a window counts as 1 in its first two seconds: requests begun now fall in those
    two seconds if they take less than about 1.98 s, and in this one second if they
    take less than about 0.98 s."""
    time.sleep(1.02 - time.monotonic() % 1)


def read_log(path: Path) -> str:
    """A log file's text so far ('' before the daemon has created it)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_log_lines(path: Path, pattern: str, count: int = 1, timeout: float = 10.0) -> str:
    """Wait until the regular expression `pattern` matches `count` times in the log at
    `path`; returns the log's text then."""
    regex = re.compile(pattern)
    text: str = wait_until(lambda: len(regex.findall(read_log(path))) >= count
                           and read_log(path), timeout, what=f"{path.name}: {pattern!r}")
    return text


# A daemon that does not run as root ignores `user` and `group`, and says so once per
# service that names them (docs/compatibility.md). Tests that want no other warning, or
# no other line about a service, read the log without these lines.
IDS_IGNORED = re.compile(r"^[^\n]*WARNING: \S+: not running as root, user and group "
                         r"ignored\r?(\n|$)", re.M)


def without_ids_ignored(log: str) -> str:
    """`log` less the unprivileged daemon's `user and group ignored` warnings."""
    return IDS_IGNORED.sub("", log)


def process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def open_fds(pid: int) -> dict[int, str]:
    fds: dict[int, str] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return fds


class Daemon:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path
        self._seen_servers: set[int] = set()

    def log(self) -> str:
        try:
            # The log holds a configuration's bytes as they are, UTF-8 or not.
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        regex = re.compile(pattern)

        def found() -> str | None:
            text = self.log()
            if len(regex.findall(text)) >= count:
                return text
            if self.proc.poll() is not None and len(regex.findall(self.log())) < count:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before "
                                     f"{pattern!r}; log:\n{self.log()}")
            return None

        return str(wait_until(found, timeout, what=f"log line {pattern!r}"))

    def wait_ready(self) -> None:
        self.wait_for_log(r"Started working: \d+ available service", READY_TIMEOUT)

    def children(self) -> list[int]:
        kids = children_of(self.pid)
        self._seen_servers.update(kids)
        return kids

    def zombies(self) -> list[int]:
        return [p for p in self.children() if process_state(p) == "Z"]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        self.children()
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for pid in self._seen_servers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class DaemonFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.daemons: list[Daemon] = []
        self._n = 0

    def _paths(self) -> tuple[Path, Path]:
        self._n += 1
        return self.tmp_path / f"daemon{self._n}.log", self.tmp_path / f"daemon{self._n}.err"

    def _spawn(self, argv: list[str], log_path: Path, err_path: Path, ready: bool,
               pass_fds: Sequence[int] = ()) -> Daemon:
        # A SIGUSR1 dump goes to the test's folder, not the machine's
        # /var/run/xinetd.dump, unless the test named a file itself.
        env = dict(os.environ)
        env.setdefault("PYXINETD_DUMP_FILE", str(self.tmp_path / "xinetd.dump"))
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    start_new_session=True, cwd=self.tmp_path,
                                    pass_fds=tuple(pass_fds), env=env)
        daemon = Daemon(proc, log_path)
        self.daemons.append(daemon)
        if ready:
            daemon.wait_ready()
        return daemon

    def start_services(self, services: list[ServiceConfig], *, ready: bool = True,
                       wrapper: Sequence[str] = (), **options: Any) -> Daemon:
        """Run a Master on `services`; `wrapper` prefixes the command (it must exec it,
        as `unshare -n --` does, so the pid stays the daemon's)."""
        log_path, err_path = self._paths()
        opts = replace(MasterOptions(dontfork=True), filelog=str(log_path), **options)
        spec = self.tmp_path / f"daemon{self._n}.pickle"
        spec.write_bytes(pickle.dumps((services, opts)))
        return self._spawn([*wrapper, sys.executable, str(HELPERS / "run_master.py"),
                            str(spec)], log_path, err_path, ready)

    def start_master_on(self, conf_text: str, *, ready: bool = True,
                        wrapper: Sequence[str] = (), **options: Any) -> Daemon:
        """Run a Master on a configuration file holding `conf_text`, with MasterOptions
        `options` (not through the command line, whose -dontfork implies -stayalive);
        the file is the daemon's log path with `.conf` for `.log`."""
        log_path, err_path = self._paths()
        conf = self.tmp_path / f"daemon{self._n}.conf"
        conf.write_text(conf_text)
        opts = replace(MasterOptions(), filelog=str(log_path), **options)
        spec = self.tmp_path / f"daemon{self._n}.pickle"
        spec.write_bytes(pickle.dumps((str(conf), opts)))
        return self._spawn([*wrapper, sys.executable, str(HELPERS / "run_master.py"),
                            str(spec)], log_path, err_path, ready)

    def start_config(self, conf_text: str, *args: str, ready: bool = True,
                     wrapper: Sequence[str] = (), pass_fds: Sequence[int] = ()) -> Daemon:
        log_path, err_path = self._paths()
        conf = self.tmp_path / f"daemon{self._n}.conf"
        conf.write_text(conf_text)
        argv = [*wrapper, sys.executable, "-m", "pyxinetd", "-f", str(conf), "-dontfork",
                "-filelog", str(log_path), *args]
        return self._spawn(argv, log_path, err_path, ready, pass_fds)

    def stop_all(self) -> None:
        for daemon in self.daemons:
            daemon.stop()


@functools.lru_cache(maxsize=8)
def namespace_problem(*tools: str) -> str | None:
    """Why a private network namespace (`unshare -n`) cannot be used here, or None.
    `tools` are the other commands the test runs (`ip`, `nsenter`, ...)."""
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare -n)"
    for tool in ("unshare", *tools):
        if shutil.which(tool) is None:
            return f"needs {tool!r} (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True,
                           timeout=30, check=False)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here: {probe.stderr.strip()}"
    return None


def run_scenario(script: Path, workdir: Path | str, *daemon: str,
                 mount: bool = False) -> dict[str, Any]:
    """Run a one-daemon scenario (tests/helpers/*_scenario.py, built on
    scenario_support.py) in a private network namespace (and, with `mount`, a private
    mount namespace, for scenarios that mount over /etc, /dev or /proc files); its JSON
    result."""
    namespaces = ["-n", "-m", "--propagation", "private"] if mount else ["-n"]
    # A session of its own: a scenario stopped at the deadline takes its daemon (and
    # that daemon's servers) with it instead of leaving them running in its namespace.
    with subprocess.Popen(["unshare", *namespaces, sys.executable, str(script),
                           str(workdir), *daemon], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as scenario:
        try:
            stdout, stderr = scenario.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(scenario.pid, signal.SIGKILL)
            stdout, stderr = scenario.communicate()
            raise AssertionError(f"{script.name} did not end within 120 s: {stderr}")
    assert scenario.returncode == 0, stderr
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def run_scenario_both(script: Path, root: Path, xinetd: str, *, mount: bool = False,
                      case: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(xinetd's result, pyxinetd's) for one scenario, each in its own folder under
    `root`; `xinetd` is the real binary (tests.oracle.require_xinetd). With `case`, the
    scenario gets that JSON-able description as `case.json` in its folder instead of
    the folder itself."""
    def argument(folder: Path) -> Path:
        folder.mkdir()
        if case is None:
            return folder
        (folder / "case.json").write_text(json.dumps(case))
        return folder / "case.json"
    return (run_scenario(script, argument(root / "x"), xinetd, mount=mount),
            run_scenario(script, argument(root / "p"), sys.executable, "-m", "pyxinetd",
                         mount=mount))


def python_server(script: str, *args: str) -> dict[str, Any]:
    """Overrides for make_service() that run a helper script with this interpreter."""
    return {"server": sys.executable,
            "server_argv": ("python3", str(HELPERS / script), *args)}


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text())
    except (OSError, ValueError):
        return None


def kill_detached(pids: set[int], pidfiles: list[Path]) -> None:
    """SIGKILL detached daemons (by pid and by the pid in their pidfiles) and their groups."""
    for pidfile in pidfiles:
        pid = read_pid(pidfile)
        if pid is not None:
            pids.add(pid)
    for pid in pids:
        if not alive(pid):
            continue
        try:
            pgid = os.getpgid(pid)
            if pgid != os.getpgid(0):
                os.killpg(pgid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def syslog_until(sock: socket.socket, wanted: str, *, most: int = 20) -> list[str]:
    """Syslog datagrams read from `sock` until one holds `wanted` (the last one then),
    at most `most` of them, each awaited with the socket's own timeout."""
    messages: list[str] = []
    for _ in range(most):
        messages.append(sock.recv(4096).decode())
        if wanted in messages[-1]:
            break
    return messages


def nofile_limited(nofile: int) -> list[str]:
    """A command prefix running what follows under RLIMIT_NOFILE soft = hard = nofile;
    skips the calling test without prlimit."""
    import pytest

    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    return ["prlimit", f"--nofile={nofile}:{nofile}", "--"]
