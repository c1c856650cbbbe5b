"""xinetd's service logs (reference §5.3): each service's entries and where they go.

START/EXIT/FAIL/TRAFFIC/USERID/NOID entries, byte-for-byte xinetd's, are written to the
service's `log_type`: syslog (pyxinetd.syslogsender), or a FILE with its size limits.
Messages about a log (it cannot be opened, it is full) go to the program log.

A FILE that is a FIFO is written without waiting for its reader (pyxinetd.logstream): an
entry that finds the pipe full waits in the daemon, in order, and is written once the
reader makes room, so a reader that is briefly slow delays entries instead of losing
them, and one that stops reading never stalls the daemon. A reader that leaves is said
once (ERROR `Error writing PATH: Broken pipe (errno = 32)`, again only after an entry
was written since); the entries wait for the next reader, which gets them first, in
order (nothing is watched meanwhile: a FIFO with no reader is always ready to fail, so
the next entry tries again). At most BACKLOG_LIMIT entries
wait per file; the newest beyond are dropped, and a WARNING `N entries dropped: PATH was
full` says how many once there is room (or, at exit, when what still waits gets up to
FLUSH_ON_CLOSE seconds for every log together and the rest is counted).

A regular file may have no room (its file system or its owner's quota is full): an
entry it refuses waits the same way, and is written before the next entry once there
is room; the first refusal is said once (ERROR `Error writing PATH: No space left on
device (errno = 28)`), and again only after an entry was written since. Nothing tells
the daemon that room appeared, so what waits there is tried again with the next entry
(the exit tries once more, and counts what is still left as dropped).

Every log naming the same FIFO or regular file (services sharing it, each with its own
limits and id, as in xinetd) writes through one descriptor and one queue, so entries
waiting for room come out in the order they were logged, whichever service logged
them; the `-filelog` program log's file too, when a service log names it (its queue is
then the program log's). The success path is the same write either way: the sharing is
found once, when a log is opened (a stat of the path against the open files).

A reload loses none of the waiting entries. A FIFO closed for a reload with entries
still waiting keeps its descriptor and its entries, written from the loop as the reader
reads; a log opened after the reload while the path still names that FIFO goes on with
that queue, so its new entries come after the old ones; a FIFO nobody opens again is
closed once what waited is written. A regular file's waiting entries go to the file a
log of the new configuration opens at the same path, first (the same file, or the new
one a rotation left there, though they were logged before it). If none opens that
path, they are tried once more when the reload has opened its logs (`reloaded()`), and
the rest counted, once: nothing would ever tell them there is room. So are those of a
FIFO nobody opens again whose reader has left (at the reload, or later while they are
written from the loop): only an entry of a log would try them again, and none comes, so
the descriptor would be held for ever (one more with each reload that moves a log off a
FIFO without a reader, or finds a new FIFO at its path).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyxinetd.backlog import BACKLOG_LIMIT
from pyxinetd.config.model import FileTarget, LogTarget, ServiceConfig, SyslogTarget
from pyxinetd.files import open_for_append, through_stderr
from pyxinetd.log import (FACILITIES, SEVERITIES, Level, ProgramLog, SyslogSender,
                          file_timestamp, strerror)
from pyxinetd.listener import SHORTAGE_ERRNOS
from pyxinetd.logstream import Kind, LogStream
from pyxinetd.loop import Loop
from pyxinetd.textbytes import as_written


# -- entries ---------------------------------------------------------------

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
    """`entry` cut to its first MAX_ENTRY_BYTES bytes as written, as xinetd cuts it:
    byte by byte, so that a UTF-8 character split by the cut leaves its first bytes
    (kept as surrogate escapes, written back as they are). Bytes of the configuration
    that are not UTF-8 stay as they are, as in an entry that is not cut."""
    data = as_written(entry)
    if len(data) <= MAX_ENTRY_BYTES:
        return entry
    return data[:MAX_ENTRY_BYTES].decode("utf-8", errors="surrogateescape")


def _label(service: ServiceConfig, target: FileTarget) -> str:
    """The id a FILE log goes by in the messages about it."""
    return "common" if target.common else service.id


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


@dataclass
class _SharedFile:
    """A FIFO or regular file some service logs write to: one descriptor, one queue of
    the entries waiting for room, whichever log they came from (module docstring)."""
    stream: LogStream
    path: str
    # Logs writing through it; closed when the last one lets go. The program log's
    # own file (-filelog) is the program log's to close.
    users: int = 0
    program: bool = False

    @property
    def fd(self) -> int:
        fd = self.stream.fd
        assert fd is not None
        return fd

    def names(self, info: os.stat_result) -> bool:
        """`info` (a path's stat) is this file."""
        try:
            return os.path.samestat(info, os.fstat(self.fd))
        except OSError:
            return False


@dataclass
class _LogFile:
    fd: int
    size: int
    soft_limit: int | None
    hard_limit: int | None
    label: str
    path: str
    warned: bool = False            # the soft-limit message was written
    closed_for_good: bool = False
    # A FIFO's or regular file's descriptor and queue, shared with the other logs
    # naming the same file (a device: None, and `fd` is this log's own).
    shared: _SharedFile | None = None

    @property
    def stream(self) -> LogStream | None:
        return None if self.shared is None else self.shared.stream


class ServiceLogs:
    """Writes service entries to each service's log_type.

    A FILE log is one per service, or one for every service sharing the log of
    `defaults`, as in xinetd: services naming the same file each have their own log,
    with their own limits and their own id in the messages about them. Their entries
    go through one descriptor and one queue per file, so that entries waiting for
    room are written in the order they were logged, whichever service logged them."""

    def __init__(self, program: ProgramLog, syslog: SyslogSender,
                 clock: Callable[[], float] = time.time,
                 backlog_limit: int = BACKLOG_LIMIT) -> None:
        self._program = program
        self._syslog = syslog
        self._clock = clock
        self._backlog_limit = backlog_limit
        self._loop: Loop | None = None
        self._files: dict[tuple[str, str], _LogFile] = {}
        # The FIFOs and regular files the logs of `_files` write to.
        self._shared: list[_SharedFile] = []
        # Files closed for a reload whose entries still wait for room: a FIFO's are
        # written from the loop as its reader reads, a regular file's go to the file
        # a log opens at its path next (module docstring).
        self._held: list[_SharedFile] = []
        # The shared log of `defaults` could not be created (until the next reload).
        self._common_failed = False
        # The errno of the last open() that failed (None: it did not fail), so that
        # a caller can tell a shortage of descriptors from a file it cannot create.
        self.open_errno: int | None = None

    def attach(self, loop: Loop) -> None:
        """Write the entries a FIFO had no room for from `loop`, as it has room (a
        full disk's wait for the next entry: nothing tells when it has room)."""
        self._loop = loop
        for shared in self._shared:
            if not shared.program:
                shared.stream.attach(loop)

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

    def open(self, service: ServiceConfig, *, quiet: frozenset[int] = frozenset()) -> bool:
        """Open `service`'s FILE log ahead of its first entry, as xinetd does when it
        activates a service (the file exists from then on). False when it cannot be
        created: the reason is logged, then xinetd's `creation of ID log failed` (ID
        `default` for the shared log of `defaults`, said once for all its services),
        and the caller does not activate the service (xinetd's log_start() fails it).
        `open_errno` tells why; a failure whose errno is in `quiet` is not logged (a
        service waiting for descriptors tries again)."""
        self.open_errno = None
        target = service.log_type
        if not isinstance(target, FileTarget) or (target.path,
                                                  _label(service, target)) in self._files:
            return True
        if target.common and self._common_failed:
            return False    # said once, for the first service that shares it
        if self._open(target, _label(service, target), quiet) is not None:
            return True
        if _is_fifo(target.path):
            # A FIFO whose reader is not there yet: it may come, so the service serves
            # and each entry tries again (xinetd would wait for the reader, stalled).
            return True
        if self.open_errno in quiet:
            return False
        # Said once: the services sharing it are not activated either. A shortage of
        # descriptors is not a verdict on the file: each of them tries again.
        self._common_failed = target.common and self.open_errno not in SHORTAGE_ERRNOS
        label = "default" if target.common else service.id
        self._program.error("log_start", f"creation of {label} log failed")
        return False

    def _open(self, target: FileTarget, label: str,
              quiet: frozenset[int] = frozenset()) -> _LogFile | None:
        shared = self._already_open(target.path)
        if shared is not None:
            info = os.fstat(shared.fd)
            log = _LogFile(shared.fd, info.st_size, target.soft_limit, target.hard_limit,
                           label, target.path, shared=shared)
            shared.users += 1
        else:
            try:
                fd = through_stderr(open_for_append(target.path))
            except OSError as err:
                self.open_errno = err.errno
                if err.errno not in quiet:
                    self._program.error("log_open",
                                        f"Cannot open {target.path}: {strerror(err)}")
                return None
            info = os.fstat(fd)
            log = _LogFile(fd, info.st_size, target.soft_limit, target.hard_limit, label,
                           target.path)
            if stat.S_ISFIFO(info.st_mode) or stat.S_ISREG(info.st_mode):
                # A FIFO: a blocking write would stall the loop, and every service, while
                # the reader does not read. A regular file: its disk may be full for a
                # while. Either way entries with no room wait (module docstring).
                log.shared = self._new_shared(target.path, fd)
                log.shared.users += 1
            else:
                # A device (a terminal) the loop must not wait for either: an entry it
                # has no room for is lost, and reported.
                os.set_blocking(fd, False)
        self._files[(target.path, label)] = log
        if log.soft_limit is not None and log.size > log.soft_limit:
            # Already past a limit (not rotated since): say so; past the hard one,
            # nothing more is written to it, as in xinetd.
            self._check_limits(log)
        return log

    def _already_open(self, path: str) -> _SharedFile | None:
        """The file `path` names, when another log, the program log (-filelog), or a
        log closed for a reload with entries still waiting writes to it already."""
        try:
            info = os.stat(path)
        except OSError:
            return None     # not there yet: open() creates it
        for shared in self._shared:
            if shared.names(info):
                return shared
        program = self._program.file_stream()
        if program is not None and program.fd is not None:
            try:
                same = os.path.samestat(info, os.fstat(program.fd))
            except OSError:
                same = False
            if same:
                shared = _SharedFile(program, path, program=True)
                self._shared.append(shared)
                return shared
        for shared in self._held:
            if shared.names(info):
                # Its entries still wait: the new ones come after them.
                self._held.remove(shared)
                shared.stream.on_drained = shared.stream.on_stranded = None
                self._shared.append(shared)
                return shared
        return None

    def _new_shared(self, path: str, fd: int) -> _SharedFile:
        stream = LogStream(
            fd, owned=True, limit=self._backlog_limit,
            dropped_message=lambda count: self._report_dropped(path, count),
            write_failed=lambda err: self._write_error(path, err),
            no_room=lambda err: self._write_error(path, err), wait_for_reader=True)
        shared = _SharedFile(stream, path)
        if stream.kind is Kind.FILE:
            for held in [h for h in self._held
                         if h.path == path and h.stream.kind is Kind.FILE]:
                # The file a reload closed with entries still waiting was renamed or
                # removed (rotated): they are the first lines of the one now there.
                stream.take_over(held.stream)
                self._held.remove(held)
                held.stream.close(0.0)
        if self._loop is not None:
            stream.attach(self._loop)
        self._shared.append(shared)
        return shared

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
        data = as_written(f"{file_timestamp(self._clock())}: {entry}\n")
        if log.stream is not None:
            log.stream.write_line(data)
            if log.stream.kind is Kind.PIPE:
                return      # no size limits: a pipe has no size
        else:
            try:
                log.size += os.write(log.fd, data)
            except OSError as err:
                self._write_error(target.path, err)
                return
        if log.soft_limit is not None:
            self._check_limits(log)

    def _write_error(self, path: str, err: OSError) -> None:
        self._program.error("log_write", f"Error writing {path}: {strerror(err)}")

    def _check_limits(self, log: _LogFile) -> None:
        """The manual's two limits (reference §5.4), against the file's size after a
        line: a message at ALERT the first time the soft limit is exceeded (xinetd 2.3.15.3 never writes it), then, past the
        hard limit, the line is finished and the log closed until the next reload.
        Entries still waiting for room are not in the file yet: they count once
        written."""
        if log.stream is not None and log.stream.kind is Kind.PIPE:
            return
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
            self._close_log(log, 0.0)
            log.closed_for_good = True
            self._program.error("log_write", f"Size of {log.label} log exceeded hard limit")

    def fds(self) -> list[int]:
        own = {f.fd for f in self._files.values() if f.shared is None and not f.closed_for_good}
        return sorted(own | {s.fd for s in [*self._shared, *self._held] if not s.program})

    def _report_dropped(self, path: str, count: int) -> None:
        self._program.warning("log_write", f"{count} entries dropped: {path} was full")

    def close_for_reload(self) -> None:
        """Close every log: a reload opens them again. A file whose entries still wait
        for room is held: a FIFO's are written from the loop, a regular file's go to
        the file a log of the new configuration opens at its path (module docstring)."""
        for log in self._files.values():
            if log.shared is None and not log.closed_for_good:
                os.close(log.fd)
        for shared in self._shared:
            if shared.program:
                continue
            shared.users = 0
            if shared.stream.flush() or (shared.stream.kind is Kind.PIPE
                                         and self._loop is None):
                self._close_shared(shared, 0.0)
            else:
                self._hold(shared)
        self._files.clear()
        self._shared.clear()
        self._common_failed = False

    def reloaded(self) -> None:
        """The reload has opened every log it opens: the entries of a regular file
        no log writes to any more, or of a FIFO that has no reader, are tried once
        more, and the rest counted (one WARNING). Nothing would ever tell them there is
        room: no entry of theirs comes to try again."""
        for shared in [h for h in self._held
                       if h.stream.kind is Kind.FILE or h.stream.readerless]:
            self._held.remove(shared)
            self._close_shared(shared, 0.0)

    def _hold(self, shared: _SharedFile) -> None:
        def drained() -> None:
            # Nobody opened it again since the reload, and nothing waits any more.
            if shared in self._held:
                self._held.remove(shared)
                self._close_shared(shared, 0.0)
        def stranded() -> None:
            # Its reader left while what waits was written from the loop: no entry of
            # a log will try them again, and no reader could be seen coming.
            if shared in self._held:
                self._held.remove(shared)
                self._close_shared(shared, 0.0)
        shared.stream.on_drained = drained
        shared.stream.on_stranded = stranded
        self._held.append(shared)

    def _close_log(self, log: _LogFile, flush_for: float) -> None:
        """`log` lets go of its file: closed, once no other log writes to it."""
        shared = log.shared
        if shared is None:
            if not log.closed_for_good:
                os.close(log.fd)
            return
        if log.closed_for_good or shared.program:
            return
        shared.users -= 1
        if shared.users <= 0 and shared in self._shared:
            self._shared.remove(shared)
            self._close_shared(shared, flush_for)

    def _close_shared(self, shared: _SharedFile, flush_for: float) -> None:
        shared.stream.on_drained = shared.stream.on_stranded = None
        forgotten = shared.stream.close(flush_for)
        if forgotten:
            self._report_dropped(shared.path, forgotten)

    def close(self, flush_for: float = 0.0) -> None:
        """Close every log, held ones too: the daemon stops. Entries waiting for room
        get `flush_for` seconds in all (the exit gives FLUSH_ON_CLOSE); the rest are
        counted as dropped."""
        deadline = time.monotonic() + flush_for
        for log in self._files.values():
            if log.shared is None and not log.closed_for_good:
                os.close(log.fd)
        for shared in [*self._shared, *self._held]:
            if not shared.program:
                self._close_shared(shared, max(0.0, deadline - time.monotonic()))
        self._files.clear()
        self._shared.clear()
        self._held.clear()
        self._common_failed = False
