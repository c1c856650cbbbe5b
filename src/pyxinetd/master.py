"""The master: start-up, the serving loop, signals, reaping, shutdown.

Read top to bottom, this is the daemon's lifecycle (reference §4.1):
prepare the process -> install signals -> bind every service (retries are timers) ->
`Started working: N available services` -> serve until a terminating signal ->
close everything and return an exit status to the CLI, the only place that exits.

Everything runs on one thread and one Loop. Signal handlers only record; the
actions below run from the loop, one table mapping each signal to its action.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pyxinetd import XINETD_COMPAT_VERSION, __version__, faultsignals, redirect, rpc
from pyxinetd.activation import Activations
from pyxinetd.backlog import FLUSH_ON_CLOSE
from pyxinetd.children import ChildTable, ExitStatus, reap
from pyxinetd.config.model import Configuration, ServiceConfig
from pyxinetd.dispatch import Dispatcher
from pyxinetd.log import ProgramLog, SyslogSender, internal_error_text
from pyxinetd.servicelog import ServiceLogs, exit_entry, whole_seconds
from pyxinetd.loop import Loop
from pyxinetd.handover import HandedOver
from pyxinetd.internals import Internals
from pyxinetd.notify import Notifier
from pyxinetd.process import prepare_process
from pyxinetd.reconfig import Reconfigurer
from pyxinetd.service import Event, Limits, ServiceRuntime, State
from pyxinetd.signals import (CONSISTENCY_SIGNAL, DUMP_SIGNAL, IGNORED_SIGNALS,
                              INTERRUPT_SIGNAL, QUICK_EXIT_SIGNAL, RECONFIG_SIGNALS,
                              REAP_SIGNAL, TERMINATE_SIGNAL, TTY_SIGNALS, SignalWakeup)
from pyxinetd.timers import Clock

DEFAULT_CONFIG = "/etc/xinetd.conf"
# The features word of xinetd's start-up line (TCP Wrappers is built in: pyxinetd.access).
COMPILED_OPTIONS = "libwrap loadavg"
# Signals xinetd ignores. A recording handler (reset to default by exec) is used
# instead of SIG_IGN, which servers would inherit across exec.


def version_text() -> str:
    return f"pyxinetd {__version__} (compatible with xinetd {XINETD_COMPAT_VERSION})"


@dataclass(frozen=True)
class MasterOptions:
    """The command line as the master needs it (reference §6.6)."""

    config_path: str = DEFAULT_CONFIG
    debug: bool = False
    dontfork: bool = False
    stayalive: bool = False
    process_limit: int | None = None
    logprocs: int = 15
    cc_interval: int | None = None
    inetd_compat: bool = False
    pidfile: str | None = None
    filelog: str | None = None
    syslog_facility: str | None = None
    # The SIGUSR1 dump file, absolute; None: $PYXINETD_DUMP_FILE or the default, as
    # the master finds it (cli.py resolves it before the daemon changes to `/`).
    dump_file: str | None = None

    @property
    def keeps_running_without_services(self) -> bool:
        # -dontfork implies -stayalive (reference §6.6).
        return self.stayalive or self.dontfork


class Master:
    """Owns the loop, the signal wakeup, the services, the children and the logs."""

    def __init__(self, config: Configuration, options: MasterOptions, *,
                 program_log: ProgramLog | None = None, syslog: SyslogSender | None = None,
                 clock: Clock = time.monotonic, notifier: Notifier | None = None,
                 handed_over: HandedOver | None = None) -> None:
        self.config = config
        self.options = options
        self.syslog = syslog or SyslogSender()
        # The state dump and the consistency check (its dump path is taken now,
        # before the daemon changes to `/`).
        self.internals = Internals(self, version_text())
        self.program = program_log or ProgramLog.to_stderr(debug=options.debug)
        # The service manager's view of the daemon (sd_notify), a no-op without one.
        self.notifier = notifier or Notifier()
        self.loop = Loop(clock)
        self.loop.on_error = self._internal_error
        # Syslog messages the syslog daemon had no room for are sent from the loop, and
        # so are the lines a program log's reader had no room for.
        self.syslog.attach(self.loop)
        self.program.attach(self.loop)
        # A host without a syslog daemon keeps the syslog lines waiting: the program log
        # says so, once per outage, unless it is syslog itself (which would only wait too).
        if not self.program.writes_to_syslog:
            self.syslog.on_unreachable = lambda text: self.program.warning("syslog", text)
            self.syslog.on_reached = lambda text: self.program.notice("syslog", text)
        self.children = ChildTable()
        self.logs = ServiceLogs(self.program, self.syslog)
        self.logs.attach(self.loop)
        self.services: list[ServiceRuntime] = [ServiceRuntime(s, clock)
                                               for s in config.services]
        self.dispatcher = Dispatcher(self.loop, self.children, self.program, self.logs,
                                     Limits(options.process_limit),
                                     as_root=os.geteuid() == 0,
                                     services=lambda: self.services)
        # Sockets the service manager bound for us (pyxinetd.handover): the services
        # whose sockets they are serve on them instead of binding.
        self.handed_over = handed_over or HandedOver()
        self.handed_over.attach(self.loop, lambda text: self.program.error("handover", text))
        self.dispatcher.handed_over = self.handed_over
        # -logprocs: the most ident lookups after refusals at once (pyxinetd.userid).
        self.dispatcher.userid.logprocs = options.logprocs
        self.signals = SignalWakeup(self.loop, self._signal_table())
        # Portmapper registrations of RPC services (pyxinetd.rpc).
        self.rpc = rpc.RpcRegistry(self.loop, self.program)
        self.dispatcher.suspend.on_cps_closed = self.rpc.unregister
        self.dispatcher.suspend.on_cps_reopened = self.rpc.follow
        self._pending_binds = 0
        # Binds, RPC registrations and services waiting for their address.
        self.activations = Activations(self.loop, self.program, self.dispatcher, self.rpc,
                                       lambda: self.services)
        self.reconfig = Reconfigurer(self)
        self._reload_requested = False
        self.started = False
        self.exit_status = 0
        # Set by shutdown(): when the lines still waiting for a log's reader are given
        # up. One deadline for every outlet, the program log's included (flush_time_left).
        self._flush_deadline: float | None = None
        self.loop_should_stop = False
        self._exiting = False
        self._serving_stopped = False
        # As process 1 (a container's init) the daemon inherits every orphan of its
        # namespace; reaping those is its job, not an error.
        self._adopts_orphans = os.getpid() == 1
        # Called once, when `Started working` is logged and the daemon stays up
        # (the detached start command waits for it).
        self.on_started: Callable[[], None] | None = None
        # Called once the signal handlers are installed, before any service is bound:
        # where the CLI writes the pidfile, so that a signal sent to the pid it names
        # is always handled (xinetd installs its handlers before writing the file).
        # An exception raised here ends the start-up.
        self.on_signals_installed: Callable[[], None] | None = None

    def _internal_error(self, what: str, exc: Exception) -> None:
        """A bug reached the loop: say where, in one line, and keep serving."""
        self.program.error("internal_error", internal_error_text(what, exc))
        for line in traceback.format_exception(exc):
            for part in line.rstrip().splitlines():
                self.program.debug("internal_error", part)

    # -- lifecycle, in order -------------------------------------------------
    def run(self) -> int:
        """Serve until a terminating signal; return the exit status."""
        try:
            self.start()
            if not self.loop_should_stop:
                self.loop.run()
        finally:
            self.shutdown()
        return self.exit_status

    def start(self) -> None:
        prepare_process()
        self.signals.install()
        if self.on_signals_installed is not None:
            self.on_signals_installed()
        self.notifier.start_watchdog(self.loop)
        for diagnostic in self.config.diagnostics:
            self.program.diagnostic(diagnostic)
        for problem in self.handed_over.problems:
            self.program.warning("init_services", problem)
        # Redirect targets are looked up now, so no connection ever waits for DNS.
        for service_id, error in redirect.resolve_targets(self.config.services).items():
            self.program.error("init_services", f"{service_id}: redirect target {error}")
        # Before any service is watched: binds retry from timers and RPC services wait
        # for the portmapper, while the services bound already serve, and their
        # servers must find / as their working directory, as xinetd's (which binds
        # with blocking retries and only then chdir's) do.
        os.chdir("/")
        # Held while binding starts: a bind that succeeds at once must not announce
        # `Started working` before the other services were even tried.
        self._pending_binds += 1
        # Every bind, the start-up's too, leaves the serving services descriptors for
        # their clients (and a reload its loader's pipe): with more services than the
        # limit allows, binding until socket() failed left none, and no service could
        # accept a client (xinetd keeps a reserve too: `Maximum number of services
        # reached`).
        self.activations.keep_reserve = True
        for rt in self.services:
            self.warn_if_ids_ignored(rt.config)
            self._pending_binds += 1
            self.activations.start(rt, self._bind_done)
        self._bind_done()
        if self.options.cc_interval:
            self.internals.schedule_consistency_check()

    def warn_if_ids_ignored(self, svc: ServiceConfig) -> None:
        if os.geteuid() != 0 and (svc.user is not None or svc.group is not None):
            self.program.warning("init_services",
                                 f"{svc.id}: not running as root, user and group ignored")

    def _bind_done(self) -> None:
        self._pending_binds -= 1
        if self._pending_binds == 0 and not self.started:
            self._started_working()

    def _started_working(self) -> None:
        self.started = True
        for unclaimed in self.handed_over.unclaimed():
            self.program.warning("init_services",
                                 f"no service listens on the socket the service manager "
                                 f"passed as {unclaimed}; it is kept for a reload")
        available = self.available_count()
        stays = (available > 0 or self.options.keeps_running_without_services
                 or self.has_waiting_services())
        if not stays:
            # As xinetd, which gives up in init_services, before its start-up lines: a
            # `Started working: 0 available services` would read as a daemon that runs.
            self.program.critical("init_services", "no services. Exiting...")
            self.stop(1)
            return
        self.program.notice("main",
                            f"{version_text()} started with {COMPILED_OPTIONS} options "
                            f"compiled in.")
        plural = "service" if available == 1 else "services"
        self.program.notice("main", f"Started working: {available} available {plural}")
        if self.on_started is not None:
            self.on_started()
        self.notifier.ready(f"Started working: {available} available {plural}")
        if self._reload_requested:
            self.reload()

    def available_count(self) -> int:
        """The services with a socket of their own, as xinetd counts them: a TCPMUX
        service is reached through tcpmux's socket and does not count."""
        return sum(1 for rt in self.services
                   if rt.state in (State.ACTIVE, State.SUSPENDED_WAIT, State.SUSPENDED_CPS)
                   and not rt.config.is_tcpmux_client)

    def has_waiting_services(self) -> bool:
        """Whether a service waits for its address or for descriptors: it will serve
        once it has them, so it keeps a daemon without -stayalive running, at start-up
        and after a reload (xinetd gives up on such a service, and then exits without
        services)."""
        return any(rt.state in (State.AWAITING_ADDRESS, State.AWAITING_RESOURCES)
                   for rt in self.services)

    def stop(self, status: int) -> None:
        self.notifier.stopping("Exiting")
        # Now, not at shutdown: the loop's turn that took the signal still runs its
        # due timers, and a bind retry among them logged its lines after `Exiting...`
        # (or, its last attempt failing, a `Started working` for a daemon that exits).
        self.activations.close()
        self.exit_status = status
        self.loop_should_stop = True
        self.loop.stop()

    @property
    def stopping(self) -> bool:
        """The daemon has begun to exit (SIGTERM, SIGQUIT, no services left)."""
        return self._exiting or self.loop_should_stop

    def stop_serving(self) -> None:
        """Close every listener, session and waiting request, and kill a configuration
        load still running; servers keep running, as with xinetd. Done once."""
        if self._serving_stopped:
            return
        self._serving_stopped = True
        self.reconfig.close()
        self.activations.close()
        self.dispatcher.close_all()
        for rt in self.services:
            self.dispatcher.close_listener(rt)
            if rt.state is not State.STOPPED:
                rt.transition(Event.STOP)

    def shutdown(self) -> None:
        """Close every socket and session; servers keep running, as with xinetd.

        The process is expected to exit afterwards: the handled signals stay ignored."""
        self.stop_serving()
        # Registrations still there (an early stop): the UNSET calls are sent, unanswered.
        self.rpc.unregister_all(lambda: None)
        self.rpc.close()
        self.handed_over.close()
        # From here the process only exits: a late signal must not change its status.
        self.signals.close(exiting=True)
        # The outlets share FLUSH_ON_CLOSE: each having its own would add up, and keep
        # an init system's stop waiting three times as long.
        self._flush_deadline = time.monotonic() + FLUSH_ON_CLOSE
        self.logs.close(flush_for=self.flush_time_left())
        self.syslog.close(flush_for=self.flush_time_left())
        self.notifier.close()
        self.loop.close()

    def flush_time_left(self) -> float:
        """What is left of the exit's time for waiting log lines (all of it before
        shutdown), for the program log, which its owner closes after the master."""
        if self._flush_deadline is None:
            return FLUSH_ON_CLOSE
        return max(0.0, self._flush_deadline - time.monotonic())

    # -- signals -----------------------------------------------------------
    def _signal_table(self) -> dict[int, Callable[[], None]]:
        table: dict[int, Callable[[], None]] = {
            TERMINATE_SIGNAL: self.terminate,
            QUICK_EXIT_SIGNAL: self.quick_exit,
            INTERRUPT_SIGNAL: self.interrupt,
            REAP_SIGNAL: self.reap_children,
            DUMP_SIGNAL: self.internals.dump,
            CONSISTENCY_SIGNAL: self.internals.consistency_check,
        }
        for signum in RECONFIG_SIGNALS:
            table[signum] = self.reload
        # With -d, xinetd names each signal with a role as its loop takes it, so a
        # debugging administrator sees which signal did what (SIGINT ends it at once).
        for role, action in list(table.items()):
            if role != INTERRUPT_SIGNAL:
                table[role] = self._announced(role, action)
        for signum in IGNORED_SIGNALS:
            if self.options.debug and signum in TTY_SIGNALS:
                continue
            table.setdefault(signum, _ignore)
        # Fault signals sent with kill(1), as xinetd takes them: SIGSEGV and SIGBUS
        # logged, the others ignored (installed only where the guard that lets a real
        # fault crash is available: pyxinetd.faultsignals).
        for signum in faultsignals.LOGGED:
            table[signum] = partial(self._unexpected_signal, signum)
        for signum in faultsignals.IGNORED:
            table[signum] = _ignore
        return table

    def _unexpected_signal(self, signum: int) -> None:
        self.program.critical("general_handler", f"({os.getpid()}) "
                              f"{faultsignals.unexpected_signal_text(signum)}")

    def _announced(self, signum: int, action: Callable[[], None]) -> Callable[[], None]:
        def announce_then_act() -> None:
            # Not once the daemon exits: xinetd exits from the handler that logs
            # `Exiting...` and names no signal after it (those that came with it, or
            # during the RPC services' unregistering, act on nothing now).
            if self.program.debug_mode and not self.stopping:
                self.program.debug("check_pipe",
                                   f"Got signal {signum} ({signal.strsignal(signum)})")
            action()
        return announce_then_act

    def terminate(self) -> None:
        """SIGTERM: RPC servers get SIGKILL (reference §6.1), then quick_exit()."""
        if self.stopping:
            return
        # Those a reload is ending get their SIGKILL from quick_exit(), once.
        terminating = self.reconfig.terminations.is_terminating
        rpc.kill_servers([c for c in self.children if not terminating(c)], self.program)
        self.quick_exit()

    def quick_exit(self) -> None:
        """SIGQUIT: exit 0 once the RPC services are unregistered; no server is signalled.

        Unregistering takes a portmapper exchange (seconds, if it does not answer),
        during which the loop still turns; xinetd blocks in it and serves nothing more.
        So serving stops first: no connection is accepted (an RPC server started then
        would escape the SIGKILL above), and a reload, a dump or a second SIGTERM sent
        meanwhile does nothing (see `stopping`)."""
        if self.stopping:
            return
        self._exiting = True
        self.program.warning("quit_program", "Exiting...")
        self.stop_serving()
        self.rpc.unregister_all(lambda: self.stop(0))

    def interrupt(self) -> None:
        """SIGINT is ignored, except in -d mode where it ends the daemon (status 1)."""
        if self.options.debug and not self.stopping:
            self.program.warning("quit_program", "Exiting...")
            # Now, as SIGTERM does: the rest of the loop's turn that took the signal
            # accepted the connections queued on a listener (servers forked, START
            # lines) and judged the requests whose names had just come back, all
            # after `Exiting...`; xinetd exits from its handler.
            self.stop_serving()
            self.stop(1)

    def reload(self) -> None:
        """SIGHUP/SIGUSR2: read the configuration again and apply the difference."""
        if self.stopping:
            return
        if not self.started:
            # Binds of the start-up are still settling; reload once they are.
            self._reload_requested = True
            return
        self._reload_requested = False
        self.reconfig.reload()

    # -- children ----------------------------------------------------------
    def reap_children(self) -> None:
        """Collect every exited child; log EXIT; let its service resume."""
        for pid, status in reap():
            # A server first: that is almost every child reaped.
            child = self.children.pop(pid)
            if child is None:
                if self.reconfig.claim(pid, status):
                    continue    # the reload's configuration loader
                if self.dispatcher.access.resolver.reaped(pid):
                    continue    # the name resolver helper; restarted when needed
                if self._adopts_orphans:
                    self.program.debug("child_exit", f"reaped orphaned process {pid}")
                else:
                    # NOTICE, as xinetd's child_exit() logs it.
                    self.program.notice("child_exit", f"unknown child process {pid} died")
                continue
            svc: ServiceConfig = child.service
            if svc.log_type is not None:
                duration = whole_seconds(child.started_at, self.loop.clock() - child.start_time)
                self.logs.write(svc, exit_entry(svc, pid, status.as_pair(), duration))
            if child.on_reap is not None:
                child.on_reap(child, status)


def _ignore() -> None:
    """Signals xinetd ignores still need a handler so they wake nothing and kill nothing."""


__all__ = ["Master", "MasterOptions", "version_text", "ExitStatus"]

