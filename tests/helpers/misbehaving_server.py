"""A nowait stream server that misbehaves on purpose, for the chaos tests.

argv: MODE PIDDIR. Every mode first records its pid in PIDDIR/MODE.<pid> so the test
can kill whatever is still running, by pid, at the end.
- exit: exit at once without touching the connection;
- kill: die by SIGKILL;
- hang: sleep until killed;
- stubborn: ignore SIGTERM and sleep until killed;
- closeout: close stdin, stdout and stderr, then keep running until killed;
- grandchild: fork a grandchild that holds the connection for a second, then exit.
"""

import os
import signal
import sys
import time
from pathlib import Path

mode, piddir = sys.argv[1], Path(sys.argv[2])
(piddir / f"{mode}.{os.getpid()}").write_text("")
if mode == "exit":
    os._exit(0)
if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "hang":
    while True:
        time.sleep(60)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(60)
if mode == "closeout":
    for fd in (0, 1, 2):
        os.close(fd)
    while True:
        time.sleep(60)
if mode == "grandchild":
    pid = os.fork()
    if pid == 0:
        (piddir / f"grandchild.{os.getpid()}").write_text("")
        time.sleep(1.0)
        os.write(1, b"late\n")
        os._exit(0)
    os._exit(0)
sys.exit(f"unknown mode {mode}")
