"""What Debian's libwrap sends a client for the rules that match one request.

Usage: libwrap_banner_probe.py LIBWRAP ALLOW_FILE DENY_FILE DAEMON CLIENT_ADDRESS
The request's descriptor is one end of a socket pair; prints `granted` or `denied`,
then the bytes the `banners` options wrote to it, in hex. One request per process
(libwrap keeps state in static variables).
"""

from __future__ import annotations

import ctypes
import socket
import sys

RQ_FILE = 1
RQ_DAEMON = 2
RQ_CLIENT_ADDR = 5


def main() -> None:
    library, allow, deny, daemon, client = sys.argv[1:6]
    lib = ctypes.CDLL(library)
    # libwrap keeps these pointers: the buffers must live as long as the process.
    strings = [ctypes.create_string_buffer(s.encode()) for s in (allow, deny, daemon, client)]
    ctypes.c_char_p.in_dll(lib, "hosts_allow_table").value = ctypes.addressof(strings[0])
    ctypes.c_char_p.in_dll(lib, "hosts_deny_table").value = ctypes.addressof(strings[1])
    ours, theirs = socket.socketpair()
    request = ctypes.create_string_buffer(16384)   # larger than struct request_info
    lib.request_init(request, ctypes.c_int(RQ_DAEMON), strings[2],
                     ctypes.c_int(RQ_CLIENT_ADDR), strings[3],
                     ctypes.c_int(RQ_FILE), ctypes.c_int(ours.fileno()), ctypes.c_int(0))
    verdict = "granted" if lib.hosts_access(request) else "denied"
    ours.close()
    theirs.settimeout(10)
    sent = b""
    while chunk := theirs.recv(65536):
        sent += chunk
    print(verdict)
    print(sent.hex())


if __name__ == "__main__":
    main()
