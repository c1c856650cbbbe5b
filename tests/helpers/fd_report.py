"""Write the list of this process's open descriptors, then exit."""

import os

fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
os.write(1, (" ".join(map(str, fds)) + "\n").encode())
