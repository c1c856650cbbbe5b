"""Text back to the bytes it was read from, for the logs and the state dump.

Configuration files, file names and the environment are decoded as UTF-8 with
`surrogateescape`, so a byte that is not UTF-8 (a Latin-1 `é` in a service name, a
file name in a legacy encoding) is kept as a surrogate escape. xinetd writes such
bytes as they are; encoding with `errors="replace"` would write `?` instead, and a
log line would then name a file that does not exist.
"""

from __future__ import annotations

import re


def as_written(text: str) -> bytes:
    """UTF-8, with every surrogate escape turned back into its original byte.

    A lone surrogate that no decoding produced (it cannot be written as a byte) becomes
    `?`, so a line is always written.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


# In repr() text a backslash of the original is always doubled, so a surrogate escape
# is a `\udcNN` after an even number of backslashes.
_ESCAPED_BYTE = re.compile(r"(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])")


def quoted(text: str) -> str:
    """`text` quoted as repr() quotes it, a byte that is not UTF-8 shown as `\\xNN`.

    repr() shows the surrogate escape of a Latin-1 `é` as `\\udce9`, which names no
    character of the file; `\\xe9` is the byte the file holds.
    """
    return _ESCAPED_BYTE.sub(r"\1\\x\2", repr(text))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_lower(text: str) -> str:
    """`text` with only A-Z folded: how xinetd and libwrap compare host names and
    keywords (strcasecmp in the C locale). str.lower() also folds `É` to `é`, letting
    a name pattern match a host xinetd does not match (and `İ` grows a character), and
    the Kelvin sign to k, letting it spell a keyword."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def ascii_upper(text: str) -> str:
    """`text` with only a-z raised (ascii_lower's other way): str.upper() also turns
    `ı` (dotless i) and `ſ` (long s) into I and S, so `UNLıMıTED` would read as
    UNLIMITED, which xinetd rejects."""
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)
