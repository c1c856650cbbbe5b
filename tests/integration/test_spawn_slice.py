"""The master's short time slice stays with the master: a server gets the default back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pyxinetd.posix import HAVE_NATIVE

# Run in a child interpreter, so the test process keeps its own scheduling.
SCRIPT = r"""
import json, os, socket
from pyxinetd import _spawn, spawner

def slice_of(text):
    for line in text.splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return None

before = slice_of(open("/proc/self/sched").read())
granted = spawner.use_short_slice()
mine = slice_of(open("/proc/self/sched").read())
ours, theirs = socket.socketpair()
pid = _spawn.spawn(b"/bin/cat", [b"cat", b"/proc/self/sched"], [b"A=1"], theirs.fileno(),
                   setsid=True)
theirs.close()
data = b""
while chunk := ours.recv(65536):
    data += chunk
os.waitpid(pid, 0)
print(json.dumps({"granted": granted, "before": before, "mine": mine,
                  "server": slice_of(data.decode())}))
"""


@pytest.mark.skipif(not HAVE_NATIVE, reason="the C extension is not built")
def test_server_does_not_inherit_the_masters_slice() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    report = json.loads(out)
    if not report["granted"] or report["mine"] is None \
            or report["mine"] == report["before"]:
        pytest.skip("the kernel has no custom slices (Linux 6.12+) or refused one")
    assert report["server"] == report["before"]
