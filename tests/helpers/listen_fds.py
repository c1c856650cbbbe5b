"""Plays the service manager's part of socket activation for one command:

    listen_fds.py FD [FD...] -- COMMAND [ARG...]

moves the descriptors FD... to 3, 4, ... (as systemd passes them), sets LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID (this process's pid, which exec keeps) and execs COMMAND."""

import os
import sys

split = sys.argv.index("--")
fds = [int(arg) for arg in sys.argv[1:split]]
command = sys.argv[split + 1:]
# Out of the way first: a descriptor to move may sit where another one must go.
parked = [os.dup(fd) for fd in fds]
for fd in fds:
    os.close(fd)
for n, fd in enumerate(parked):
    if fd != 3 + n:
        os.dup2(fd, 3 + n, inheritable=True)
        os.close(fd)
    else:
        os.set_inheritable(fd, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)),
                  LISTEN_FDNAMES=":".join(f"s{n}" for n in range(len(fds))))
os.execvp(command[0], command)
