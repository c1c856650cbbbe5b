"""exec_raw_env.py ENVFILE PROGRAM [ARG...]: exec PROGRAM with exactly the environment
entries of ENVFILE (NUL-separated), duplicates included, which no Python mapping can
hold (os.execve and subprocess take a dict). Standard library only; the pid stays."""

import ctypes
import os
import sys


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        entries = [e for e in f.read().split(b"\0") if e]
    args = [os.fsencode(a) for a in sys.argv[2:]]
    argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    envp = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.execve(args[0], argv, envp)
    raise SystemExit(f"execve {sys.argv[2]}: {os.strerror(ctypes.get_errno())}")


if __name__ == "__main__":
    main()
