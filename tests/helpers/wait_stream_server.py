"""stream/wait server: accept one connection on the listening socket (fd 0), reply
`pid=<pid>` then echo one line, exit. With argv[1] == "hold", keep the connection
until the client closes."""

import os
import socket
import sys

listener = socket.socket(fileno=0)
conn, _ = listener.accept()
conn.sendall(f"pid={os.getpid()}\n".encode())
data = conn.recv(4096)
conn.sendall(data)
if len(sys.argv) > 1 and sys.argv[1] == "hold":
    while conn.recv(4096):
        pass
conn.close()
listener.detach()
