"""The `#!` line of a server that is a script: why the kernel cannot run it.

exec() of a script whose interpreter is missing fails with ENOENT, the error of a
missing file, although the file is there: "exec: No such file or directory" for a
server that `ls` shows. The usual causes are a script saved with DOS line ends (the
interpreter's name then ends in a carriage return, `/bin/sh\\r`) and an interpreter not
installed in the image. The loader warns about them and a failed exec names them.

The kernel reads the first line (up to 256 bytes since Linux 5.1): after `#!` and any
blanks, the interpreter is the word up to the next blank or the line's end, a carriage
return included.
"""

from __future__ import annotations

import os
import re
import stat

from pyxinetd.files import read_regular

# The kernel's buffer for a script's first line (BINPRM_BUF_SIZE).
_HEAD = 256
_INTERPRETER = re.compile(rb"[ \t]*([^ \t\n]*)")


def interpreter_of(path: str) -> str | None:
    """The interpreter the `#!` line of the script `path` names, or None (no script,
    unreadable here, no interpreter named)."""
    head = read_regular(path, _HEAD)
    if head is None or not head.startswith(b"#!"):
        return None
    match = _INTERPRETER.match(head[2:].split(b"\n", 1)[0])
    return os.fsdecode(match.group(1)) if match and match.group(1) else None


def interpreter_problem(path: str) -> str | None:
    """Why the script `path` cannot be run through its `#!` line, or None: it is no
    script, cannot be read here, or its interpreter is an executable file. Asked in the
    daemon's loop after a failed exec: read without waiting (a FIFO put in the server's
    place is no script)."""
    head = read_regular(path, _HEAD)
    if head is None or not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0]
    match = _INTERPRETER.match(line)
    interpreter = match.group(1) if match else b""
    dos = ("; the #! line ends in a carriage return (the file has DOS line ends)"
           if line.endswith(b"\r") else "")
    if not interpreter:
        return "its #! line names no interpreter"
    shown = interpreter.decode("utf-8", "backslashreplace").replace("\r", "\\r")
    try:
        mode = os.stat(interpreter).st_mode
    except FileNotFoundError:
        return f"its #! interpreter {shown} does not exist{dos}"
    except OSError as err:
        return f"its #! interpreter {shown} cannot be reached: {err.strerror}{dos}"
    if not stat.S_ISREG(mode) or not os.access(interpreter, os.X_OK):
        return f"its #! interpreter {shown} is not an executable file{dos}"
    if dos:
        return f"its #! interpreter {shown} is given words ending in a carriage return{dos}"
    return None
