"""dgram/nowait server for the tests of a server that drops its channel.

argv: MARKER [ANSWERS]. The first server (MARKER missing) creates MARKER, answers
`pid=<pid> got=<data>` to its first ANSWERS datagrams (default 0: it reads one),
closes descriptors 0-2 (its whole channel) and keeps running until killed; later
servers answer their datagram so and exit."""

import os
import sys
import time
from pathlib import Path

marker = Path(sys.argv[1])
answers = int(sys.argv[2]) if len(sys.argv) > 2 else 0
data = os.read(0, 65535)
if marker.exists():
    os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
    sys.exit(0)
marker.write_text(str(os.getpid()))
for n in range(answers):
    if n:
        data = os.read(0, 65535)
    os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
for fd in (0, 1, 2):
    os.close(fd)
while True:
    time.sleep(60)
