"""The two logs of xinetd (reference §5): the program log and the service logs.

The program log carries the daemon's own messages to a file, to stderr, or to syslog.
Service logs carry START/EXIT/FAIL/TRAFFIC/USERID/NOID lines to each service's
`log_type`. Lines are byte-for-byte xinetd's formats, so existing log parsers (fail2ban
filters, logwatch scripts) keep working; the syslog ident is therefore `xinetd` too.

Syslog is spoken directly on the datagram socket (pyxinetd.syslogsender); a file or
stderr is written without waiting for its reader (pyxinetd.logstream).
"""

from __future__ import annotations

import enum
import os
import stat
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from pyxinetd.config.model import FileTarget, LogTarget, ServiceConfig, SyslogTarget
from pyxinetd.files import open_for_append, through_stderr
from pyxinetd.logstream import LogStream
from pyxinetd.loop import Loop
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


def file_timestamp(now: float) -> str:
    """xinetd's file-log stamp: YY/M/D@HH:MM:SS, month and day not zero-padded."""
    t = time.localtime(now)
    return (f"{t.tm_year % 100:02d}/{t.tm_mon}/{t.tm_mday}@"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")


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
                 output: Callable[[ProgramLog], LogStream] | None = None) -> None:
        self._stream = stream
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
            fd, owned=True, dropped_message=log._dropped_line))

    @classmethod
    def to_stderr(cls, *, debug: bool = False) -> ProgramLog:
        # Lines already in Python's stderr buffer go first (it is line-buffered: only
        # a line without its end can wait there).
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        return cls(debug=debug, output=lambda log: LogStream(
            2, owned=False, dropped_message=log._dropped_line))

    @classmethod
    def to_syslog(cls, sender: SyslogSender, facility: str = "daemon", *,
                  debug: bool = False) -> ProgramLog:
        return cls(syslog=sender, facility=FACILITIES[facility], debug=debug)

    def attach(self, loop: Loop) -> None:
        """Write the lines the file or stderr had no room for from `loop`, as it has room."""
        if self._output is not None:
            self._output.attach(loop)

    def fds(self) -> list[int]:
        """Descriptors the log holds (the spawner must not pass them on)."""
        out: list[int] = []
        if self._output is not None:
            out.extend(self._output.fds())
        if self._syslog is not None and self._syslog.fileno() is not None:
            out.append(self._syslog.fileno())  # type: ignore[arg-type]
        return out

    def _line(self, now: float, level: Level, text: str) -> str:
        if self.debug_mode:
            return f"{file_timestamp(now)}: {level.word}: {text}\n"
        return f"{file_timestamp(now)} {SYSLOG_IDENT}[{self._pid}]: {level.word}: {text}\n"

    def _dropped_line(self, count: int) -> bytes:
        """The line that says how many lines the file or stderr had no room for."""
        text = f"{count} messages dropped: the log was full"
        if self.debug_mode:
            text = f"{self._pid} {{log_write}} {text}"
        return self._line(self._clock(), Level.WARNING, text).encode(errors="replace")

    def log(self, level: Level, func: str, text: str) -> None:
        if level is Level.DEBUG and not self.debug_mode:
            return
        if self.debug_mode or level is Level.CRITICAL:
            text = f"{self._pid} {{{func}}} {text}"
        now = self._clock()
        if self._syslog is not None:
            self._syslog.send(self._facility * 8 + level.severity, text, now)
        if self._output is not None:
            self._output.write_line(self._line(now, level, text).encode(errors="replace"))
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

    def close(self) -> None:
        """Give the lines waiting for room a bounded time (pyxinetd.backlog), then close."""
        if self._output is not None:
            self._output.close()
        self._output = None
        self._stream = None


# -- service log lines (reference §5.3) ------------------------------------

def start_entry(service: ServiceConfig, pid: int, peer: str) -> str | None:
    """`START: ID[ pid=P][ from=A]`, or None when log_on_success is empty."""
    flags = service.log_on_success
    if not flags:
        return None
    text = f"START: {service.id}"
    if "PID" in flags:
        text += f" pid={pid}"
    if "HOST" in flags:
        text += f" from={peer}"
    return text


def whole_seconds(started_wall: float, elapsed: float) -> int:
    """A duration as xinetd logs it: the difference of the whole wall-clock seconds at
    the start and at the end (a 0.3 s session that crosses a second is `1(sec)`). The
    elapsed time comes from the monotonic clock, so a clock step cannot make it negative."""
    return int(started_wall + elapsed) - int(started_wall)


def exit_entry(service: ServiceConfig, pid: int, status: tuple[str, int] | None,
               duration: int) -> str | None:
    """`EXIT: ID[ status=N|signal=N][ pid=P][ duration=S(sec)]`, when EXIT or DURATION is set."""
    flags = service.log_on_success
    if "EXIT" not in flags and "DURATION" not in flags:
        return None
    text = f"EXIT: {service.id}"
    if "EXIT" in flags and status is not None:
        text += f" {status[0]}={status[1]}"
    if "PID" in flags:
        text += f" pid={pid}"
    if "DURATION" in flags:
        text += f" duration={duration}(sec)"
    return text


def fail_entry(service: ServiceConfig, reason: str, peer: str) -> str | None:
    """`FAIL: ID REASON[ from=A]`, or None when log_on_failure is empty."""
    flags = service.log_on_failure
    if not flags:
        return None
    text = f"FAIL: {service.id} {reason}"
    if "HOST" in flags:
        text += f" from={peer}"
    return text


def userid_entry(service: ServiceConfig, userid: str) -> str:
    """`USERID: ID TEXT`: TEXT is what the client's identd said after `USERID :`."""
    return f"USERID: {service.id} {userid}"


def noid_entry(service: ServiceConfig, peer: str, reason: str) -> str:
    """`NOID: ID A REASON`: an IDONLY service could not identify its client."""
    return f"NOID: {service.id} {peer} {reason}"


def traffic_entry(service: ServiceConfig, bytes_in: int, bytes_out: int) -> str | None:
    if "TRAFFIC" not in service.log_on_success:
        return None
    return f"TRAFFIC: {service.id} in={bytes_in}(bytes) out={bytes_out}(bytes)"


# xinetd builds each entry in a 1024-byte buffer (src/log.c, LOGBUF_SIZE): a longer one
# (a very long `id`, a USERID text) is cut there, in the file and in syslog alike.
MAX_ENTRY_BYTES = 1024


def bounded_entry(entry: str) -> str:
    """`entry` cut to its first MAX_ENTRY_BYTES bytes of UTF-8, as xinetd cuts it (a
    character split by the cut is dropped)."""
    data = entry.encode(errors="replace")
    if len(data) <= MAX_ENTRY_BYTES:
        return entry
    return data[:MAX_ENTRY_BYTES].decode(errors="ignore")


def _label(service: ServiceConfig, target: FileTarget) -> str:
    """The id a FILE log goes by in the messages about it."""
    return "common" if target.common else service.id


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


@dataclass
class _LogFile:
    fd: int
    size: int
    soft_limit: int | None
    hard_limit: int | None
    label: str
    warned: bool = False            # the soft-limit message was written
    closed_for_good: bool = False


class ServiceLogs:
    """Writes service entries to each service's log_type.

    A FILE log is one descriptor per service, or one for every service sharing the
    log of `defaults`, as in xinetd: services naming the same file each have their
    own log, with their own limits and their own id in the messages about them."""

    def __init__(self, program: ProgramLog, syslog: SyslogSender,
                 clock: Callable[[], float] = time.time) -> None:
        self._program = program
        self._syslog = syslog
        self._clock = clock
        self._files: dict[tuple[str, str], _LogFile] = {}
        # The shared log of `defaults` could not be created (until the next reload).
        self._common_failed = False

    def write(self, service: ServiceConfig, entry: str | None) -> None:
        target: LogTarget | None = service.log_type
        if entry is None or target is None:
            return
        entry = bounded_entry(entry)
        if isinstance(target, SyslogTarget):
            pri = FACILITIES.get(target.facility, 3) * 8 + SEVERITIES.get(target.level, 6)
            self._syslog.send(pri, entry, self._clock())
            return
        self._write_file(target, _label(service, target), entry)

    def open(self, service: ServiceConfig) -> bool:
        """Open `service`'s FILE log ahead of its first entry, as xinetd does when it
        activates a service (the file exists from then on). False when it cannot be
        created: the reason is logged, then xinetd's `creation of ID log failed` (ID
        `default` for the shared log of `defaults`, said once for all its services),
        and the caller does not activate the service (xinetd's log_start() fails it)."""
        target = service.log_type
        if not isinstance(target, FileTarget) or (target.path,
                                                  _label(service, target)) in self._files:
            return True
        if target.common and self._common_failed:
            return False    # said once, for the first service that shares it
        if self._open(target, _label(service, target)) is not None:
            return True
        if _is_fifo(target.path):
            # A FIFO whose reader is not there yet: it may come, so the service serves
            # and each entry tries again (xinetd would wait for the reader, stalled).
            return True
        self._common_failed = target.common
        label = "default" if target.common else service.id
        self._program.error("log_start", f"creation of {label} log failed")
        return False

    def _open(self, target: FileTarget, label: str) -> _LogFile | None:
        try:
            fd = through_stderr(open_for_append(target.path))
        except OSError as err:
            self._program.error("log_open", f"Cannot open {target.path}: {strerror(err)}")
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # A FIFO (or a terminal) whose reader stops reading would block the loop,
            # and every service with it: an entry that does not fit is lost and reported
            # (entries are under PIPE_BUF, so a pipe takes each whole or not at all).
            os.set_blocking(fd, False)
        log = _LogFile(fd, info.st_size, target.soft_limit, target.hard_limit, label)
        self._files[(target.path, label)] = log
        if log.soft_limit is not None and log.size > log.soft_limit:
            # Already past a limit (not rotated since): say so; past the hard one,
            # nothing more is written to it, as in xinetd.
            self._check_limits(log)
        return log

    def _write_file(self, target: FileTarget, label: str, entry: str) -> None:
        log = self._files.get((target.path, label)) or self._open(target, label)
        if log is None:
            return
        if log.hard_limit is not None and not log.closed_for_good:
            # Another service writing to the same file may have taken it past the limit.
            self._check_limits(log)
        if log.closed_for_good:
            self._program.error("log_write", f"Error in {log.label} log: size limit reached")
            return
        data = f"{file_timestamp(self._clock())}: {entry}\n".encode(errors="replace")
        try:
            log.size += os.write(log.fd, data)
        except OSError as err:
            self._program.error("log_write", f"Error writing {target.path}: {strerror(err)}")
            return
        if log.soft_limit is not None:
            self._check_limits(log)

    def _check_limits(self, log: _LogFile) -> None:
        """The manual's two limits (reference §5.4), against the file's size after a
        line: a message at ALERT the first time the soft limit is exceeded (xinetd 2.3.15.3 never writes it), then, past the
        hard limit, the line is finished and the log closed until the next reload."""
        try:
            # The file's real size: other services may write to it too, and a rotation
            # may have truncated it since it was opened.
            log.size = os.fstat(log.fd).st_size
        except OSError:
            pass
        if log.soft_limit is None or log.size <= log.soft_limit:
            return
        if not log.warned:
            log.warned = True
            self._program.log(Level.ALERT, "log_write",
                              f"Size of {log.label} log exceeded soft limit")
        if log.hard_limit is not None and log.size > log.hard_limit:
            os.close(log.fd)
            log.closed_for_good = True
            self._program.error("log_write", f"Size of {log.label} log exceeded hard limit")

    def fds(self) -> list[int]:
        return [f.fd for f in self._files.values() if not f.closed_for_good]

    def close(self) -> None:
        for log in self._files.values():
            if not log.closed_for_good:
                os.close(log.fd)
        self._files.clear()
        self._common_failed = False


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
