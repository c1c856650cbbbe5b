"""dgram/nowait server for the tests of a server that drops its channel.

argv: MARKER. The first server (MARKER missing) creates MARKER, reads its datagram,
closes descriptors 0-2 (its whole channel) and keeps running until killed; later
servers answer `pid=<pid> got=<data>` to their datagram and exit."""

import os
import sys
import time
from pathlib import Path

marker = Path(sys.argv[1])
data = os.read(0, 65535)
if marker.exists():
    os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
    sys.exit(0)
marker.write_text(str(os.getpid()))
for fd in (0, 1, 2):
    os.close(fd)
while True:
    time.sleep(60)
