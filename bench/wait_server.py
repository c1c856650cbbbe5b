"""The wait = yes stream server of the benchmark: accept one connection, answer, exit.

Started by the daemon with the listening socket on fd 0 (stream/wait dispatch), it takes
one connection, writes "hello\\n", closes it and exits; the daemon then resumes listening.
It is run as `python3 -I -S wait_server.py` and imports only `_socket` (os is already
loaded), which keeps interpreter start-up, the bulk of its cost, as small as Python allows:
both daemons pay the same start-up, so the case compares their wait-service handling.
"""

import _socket
import os

listener = _socket.socket(fileno=0)
fd, _ = listener._accept()  # type: ignore[attr-defined]
try:
    os.write(fd, b"hello\n")
finally:
    os.close(fd)
