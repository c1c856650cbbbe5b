"""The `pyxinetd` command: `python3 -m pyxinetd` and the installed script run this.

The signals the daemon handles are held before the rest of it is imported (most of a
second on a slow host): as process 1 of a container, a signal whose action is still the
default one is dropped by the kernel, and a `docker stop` arriving then was lost
(pyxinetd.signals.hold_until_installed).
"""

import codecs
import errno
import os
import signal
import sys

# Written without building anything: there may be no memory left for it.
_OUT_OF_MEMORY = (b"pyxinetd: out of memory (is the address space limit, ulimit -v, "
                  b"too small?)\n")

# The signal mask before in_utf8_mode() held the daemon's signals and executed the
# interpreter again: `PID:NUMBERS`, the numbers separated by commas.
MASK_AT_START_VARIABLE = "PYXINETD_MASK_AT_START"


def in_utf8_mode() -> None:
    """Exec the interpreter again in its UTF-8 mode (`-X utf8`) if the locale is not UTF-8.

    Configuration files are read as UTF-8 with surrogate escapes, and the logs write
    them back that way (pyxinetd.textbytes); file names, argv and the environment go
    through the file system encoding, which the locale picks. Under a Latin-1 locale
    the two disagree: a server path written in UTF-8 was looked up under other bytes
    (not executable, service disabled), a `server_args` character outside Latin-1
    stopped the service's listener (UnicodeEncodeError), and the log wrote a Latin-1
    file name in UTF-8. xinetd passes all of them on as the bytes they are; in UTF-8
    mode every one of them round-trips too. The C and POSIX locales need nothing: the
    interpreter is then in UTF-8 mode already (PEP 538, PEP 540). The process keeps
    its pid. If the exec fails, the daemon runs on as it is.

    The signals the daemon holds are held across the exec (a blocked signal stays
    pending through it): as process 1, a `docker stop` arriving while the second
    interpreter starts was dropped by the kernel, and the daemon served on. The mask
    the command was started with goes along in the environment (mask_at_start()), for
    the daemon to restore it.
    """
    if sys.flags.utf8_mode or codecs.lookup(sys.getfilesystemencoding()).name == "utf-8":
        return
    if not sys.executable or not sys.orig_argv:
        return
    from pyxinetd.signals import held_at_start
    started_with = signal.pthread_sigmask(signal.SIG_BLOCK, held_at_start(os.getpid()))
    env = dict(os.environ)
    env[MASK_AT_START_VARIABLE] = (f"{os.getpid()}:"
                                   + ",".join(str(int(s)) for s in sorted(started_with)))
    try:
        os.execve(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]], env)
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, started_with)


def mask_at_start() -> set[int] | None:
    """The signal mask the command was started with, if in_utf8_mode() carried it over
    its exec (None: the present mask is that one); read and removed from the
    environment, so that no server inherits it. Only this process's own is taken
    (the exec keeps the pid): one set by hand, or left by another process, named
    signals to block in `pyxinetd check` (SIGTERM), or numbers that are no signal,
    which ended it with a traceback."""
    value = os.environ.pop(MASK_AT_START_VARIABLE, None)
    if value is None or not sys.flags.utf8_mode:
        return None
    pid, _, numbers = value.partition(":")
    if pid != str(os.getpid()):
        return None
    valid = {int(s) for s in signal.valid_signals()}
    try:
        mask = {int(n) for n in numbers.split(",") if n}
    except ValueError:
        return None
    return mask if mask <= valid else None


def find_own_interpreter() -> None:
    """Fill in sys.executable when the interpreter could not: started by its bare name
    with no PATH in the environment (`env -i`, a minimal init's run script), Python
    leaves it empty, and the name resolver helper (and the UTF-8 re-exec) had no
    program to run: every client whose check needs a host name was reset. The kernel
    knows the program: /proc/self/exe (without /proc it stays empty, and the users say
    why they cannot start)."""
    if not sys.executable:
        try:
            sys.executable = os.readlink("/proc/self/exe")
        except OSError:
            pass


def main() -> None:
    find_own_interpreter()
    in_utf8_mode()
    # Decided before anything can run out of memory, for an exit that builds nothing.
    # `pyxinetd check` says 2 when it could not check at all (1 means it found errors).
    out_of_memory_status = 2 if sys.argv[1:2] == ["check"] else 1
    try:
        from pyxinetd.signals import hold_until_installed
        hold_until_installed(mask_at_start())
        # getaddrinfo() encodes a host (a `bind` address) with the idna codec, whose
        # module and its C extension are imported on first use. Mapping that extension
        # fails under a tight address space limit, and the codec search reports the
        # failure as `LookupError: unknown encoding: idna`, a traceback from the depths
        # of the configuration load. Imported here, it fails as what it is.
        import encodings.idna  # noqa: F401
        from pyxinetd.cli import main as command_line
        command_line()
    except KeyboardInterrupt:
        # A Ctrl-C that came before SIGINT was held (the interpreter's own start) or
        # once a command released it: end as the default action ends a process,
        # killed by SIGINT, without Python's traceback of wherever it landed.
        _die_of(signal.SIGINT)
    except (MemoryError, ImportError, OSError, SystemError) as err:
        # Under a small address space limit (an appliance's ulimit -v) the imports or
        # the configuration run out of memory: one line, not a traceback.
        try:
            short_of_memory = _short_of_memory(err)
        except Exception:
            # The telling itself failed: it only reads the error and the limit, so
            # this is no room left even for that (a MemoryError, or one CPython lost).
            short_of_memory = True
        if not short_of_memory:
            raise
        # Inline, and ended by os._exit(): the way out must allocate nothing, and every
        # other way does. A Python function call may need a new frame chunk; raising
        # SystemExit builds the exception and a traceback entry per frame it leaves, and
        # the interpreter's finalization allocates too. When any of those failed,
        # CPython printed a traceback after the line, or lost the MemoryError (`SystemError:
        # error return without exception set`), and exited 1. Nothing is left to undo:
        # pyxinetd's own clean-up (its `finally` blocks and context managers) ran as
        # the error came up to here, and it registers no atexit handler. Only the
        # output `check` printed may still sit in sys.stdout's buffer: flushed if it
        # can be.
        try:
            sys.stdout.flush()
        except Exception:
            pass        # memory, a closed or a missing stdout: the line goes all the same
        try:
            os.write(2, _OUT_OF_MEMORY)
        except OSError:
            pass
        os._exit(out_of_memory_status)


def _short_of_memory(err: BaseException) -> bool:
    """Whether an error that came up to main() is a shortage of memory."""
    if isinstance(err, MemoryError):
        return True
    if isinstance(err, ImportError):
        return _no_room_to_map(err) and _address_space_limited()
    if isinstance(err, OSError):
        # ENOMEM from a system call that allocates (the import system listing a
        # folder, say) is the same shortage: one line under an address space limit.
        return err.errno == errno.ENOMEM and _address_space_limited()
    if isinstance(err, SystemError):
        # CPython 3.11 sometimes loses the MemoryError of an allocation that failed in
        # its own C code (an import, dataclasses' exec) and reports that instead. Only
        # those words, and only under an address space limit: any other SystemError is
        # a bug to show.
        return _lost_memory_error(err) and _address_space_limited()
    return False


def _die_of(signum: signal.Signals) -> None:
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)   # not reached unless the signal is blocked elsewhere


def _no_room_to_map(err: ImportError) -> bool:
    """A C extension module the loader could not map (glibc's dlopen(): `failed to map
    segment from shared object`): out of memory under a finite address space limit.
    The same words on a file system mounted noexec are not, and keep their traceback."""
    return "failed to map segment" in str(err)


def _lost_memory_error(err: SystemError) -> bool:
    """CPython's words for an error return whose exception was lost."""
    text = str(err)
    return ("error return without exception set" in text
            or "without setting an exception" in text)


def _address_space_limited() -> bool:
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    except (ImportError, MemoryError):
        return True     # no room for this small module either


if __name__ == "__main__":
    main()
