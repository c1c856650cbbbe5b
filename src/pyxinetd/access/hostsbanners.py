"""The `banners DIR` option of hosts_options(5): what libwrap sends the client.

Reference: peers-and-tcp-wrappers.md §5.5. The file is DIR/<daemon name>, read as
libwrap's banners option reads it (fgets into a BUFSIZ buffer), each line ended with
CRLF and then `%`-expanded for the request as it stood at the option; checked byte for
byte with Debian's libwrap (tests/compat/test_libwrap_banner_bytes.py). The file is
read only when it is a regular file (a FIFO would block the loop) and sent without
waiting: what the connection's send buffer cannot take is dropped.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from pyxinetd.access.hostsaccess import Banner
from pyxinetd.access.hostsoptions import expand, unrecognized

# libwrap reads a banner file with fgets(3) into a BUFSIZ (8192) buffer, one byte kept
# for the CRLF that replaces the newline: a longer line is read, and expanded, in
# pieces of this size (checked with Debian's libwrap).
_BANNER_PIECE = 8192 - 1 - 1


def banner_lines(raw: bytes) -> tuple[bytes, list[str]]:
    """A banner file as libwrap's `banners` option sends it: the NUL bytes it starts
    with (sent as they are, for protocols such as rlogin's), then each line (or piece
    of a long one) as C text: cut at its first NUL, its newline made CRLF, to be
    `%`-expanded. Lines are latin-1 text, so that every byte goes out unchanged once
    expanded and encoded back (expansions are plain ASCII)."""
    body = raw.lstrip(b"\0")
    lead = raw[:len(raw) - len(body)]
    lines: list[str] = []
    start = 0
    while start < len(body):
        newline = body.find(b"\n", start, start + _BANNER_PIECE)
        stop = newline + 1 if newline >= 0 else min(start + _BANNER_PIECE, len(body))
        piece = body[start:stop].split(b"\0", 1)[0]
        start = stop
        if b"\n" in piece:
            piece = piece[:piece.index(b"\n")] + b"\r\n"
        lines.append(piece.decode("latin-1"))
    return lead, lines


def send_banner(banner: Banner, raw: bytes | None, conn: socket.socket | None,
                warn: Callable[[str], None]) -> None:
    """Send DIR/<daemon> to the client: `raw`, its bytes as the request read them
    (Lookups.banner_text: the text whose `%n`/`%N` its names were looked up for), None
    when there is no such regular file. When DIR itself cannot be read, libwrap warns
    (a missing file in it is silent); it warns about `%` letters it does not know. A
    datagram request (`conn` None) has nowhere to send the banner to (libwrap's write
    fails), but gets the warnings."""
    if raw is None:
        try:
            os.stat(banner.folder)
        except OSError as exc:
            warn(f"{banner.where}: {banner.folder}: {os.strerror(exc.errno or 0)}")
        return
    # libwrap ends each line with CRLF before expanding it: a `%` before the newline
    # takes the CR.
    lead, lines = banner_lines(raw)
    for line in lines:
        for warning in unrecognized(line):
            warn(f"{banner.where}: {warning}")
    if conn is None:
        return
    data = lead + b"".join(expand(line, banner.request).encode("latin-1") for line in lines)
    try:
        conn.send(data, socket.MSG_DONTWAIT)
    except OSError:
        pass
