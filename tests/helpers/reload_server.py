"""A server for reload tests: says `TAG pid=PID`, optionally holds the connection.

Usage: reload_server.py TAG [wait] [hold] [ignore-term]
  wait         stream/wait: accept one connection on the listening socket (fd 0)
               instead of using fd 0 as the connection
  hold         keep the connection until the client closes it (at most 60 s)
  ignore-term  ignore SIGTERM (only SIGKILL ends it)
"""

import os
import select
import signal
import socket
import sys

words = set(sys.argv[2:])
if "ignore-term" in words:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sock = socket.socket(fileno=0)
conn = sock.accept()[0] if "wait" in words else sock
conn.sendall(f"{sys.argv[1]} pid={os.getpid()}\n".encode())
if "hold" in words:
    while select.select([conn], [], [], 60)[0] and conn.recv(4096):
        pass
conn.close()
if conn is not sock:
    sock.detach()
