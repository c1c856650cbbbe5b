"""Text back to the bytes it was read from, for the logs and the state dump.

Configuration files, file names and the environment are decoded as UTF-8 with
`surrogateescape`, so a byte that is not UTF-8 (a Latin-1 `é` in a service name, a
file name in a legacy encoding) is kept as a surrogate escape. xinetd writes such
bytes as they are; encoding with `errors="replace"` would write `?` instead, and a
log line would then name a file that does not exist.
"""

from __future__ import annotations


def as_written(text: str) -> bytes:
    """UTF-8, with every surrogate escape turned back into its original byte.

    A lone surrogate that no decoding produced (it cannot be written as a byte) becomes
    `?`, so a line is always written.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")
