"""Ask Debian's libwrap (the library the xinetd oracle links) for one verdict.

Usage: libwrap_probe.py LIBWRAP ALLOW_FILE DENY_FILE DAEMON CLIENT_ADDRESS [CLIENT_NAME]
CLIENT_NAME is the client's host name as if the lookup had given it (none by default).
Prints `granted` or `denied`. One request per process: libwrap keeps the aclexec
outcome in a static variable and leaves hosts_access() through longjmp.
"""

from __future__ import annotations

import ctypes
import sys

RQ_DAEMON = 2
RQ_CLIENT_NAME = 4
RQ_CLIENT_ADDR = 5


def main() -> None:
    library, allow, deny, daemon, client = sys.argv[1:6]
    name = sys.argv[6] if len(sys.argv) > 6 else ""
    lib = ctypes.CDLL(library)
    # libwrap keeps these pointers: the buffers must live as long as the process.
    strings = [ctypes.create_string_buffer(s.encode())
               for s in (allow, deny, daemon, client, name)]
    ctypes.c_char_p.in_dll(lib, "hosts_allow_table").value = ctypes.addressof(strings[0])
    ctypes.c_char_p.in_dll(lib, "hosts_deny_table").value = ctypes.addressof(strings[1])
    request = ctypes.create_string_buffer(16384)   # larger than struct request_info
    named = (ctypes.c_int(RQ_CLIENT_NAME), strings[4]) if name else ()
    lib.request_init(request, ctypes.c_int(RQ_DAEMON), strings[2],
                     ctypes.c_int(RQ_CLIENT_ADDR), strings[3], *named, ctypes.c_int(0))
    print("granted" if lib.hosts_access(request) else "denied")


if __name__ == "__main__":
    main()
