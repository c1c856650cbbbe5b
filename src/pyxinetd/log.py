"""xinetd's program log (reference §5): the daemon's own messages.

They go to a file, to stderr, or to syslog, byte-for-byte in xinetd's formats, so
existing log parsers (fail2ban filters, logwatch scripts) keep working; the syslog ident
is therefore `xinetd` too. The services' own entries (START, EXIT, FAIL ...) are
pyxinetd.servicelog's.

Syslog is spoken directly on the datagram socket (pyxinetd.syslogsender); a file or
stderr is written without waiting for its reader (pyxinetd.logstream).
"""

from __future__ import annotations

import enum
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import TextIO

from pyxinetd.backlog import FLUSH_ON_CLOSE
from pyxinetd.config.diagnostics import Diagnostic, Severity
from pyxinetd.files import open_for_append
from pyxinetd.localzone import local_time
from pyxinetd.logstream import Kind, LogStream
from pyxinetd.loop import Loop
from pyxinetd.textbytes import as_written
# Re-exported: the syslog socket lives in its own module, its users import it from here.
from pyxinetd.syslogsender import DEFAULT_SYSLOG_SOCKET as DEFAULT_SYSLOG_SOCKET
from pyxinetd.syslogsender import SYSLOG_IDENT as SYSLOG_IDENT
from pyxinetd.syslogsender import SYSLOG_SOCKET_ENV as SYSLOG_SOCKET_ENV
from pyxinetd.syslogsender import SyslogSender as SyslogSender
from pyxinetd.syslogsender import syslog_timestamp as syslog_timestamp


FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
SEVERITIES: dict[str, int] = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6,
    "debug": 7,
}


class Level(enum.Enum):
    """Program-log levels: the word xinetd writes, and the syslog severity."""

    ALERT = ("ALERT", 1)
    CRITICAL = ("CRITICAL", 2)
    ERROR = ("ERROR", 3)
    WARNING = ("WARNING", 4)
    NOTICE = ("NOTICE", 5)
    INFO = ("INFO", 6)
    DEBUG = ("DEBUG", 7)

    @property
    def word(self) -> str:
        return self.value[0]

    @property
    def severity(self) -> int:
        return self.value[1]


# The program-log level of each configuration diagnostic's severity.
_SEVERITY_LEVELS = {
    Severity.CRITICAL: Level.CRITICAL,
    Severity.ERROR: Level.ERROR,
    Severity.WARNING: Level.WARNING,
    Severity.INFO: Level.INFO,
    Severity.DEBUG: Level.DEBUG,
}


def file_timestamp(now: float) -> str:
    """xinetd's file-log stamp: YY/M/D@HH:MM:SS, month and day not zero-padded."""
    t = local_time(now)
    return (f"{t.tm_year % 100:02d}/{t.tm_mon}/{t.tm_mday}@"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")


def stderr_is_journal(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether descriptor 2 is the systemd journal's stream, which stamps, tags and
    ranks each line itself: systemd names that stream's `device:inode` in
    JOURNAL_STREAM (systemd.exec(5)). A stderr the unit's command redirected elsewhere
    (`2>FILE`) no longer matches, and keeps the file format."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    # ASCII digits only, as systemd writes them: str.isdigit() also takes `²`, which
    # int() refuses (the daemon died at start with a traceback).
    if not (_is_decimal(device) and _is_decimal(inode)):
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def strerror(err: OSError) -> str:
    """xinetd's %m: `<strerror text> (errno = N)`."""
    if err.errno is None:
        return str(err)
    return f"{os.strerror(err.errno)} (errno = {err.errno})"


class ProgramLog:
    """The daemon's own log. `debug` mode adds DEBUG lines and `PID {func}` everywhere.

    Its file or stderr is a LogStream (never waits for a reader); `stream` is for an
    in-memory text stream."""

    def __init__(self, *, stream: TextIO | None = None, syslog: SyslogSender | None = None,
                 facility: int = FACILITIES["daemon"], debug: bool = False,
                 clock: Callable[[], float] = time.time,
                 output: Callable[[ProgramLog], LogStream] | None = None,
                 journal: bool = False) -> None:
        self._stream = stream
        self._journal = journal
        self._syslog = syslog
        self._facility = facility
        self.debug_mode = debug
        self._clock = clock
        self._pid = os.getpid()
        self._output = None if output is None else output(self)

    @classmethod
    def to_file(cls, path: str, *, debug: bool = False) -> ProgramLog:
        fd = open_for_append(path)
        return cls(debug=debug, output=lambda log: LogStream(
            fd, owned=True, dropped_message=log._dropped_line, wait_for_reader=True))

    @classmethod
    def to_stderr(cls, *, debug: bool = False) -> ProgramLog:
        # Lines already in Python's stderr buffer go first (it is line-buffered: only
        # a line without its end can wait there).
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        return cls(debug=debug, journal=stderr_is_journal(), output=lambda log: LogStream(
            2, owned=False, dropped_message=log._dropped_line, wait_for_reader=True))

    @classmethod
    def to_syslog(cls, sender: SyslogSender, facility: str = "daemon", *,
                  debug: bool = False) -> ProgramLog:
        return cls(syslog=sender, facility=FACILITIES[facility], debug=debug)

    def attach(self, loop: Loop) -> None:
        """Write the lines the file or stderr had no room for from `loop`, as it has room."""
        if self._output is not None:
            self._output.attach(loop)

    @property
    def writes_to_syslog(self) -> bool:
        """The lines go to syslog (`-syslog`, or a detached daemon's default)."""
        return self._syslog is not None

    def file_stream(self) -> LogStream | None:
        """The stream of the program log's regular file (`-filelog FILE`), else None:
        a service log naming the same file writes through it, so the file's lines wait
        in one queue, in the order they were logged."""
        if self._output is not None and self._output.kind is Kind.FILE:
            return self._output
        return None

    def fds(self) -> list[int]:
        """Descriptors the log holds (the spawner must not pass them on)."""
        out: list[int] = []
        if self._output is not None:
            out.extend(self._output.fds())
        if self._syslog is not None and self._syslog.fileno() is not None:
            out.append(self._syslog.fileno())  # type: ignore[arg-type]
        return out

    def _line(self, now: float, level: Level, text: str) -> str:
        if self._journal:
            # The journal adds the stamp and `xinetd[PID]:` (SyslogIdentifier=) and takes
            # the `<N>` prefix as the line's priority, so a line reads there as the same
            # line sent to syslog does. The journal cuts a message at each newline and
            # reads each piece's own prefix: every piece carries it.
            return "".join(f"<{level.severity}>{part}\n" for part in text.split("\n"))
        if self.debug_mode:
            return f"{file_timestamp(now)}: {level.word}: {text}\n"
        return f"{file_timestamp(now)} {SYSLOG_IDENT}[{self._pid}]: {level.word}: {text}\n"

    def _dropped_line(self, count: int) -> bytes:
        """The line that says how many lines the file or stderr had no room for."""
        text = f"{count} messages dropped: the log was full"
        if self.debug_mode:
            text = f"{self._pid} {{log_write}} {text}"
        return as_written(self._line(self._clock(), Level.WARNING, text))

    def log(self, level: Level, func: str, text: str, *, always: bool = False) -> None:
        """Write one line; a DEBUG one only with -d, unless `always` (a DEBUG line
        xinetd writes without -d too)."""
        if level is Level.DEBUG and not self.debug_mode and not always:
            return
        if self.debug_mode or level is Level.CRITICAL:
            text = f"{self._pid} {{{func}}} {text}"
        now = self._clock()
        if self._syslog is not None:
            self._syslog.send(self._facility * 8 + level.severity, text, now)
        if self._output is not None:
            self._output.write_line(as_written(self._line(now, level, text)))
        if self._stream is not None:
            try:
                self._stream.write(self._line(now, level, text))
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def critical(self, func: str, text: str) -> None:
        self.log(Level.CRITICAL, func, text)

    def error(self, func: str, text: str) -> None:
        self.log(Level.ERROR, func, text)

    def warning(self, func: str, text: str) -> None:
        self.log(Level.WARNING, func, text)

    def notice(self, func: str, text: str) -> None:
        self.log(Level.NOTICE, func, text)

    def info(self, func: str, text: str) -> None:
        self.log(Level.INFO, func, text)

    def debug(self, func: str, text: str) -> None:
        self.log(Level.DEBUG, func, text)

    def diagnostic(self, diagnostic: Diagnostic) -> None:
        """A configuration diagnostic, as xinetd's parser logs it: `MESSAGE [file=F]
        [line=N]`, at its severity (DEBUG ones only with -d, but those xinetd writes
        without it too)."""
        text = str(diagnostic.message)
        if diagnostic.file is not None:
            text += f" [file={diagnostic.file}]"
            if diagnostic.line is not None:
                text += f" [line={diagnostic.line}]"
        self.log(_SEVERITY_LEVELS[diagnostic.severity], "parse", text,
                 always=diagnostic.always)

    def close(self, flush_for: float = FLUSH_ON_CLOSE) -> None:
        """Give the lines waiting for room `flush_for` seconds (pyxinetd.backlog), then
        close."""
        if self._output is not None:
            self._output.close(flush_for)
        self._output = None
        self._stream = None


def internal_error_text(what: str, exc: Exception) -> str:
    """`internal error in WHAT: Type: message (file.py:LINE in function)`, the frame
    being the innermost one of pyxinetd's own code, else the innermost one."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}pyxinetd{os.sep}" in f.filename]
    where = ""
    if ours or frames:
        frame = (ours or frames)[-1]
        where = f" ({os.path.basename(frame.filename)}:{frame.lineno} in {frame.name})"
    return (f"internal error in {what}: {type(exc).__name__}: {exc}{where}; "
            "serving goes on")
