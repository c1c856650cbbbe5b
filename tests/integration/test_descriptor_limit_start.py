"""Start-up under a large descriptor limit (openSUSE/xinetd issue 47): the daemon
closes the descriptors it inherited by listing /proc/self/fd, not by trying every
number below RLIMIT_NOFILE as xinetd 2.3.15.3 does (one close() per number: minutes
with `LimitNOFILE=infinity` or a container's 2^30). Counted with strace at the largest
hard limit this process has; skipped without strace or with a small limit.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import free_port, nofile_limited, read_pid, wait_log_lines
from tests.oracle import require_xinetd

TIMEOUT = 30.0
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
LIMIT = min(HARD, 1 << 20) if HARD != resource.RLIM_INFINITY else 1 << 20

pytestmark = [
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"),
    pytest.mark.skipif(LIMIT < 10000, reason=f"a hard descriptor limit of {LIMIT} is "
                                             "too small to tell the two apart"),
]


def close_calls(tmp_path: Path, daemon: list[str]) -> tuple[int, int]:
    """(close() calls, failed ones) the daemon made from its start to its exit, run in
    the foreground under soft = hard = LIMIT and stopped once it serves."""
    port = free_port()
    conf, log, pidfile, trace = (tmp_path / name for name in
                                 ("echo.conf", "program.log", "pid", "strace.out"))
    conf.write_text(f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
                    f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n"
                    "\twait = no\n}\n")
    with subprocess.Popen([*nofile_limited(LIMIT), "strace", "-o", str(trace), "-c",
                           "-e", "trace=close,close_range", *daemon, "-f", str(conf),
                           "-dontfork", "-filelog", str(log), "-pidfile", str(pidfile)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True) as tracer:
        try:
            wait_log_lines(log, r"Started working", 1, TIMEOUT)
            pid = read_pid(pidfile)
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
            tracer.wait(TIMEOUT)
        finally:
            if tracer.poll() is None:
                os.killpg(tracer.pid, signal.SIGKILL)
    for line in trace.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] == "close":
            return int(fields[3]), int(fields[4]) if len(fields) == 6 else 0
    return 0, 0


def test_start_up_closes_the_open_descriptors_not_every_number_below_the_limit(
        tmp_path: Path) -> None:
    calls, failed = close_calls(tmp_path, [sys.executable, "-m", "pyxinetd"])
    assert 0 < calls < LIMIT // 10
    assert failed < 100


def test_xinetd_tries_every_number_below_the_limit(tmp_path: Path) -> None:
    _, failed = close_calls(tmp_path, [require_xinetd()])
    assert failed >= LIMIT - 100
