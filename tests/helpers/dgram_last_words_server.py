"""A datagram server that answers with COUNT replies and exits while the daemon cannot
read them: it stops the daemon (SIGSTOP) before writing, and a grandchild sends the
daemon SIGCONT once this server has exited (a zombie the stopped daemon has not
reaped). The daemon then finds every reply queued and the server gone in one turn.

    dgram_last_words_server.py COUNT

dgram/nowait: descriptors 0 and 1 are the channel holding the client's datagram.
wait = yes with INTERCEPT: descriptor 0 is the private socket; the replies go to the
request's sender.
"""

import os
import signal
import socket
import sys
import time

count = int(sys.argv[1])
daemon, me = os.getppid(), os.getpid()
sock = socket.socket(fileno=os.dup(0))
_, sender = sock.recvfrom(65535)
if os.fork() == 0:
    for fd in (0, 1, 2):
        os.close(fd)
    sock.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{me}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(0.01)
    os.kill(daemon, signal.SIGCONT)
    os._exit(0)
os.kill(daemon, signal.SIGSTOP)
for number in range(count):
    reply = b"reply %d" % number
    if sender:
        sock.sendto(reply, sender)
    else:
        os.write(1, reply)
os._exit(0)
