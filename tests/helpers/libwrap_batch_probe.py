"""Ask Debian's libwrap for many verdicts, one forked process per request.

Usage: libwrap_batch_probe.py LIBWRAP, then one JSON object a line on stdin:
{"allow": PATH, "deny": PATH, "daemon": ..., "client": ADDRESS, "name": ..., "user": ...,
 "server": ADDRESS, "server_name": ...} (all but the first four optional). Answers one
line each: `granted`, `denied`, or `delegated` when a twist replaced the process.
Each request runs in a child forked before libwrap was ever called, so that its static
aclexec status and its `resident` count are fresh, as in libwrap_probe.py.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

RQ_FILE = 1
RQ_DAEMON = 2
RQ_USER = 3
RQ_CLIENT_NAME = 4
RQ_CLIENT_ADDR = 5
RQ_SERVER_NAME = 7
RQ_SERVER_ADDR = 8


def ask(lib: ctypes.CDLL, query: dict[str, str]) -> bool:
    keep = [ctypes.create_string_buffer(query[k].encode()) for k in ("allow", "deny")]
    ctypes.c_char_p.in_dll(lib, "hosts_allow_table").value = ctypes.addressof(keep[0])
    ctypes.c_char_p.in_dll(lib, "hosts_deny_table").value = ctypes.addressof(keep[1])
    # Standard input (/dev/null) as the connection: a twist can dup2 it and exec, where
    # with none libwrap gives up and sleeps 5 seconds before it exits.
    args: list[object] = [ctypes.c_int(RQ_FILE), ctypes.c_int(0)]
    for key, code in (("daemon", RQ_DAEMON), ("client", RQ_CLIENT_ADDR),
                      ("name", RQ_CLIENT_NAME), ("user", RQ_USER),
                      ("server", RQ_SERVER_ADDR), ("server_name", RQ_SERVER_NAME)):
        if query.get(key):
            buffer = ctypes.create_string_buffer(query[key].encode())
            keep.append(buffer)
            args += [ctypes.c_int(code), buffer]
    request = ctypes.create_string_buffer(16384)   # larger than struct request_info
    lib.request_init(request, *args, ctypes.c_int(0))
    return bool(lib.hosts_access(request))


def one(lib: ctypes.CDLL, query: dict[str, str]) -> str:
    reader, writer = os.pipe()          # close-on-exec: a twist leaves it unwritten
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            os.write(writer, b"granted" if ask(lib, query) else b"denied")
        finally:
            os._exit(0)
    os.close(writer)
    answer = b""
    while chunk := os.read(reader, 64):
        answer += chunk
    os.close(reader)
    os.waitpid(pid, 0)
    return answer.decode() or "delegated"


def main() -> None:
    lib = ctypes.CDLL(sys.argv[1])
    for line in sys.stdin:
        print(one(lib, json.loads(line)), flush=True)


if __name__ == "__main__":
    main()
