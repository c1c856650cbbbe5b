"""dgram/nowait server: fd 0/1 are a datagram channel holding the client's datagram.
Reply `pid=<pid> got=<data>` to each datagram received within argv[1] seconds
(default: answer the first and exit)."""

import os
import select
import sys

linger = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
data = os.read(0, 65535)
os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
while linger > 0 and select.select([0], [], [], linger)[0]:
    data = os.read(0, 65535)
    os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
