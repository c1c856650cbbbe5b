"""dgram/nowait server that serves its channel until EOF: answers `pid=<pid>
got=<data>` to each datagram on fd 0 and exits when a read returns nothing."""

import os

while True:
    data = os.read(0, 65535)
    if not data:
        break
    os.write(1, f"pid={os.getpid()} got={data.decode()}".encode())
