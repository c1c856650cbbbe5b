"""The command line: xinetd's own options, plus `pyxinetd check`.

This is the only module that prints to the terminal or chooses an exit status.

Serving takes xinetd's options exactly (pyxinetd.options); click serves the
subcommands (`pyxinetd check ...`) and `--help`.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from pyxinetd import XINETD_COMPAT_VERSION, __version__
from pyxinetd.daemonize import READY_TIMEOUT
from pyxinetd.dump import dump_path
from pyxinetd.log import SyslogSender
from pyxinetd.master import COMPILED_OPTIONS, DEFAULT_CONFIG, MasterOptions, version_text
from pyxinetd.handover import HandedOver
from pyxinetd.handover import take_from_environment as take_handed_over
from pyxinetd.installation import record as record_installation
from pyxinetd.notify import Notifier, NotifyTarget, take_from_environment
from pyxinetd.options import SYNOPSIS, USAGE, UsageError, parse_serving_args
from pyxinetd.process import close_inherited_descriptors, drop_coerced_locale
from pyxinetd.startpaths import (
    current_folder, environment_paths_from_here, from_here, standard_stream_behind,
)

if TYPE_CHECKING:
    from pyxinetd.config.model import Configuration
    from pyxinetd.daemonize import StartupReport
    from pyxinetd.log import ProgramLog

def serve(args: Sequence[str]) -> int:
    """Run the daemon with xinetd's command line; return the exit status.

    Without -d/-dontfork the daemon detaches, and this returns (in the foreground
    process) 0 once it serves or 1 with the reason on stderr (see daemonize.py).
    """
    from pyxinetd.errors import ConfigError
    from pyxinetd.pidfile import lock_holder, locked_message

    from pyxinetd.process import wait_for_own_children
    from pyxinetd.signals import hold_until_installed

    # First: a reload or dump asked for while the configuration loads must not kill.
    hold_until_installed()
    _restore_standard_streams()
    # Before the first child (the configuration loader, the detaching fork).
    wait_for_own_children()
    try:
        options, seen, warnings = parse_serving_args(args)
    except UsageError as err:
        _tell(f"pyxinetd: {err}")
        _tell(USAGE)
        return 1
    for text in warnings:
        _tell(text)
    if "-version" in seen:
        _tell(f"{version_text()} {COMPILED_OPTIONS}")
        return 0
    # The code this daemon runs, before any more of it is read from disk: a reload
    # refuses to mix it with files an upgrade puts in its place (pyxinetd.installation).
    record_installation()
    # The detached daemon works from `/`: relative paths are taken from here, now.
    here = current_folder()
    unplaced = environment_paths_from_here(here)
    if unplaced is not None:
        _tell(f"pyxinetd: {unplaced}={os.environ[unplaced]} is a relative path, and the "
              "folder it would be taken from was removed: give an absolute path")
        return 1
    options = replace(
        options, config_path=from_here(options.config_path, here),
        filelog=None if options.filelog is None else from_here(options.filelog, here),
        pidfile=None if options.pidfile is None else from_here(options.pidfile, here),
        dump_file=from_here(dump_path(), here))
    detach = not (options.debug or options.dontfork)
    lost_pidfile = None
    if detach and options.pidfile and not os.path.isabs(options.pidfile):
        # Still relative: this folder was removed, and nothing can be created in it any
        # more (a foreground daemon's open fails there, as xinetd's does). The detached
        # daemon, working from `/`, would take the name for another file: it gets none.
        lost_pidfile, options = options.pidfile, replace(options, pidfile=None)
    # The environment servers get is the one the daemon was started with: not the
    # LC_CTYPE the interpreter itself may have added (pyxinetd.process).
    drop_coerced_locale()
    # Read (and removed, so servers never inherit it) before the configuration's
    # environment is taken: the service manager's socket, if any (pyxinetd.notify).
    notify_target = take_from_environment(os.environ)
    # Likewise the sockets of systemd's socket activation (pyxinetd.handover); only a
    # daemon that stays in the foreground is the process they were passed to.
    handed_over = take_handed_over(os.environ, None if not detach else -1)
    if not detach:
        # Detaching closes them too (pyxinetd.daemonize), in the daemon.
        close_inherited_descriptors(keep=handed_over.descriptors())

    if detach and options.filelog:
        stream = standard_stream_behind(options.filelog)
        if stream is not None:
            _tell(f"pyxinetd: -filelog {options.filelog} is this command's {stream}, which "
                  "the detached daemon does not keep (its descriptors 0-2 are /dev/null): "
                  "its program log is lost; -dontfork keeps it")

    if options.pidfile is not None:
        # A courtesy check before anything is loaded or bound; the lock taken by the
        # serving process is what actually keeps a second daemon out.
        holder = lock_holder(options.pidfile)
        if holder is not None:
            _tell(f"pyxinetd: {locked_message(options.pidfile, holder)}")
            return 1

    syslog = SyslogSender()
    try:
        program, bad_facility = _open_program_log(options, syslog)
    except OSError as err:
        _tell(f"pyxinetd: msg_init failed: can't open log file ({err.strerror})")
        return 1
    try:
        from pyxinetd.config.isolated import load_isolated as load

        config = load(options.config_path, inetd_compat=options.inetd_compat)
    except (ConfigError, OSError, ImportError) as err:
        # xinetd's two lines: the reason, then the CRITICAL line word for word.
        program.error("cnf_init" if not isinstance(err, ImportError) else "init_services",
                      str(err))
        _exiting()
        program.critical("init_services", "couldn't get configuration. Exiting...")
        program.close()
        syslog.close()
        if detach:
            _tell(f"pyxinetd: couldn't get configuration ({err})")
        return 1
    if not detach:
        try:
            return _run_master(config, options, program, syslog, bad_facility,
                               notify_target=notify_target, handed_over=handed_over)
        finally:
            program.close()

    # The detached daemon opens its own log, so that lines carry its pid.
    program.close()
    syslog.close()
    return _start_detached(config, options, notify_target, lost_pidfile)


def _tell(text: str) -> None:
    """One line on stderr for whoever runs the start command.

    A stderr nobody can read any more (a pipe whose reader has exited, a terminal that
    hung up) must not change what the command does: the daemon starts or not, with the
    same exit status, as xinetd's does whatever its fprintf calls return. The line is
    lost, and fd 2 is pointed at /dev/null so that later lines, and the interpreter's
    final flush of what the failed write left buffered, are lost quietly too rather
    than turning the exit status into 120."""
    try:
        click.echo(text, err=True)
    except OSError:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        os.dup2(null, 2)
        os.close(null)


def _exiting() -> None:
    """The exit status is decided: a signal arriving from now on (an init system's
    SIGTERM once the failure is logged) must not turn it into a death by that signal.
    xinetd is gone by the time it could arrive."""
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
                   signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)


def _restore_standard_streams() -> None:
    """Started with fd 0, 1 or 2 closed: put /dev/null there (as xinetd does first
    thing) and give Python a stream for it, which it left as None."""
    from pyxinetd.process import open_missing_standard_fds

    for fd in open_missing_standard_fds():
        name = ("stdin", "stdout", "stderr")[fd]
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False,
                                    encoding="utf-8", errors="backslashreplace"))


def _open_program_log(options: MasterOptions, syslog: SyslogSender, *,
                      reporting: bool = False) -> tuple[ProgramLog, str | None]:
    """The program log the options ask for; also returns an unknown -syslog facility."""
    from pyxinetd.config.logvalues import SYSLOG_FACILITIES
    from pyxinetd.daemonize import ReportingProgramLog
    from pyxinetd.log import ProgramLog

    kind = ReportingProgramLog if reporting else ProgramLog
    bad_facility = None
    if options.filelog is not None:
        return kind.to_file(options.filelog, debug=options.debug), None
    if options.syslog_facility is not None:
        facility = options.syslog_facility.lower()
        # xinetd's table, the one `log_type = SYSLOG` takes: no kern, syslog or cron,
        # facilities that belong to the kernel, the syslog daemon and cron.
        if facility not in SYSLOG_FACILITIES:
            bad_facility, facility = options.syslog_facility, "daemon"
        # -d -syslog: the debug lines go to syslog too (at LOG_DEBUG), for journald and
        # the like; xinetd sends them to /dev/tty whatever -syslog says.
        return kind.to_syslog(syslog, facility, debug=options.debug), bad_facility
    if options.debug or options.dontfork:
        return kind.to_stderr(debug=options.debug), None
    return kind.to_syslog(syslog, "daemon"), None


def _run_master(config: Configuration, options: MasterOptions, program: ProgramLog,
                syslog: SyslogSender, bad_facility: str | None,
                report: StartupReport | None = None, *,
                notify_target: NotifyTarget | None = None,
                handed_over: HandedOver | None = None) -> int:
    """Serve (in the process that serves: foreground, or detached); return the status.

    The master closes `syslog` when it shuts down.
    """
    from pyxinetd.errors import SetupError
    from pyxinetd.log import strerror
    from pyxinetd.master import Master
    from pyxinetd.pidfile import PidFile, PidFileError

    if bad_facility is not None:
        program.error("parse_args", f"Bad syslog facility: {bad_facility}")
    pidfile = PidFile(options.pidfile) if options.pidfile is not None else None

    def acquire_pidfile() -> None:
        assert pidfile is not None
        try:
            pidfile.acquire()
        except PidFileError as err:
            if not err.locked:
                # As xinetd (which says so only at DEBUG level): a pidfile that cannot
                # be written is no reason to leave the services unserved. Only a lock
                # held by another daemon, which serves them already, stops the start.
                program.error("main", f"{err}; serving without a pidfile")
                return
            program.critical("main", f"{err}. Exiting...")
            if report is None:
                _tell(f"pyxinetd: {err}")
            raise

    try:
        notifier = Notifier(notify_target,
                            lambda text: program.warning("sd_notify", text))
        try:
            master = Master(config, options, program_log=program, syslog=syslog,
                            notifier=notifier, handed_over=handed_over)
        except SetupError as err:
            # As xinetd, whose signal pipe fails the same way under a tiny `ulimit -n`:
            # one CRITICAL line and status 1 (a detached start prints it on stderr).
            program.critical("init_common",
                             f"cannot create {err.what}: {strerror(err.cause)}. Exiting...")
            syslog.close()
            return 1
        if report is not None:
            master.on_started = report.ready
        if pidfile is not None:
            # Written once the signal handlers are in place: a SIGHUP or SIGTERM sent
            # to the pid as soon as the file names it is handled, never fatal.
            master.on_signals_installed = acquire_pidfile
        try:
            status = master.run()
        except PidFileError:
            status = 1
    finally:
        # Removed on every exit of a serving daemon: SIGTERM/SIGQUIT, no services, -d's SIGINT.
        if pidfile is not None:
            pidfile.release()
    # The waiting lines get what the master's own logs left of the exit's time. (After
    # an unexpected error the caller logs it, then closes.)
    program.close(flush_for=master.flush_time_left())
    return status


def _start_detached(config: Configuration, options: MasterOptions,
                    notify_target: NotifyTarget | None, lost_pidfile: str | None) -> int:
    from pyxinetd.daemonize import ReportingProgramLog, start_detached

    def serve_detached(report: StartupReport) -> int:
        syslog = SyslogSender()
        try:
            program, bad_facility = _open_program_log(options, syslog, reporting=True)
        except OSError as err:
            report.message(f"msg_init failed: can't open log file ({err.strerror})")
            return 1
        assert isinstance(program, ReportingProgramLog)
        program.report = report
        if lost_pidfile is not None:
            program.error("main", f"cannot open pidfile {lost_pidfile}: "
                                  f"{os.strerror(errno.ENOENT)}; serving without a pidfile")
        try:
            return _run_master(config, options, program, syslog, bad_facility, report,
                               notify_target=notify_target)
        except Exception as err:
            # stderr is /dev/null from here on: the program log is the only witness.
            program.critical("main", f"unexpected error: {err!r}. Exiting...")
            raise
        finally:
            program.close()

    try:
        outcome = start_detached(serve_detached)
    except KeyboardInterrupt:
        return 1
    except OSError as err:
        _tell(f"pyxinetd: cannot detach: {err.strerror}")
        return 1
    for text in outcome.messages:
        _tell(text if text.startswith("pyxinetd") else f"pyxinetd: {text}")
    if outcome.interrupted:
        # Only this command was interrupted: the daemon, in its own session, goes on,
        # and saying nothing would leave a serving daemon that looks like a failed start.
        daemon = f"the daemon (pid {outcome.pid})" if outcome.pid is not None else "the daemon"
        _tell(f"pyxinetd: interrupted before {daemon} reported that it serves; it goes "
              "on starting on its own (see the program log)")
        return 130
    if outcome.ready:
        return 0
    if outcome.timed_out:
        pid = f" (pid {outcome.pid})" if outcome.pid is not None else ""
        _tell(f"pyxinetd: the daemon{pid} did not report that it serves within "
              f"{READY_TIMEOUT:.0f} s")
    elif not outcome.messages:
        _tell("pyxinetd: the daemon exited before serving; see the program log")
    return 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Without a command, serve: " + SYNOPSIS)
def cli() -> None:
    """pyxinetd: the Internet super-daemon, compatible with xinetd."""


@cli.command()
@click.option("-f", "--file", "config_file", default=DEFAULT_CONFIG, show_default=True,
              metavar="FILE", help="Configuration file to check.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/check-json.md).")
@click.option("--inetd-compat", is_flag=True,
              help="Also read inetd.conf, as the daemon's -inetd_compat does.")
@click.option("--inetd-conf", "inetd_conf", metavar="PATH",
              help="The inetd.conf to read (default /etc/inetd.conf); implies --inetd-compat.")
@click.option("--daemon-options", "daemon_options", metavar="OPTIONS",
              help="The daemon's own options (as in XINETD_OPTS): their -f and -inetd_compat "
                   "name what is checked, and status 2 also says the daemon would not start "
                   "(bad options, a -filelog it cannot open, or no service without "
                   "-stayalive or -dontfork).")
def check(config_file: str, as_json: bool, inetd_compat: bool, inetd_conf: str | None,
          daemon_options: str | None) -> None:
    """Load the configuration, print what would be served and every diagnostic."""
    from pyxinetd.check import STATUS_UNREADABLE, run_check

    keeps_running = True
    if daemon_options is not None:
        # Split as the shell splits an unquoted $XINETD_OPTS: at blanks and newlines
        # only (str.split() would also split at a no-break space, which the shell
        # leaves inside a word).
        words = [word for word in re.split(r"[ \t\n]+", daemon_options) if word]
        try:
            options, seen, _ = parse_serving_args(words)
        except UsageError as err:
            click.echo(f"pyxinetd: {err}", err=True)
            sys.exit(STATUS_UNREADABLE)
        if "-version" in seen:
            click.echo("pyxinetd: -version: the daemon prints its version and exits", err=True)
            sys.exit(STATUS_UNREADABLE)
        if options.filelog is not None:
            from pyxinetd.files import append_problem

            # The daemon's first step after its options: without its log it exits 1.
            problem = append_problem(options.filelog)
            if problem is not None:
                click.echo(f"pyxinetd: msg_init failed: can't open log file ({problem})",
                           err=True)
                sys.exit(STATUS_UNREADABLE)
        config_file = options.config_path
        inetd_compat = inetd_compat or options.inetd_compat
        keeps_running = options.keeps_running_without_services
    # A file named on the command line is meant to be checked, never silently skipped.
    output, status = run_check(config_file, as_json=as_json,
                               inetd_compat=inetd_compat or inetd_conf is not None,
                               inetd_path=inetd_conf or "/etc/inetd.conf",
                               needs_service=not keeps_running)
    click.echo(output, nl=not output.endswith("\n"))
    sys.exit(status)


@cli.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--daemon-dir", metavar="DIR",
              help="Folder of the daemons tcpd entries name without a path (itox -daemon_dir).")
def convert(file: str | None, daemon_dir: str | None) -> None:
    """Write xinetd service blocks for the inetd.conf FILE (default: standard input).

    Lines that cannot be converted are reported on stderr and left commented out;
    the exit status is then 1.
    """
    from pyxinetd.convert import convert as convert_text

    name = "<stdin>" if file in (None, "-") else file
    try:
        with click.open_file(file or "-", "rb") as handle:
            data = handle.read()
    except OSError as err:
        click.echo(f"pyxinetd convert: cannot read {name}: {err.strerror}", err=True)
        sys.exit(2)
    result = convert_text(data.decode("utf-8", errors="surrogateescape"), name,
                          daemon_dir=daemon_dir)
    sys.stdout.buffer.write(result.text.encode("utf-8", errors="surrogateescape"))
    sys.stdout.flush()
    for problem in result.problems():
        click.echo(problem, err=True)
    sys.exit(1 if result.skipped else 0)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] in cli.commands or args[0] in ("-h", "--help")):
        from pyxinetd.signals import release_hold

        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            # A Ctrl-C ends a command that does not serve as its default action does
            # (killed by SIGINT), whenever it comes: click would turn one that reaches
            # the command into `Aborted!` and status 1, which for `check` says errors
            # were found. Set before the release, so a held one ends it the same way.
            # Inherited as ignored (a background job), it stays ignored.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        release_hold()  # held by `python3 -m pyxinetd` for a daemon; this is none
        cli(args, prog_name="pyxinetd")
        return
    sys.exit(serve(args))


__all__ = ["main", "cli", "serve", "parse_serving_args", "XINETD_COMPAT_VERSION", "__version__"]
