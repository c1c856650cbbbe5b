"""dgram/wait server: answer one datagram on the service socket (fd 0) with
`pid=<pid> got=<data>`; then, if argv[1] is given, sleep that many seconds before
exiting (datagrams queued meanwhile are left for the master to drain)."""

import os
import socket
import sys
import time

sock = socket.socket(fileno=0)
data, addr = sock.recvfrom(65535)
sock.sendto(f"pid={os.getpid()} got={data.decode()}".encode(), addr)
if len(sys.argv) > 1:
    time.sleep(float(sys.argv[1]))
sock.detach()
