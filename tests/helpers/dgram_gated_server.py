"""dgram/nowait server that answers only once a gate file exists.

argv: GATE LINGER. Reads its client's first datagram, waits (at most 30 s) until GATE
exists, then answers `pid=<pid> got=<data>` to it and to every further datagram of its
client that comes within LINGER seconds of the previous one."""

import os
import select
import sys
import time
from pathlib import Path

gate, linger = Path(sys.argv[1]), float(sys.argv[2])
data = os.read(0, 65535)
deadline = time.monotonic() + 30
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
while select.select([0], [], [], linger)[0]:
    data = os.read(0, 65535)
    if not data:
        break
    os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
