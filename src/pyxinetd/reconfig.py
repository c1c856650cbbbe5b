"""Applying a reconfiguration (SIGHUP, SIGUSR2) to the running master.

Parse, validate, diff, apply; never die on bad input (reference §6.2, §1.8):

1. load the whole configuration again from the main file given at start-up (its
   absolute path: the daemon has chdir'ed to /), in a loader child whose result the
   loop picks up when it arrives (pyxinetd.configload): serving goes on meanwhile, and
   a reload asked for during a load runs once that load is applied. An unreadable main file changes
   nothing: `reconfiguration failed`. Anything else wrong in the text was turned into
   diagnostics by the loader, logged here with file:line as at start-up; only the
   services it concerns are missing from the new configuration. A bad value in
   `defaults` is reported and ignored (xinetd exits with status 0 there).
2. swap in the new configuration, close the service log files (they reopen on the
   next write: this is how logs are rotated), resolve redirect targets again;
3. diff (pyxinetd.reload) and apply:
   - removed services: listener closed, in-loop sessions and the requests still
     waiting for a check (pyxinetd.waiting) closed, servers sent SIGTERM
     now and SIGKILL from a timer after a grace period if still alive; their reaping
     is logged as usual, with the configuration they were started with;
   - kept services whose socket is unchanged: the log file is opened again (one that
     cannot be created drops the service as a removal, as xinetd's readjust() does);
     the new attributes replace the old ones
     for future requests; listener, running servers, wait suspension and a pending cps
     re-activation carry on untouched. The running servers, sessions and waiting
     requests of every kept service are its own under the new configuration (they
     count toward it, their EXIT is logged with it, a later removal finds them);
   - kept services whose socket changed: the old listener is closed and a new one
     bound (retries as at start-up); servers holding the old socket (wait = yes) are
     terminated as for a removal, the others finish their connection; requests held
     for a fork retry end with `FAIL: ID fork` (pyxinetd.forkretry); dgram wait = no
     servers keep their client, their replies leaving from the new socket;
   - new services are bound;
   - the running servers and in-loop sessions of every kept service are checked again
     against its new access_times, only_from/no_access and instances, as xinetd's
     manual promises (pyxinetd.recheck); those that fail are ended like the servers of
     a removed service (pyxinetd.rechecks);
4. once every bind has settled: `Reconfigured: new=N old=N dropped=N (services)`, and
   without -stayalive/-dontfork, no available service left means exit 1.

xinetd sends SIGKILL at once to the external servers of a removed service (SIGTERM to
internal ones) and then blocks about 0.5 s per server; here every server gets SIGTERM
first and the escalation is a timer, so the loop never waits (pyxinetd.terminations).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyxinetd import redirect, spawner
from pyxinetd.children import ExitStatus
from pyxinetd.config.isolated import LoaderFailed
from pyxinetd.config.model import Configuration, ServiceConfig
from pyxinetd.configload import Outcome, PendingLoad, load_timeout
from pyxinetd.errors import ConfigError
from pyxinetd.listener import readjust_options
from pyxinetd.log import strerror
from pyxinetd.portholders import PortHolders
from pyxinetd.rechecks import Rechecks
from pyxinetd.reload import Change, diff_services
from pyxinetd.service import Event, ServiceRuntime, State
from pyxinetd.terminations import Terminations

if TYPE_CHECKING:
    from pyxinetd.master import Master

# Runtimes in these states take part in the diff; FAILED ones, and those waiting for
# their address, are retried as new.
_LIVE = (State.STARTING, State.ACTIVE, State.SUSPENDED_WAIT, State.SUSPENDED_CPS)
# Why the clients a removal closes are closed (their WARNING).
REMOVED = "a reload removed the service"


class Reconfigurer:
    """Runs the reloads of one master."""

    def __init__(self, master: Master) -> None:
        self.master = master
        # The file the running configuration was read from, made absolute now: the
        # master chdir's to / once it has started.
        self.path = os.path.abspath(master.config.path)
        # Servers sent SIGTERM and not yet past their SIGKILL timer.
        self.terminations = Terminations(master)
        # Ports still held by terminated wait = yes servers: binds wait for them.
        self._holders = PortHolders(master)
        # The running servers and sessions of kept services, checked again.
        self._rechecks = Rechecks(master, self.terminations)
        # The load in progress, and whether another reload was asked for meanwhile.
        self._load: PendingLoad | None = None
        self._again = False
        # Loads given up on (their deadline passed) whose child is not reaped yet.
        self._abandoned: list[PendingLoad] = []

    # -- 1. load -----------------------------------------------------------------
    def reload(self) -> None:
        """Start loading the configuration beside the loop; apply it when it arrives.

        A request while a load runs is remembered, and one more load runs after it
        (further requests coalesce into that one): a change written during the load is
        never missed."""
        if self._load is not None:
            self._again = True
            return
        m = self.master
        m.program.notice("hard_reconfig", "Starting reconfiguration")
        m.notifier.reloading()
        self._load = PendingLoad(m.loop, self.path, self._loaded, timeout=load_timeout(),
                                 inetd_compat=m.options.inetd_compat)

    def _loaded(self, outcome: Outcome) -> None:
        if self._load is not None and not self._load.reaped:
            self._abandoned.append(self._load)
        self._load = None
        m = self.master
        if m.stopping:
            # Delivered in the turn the daemon began to exit: too late to apply (the
            # servers of removed services would be signalled, new services bound).
            return
        if isinstance(outcome, LoaderFailed):
            m.program.error("hard_reconfig", f"{outcome}; the running configuration is kept")
            m.program.warning("hard_reconfig", "reconfiguration failed")
            m.notifier.ready(f"reconfiguration failed ({outcome}); the running "
                             f"configuration is kept")
        elif isinstance(outcome, Exception):
            # xinetd names the function that failed to read the file (its -d format).
            unreadable = isinstance(outcome, (ConfigError, OSError))
            failed_in = "cnf_init" if unreadable else "hard_reconfig"
            m.program.error(failed_in, str(outcome))
            m.program.warning("hard_reconfig", "reconfiguration failed")
            m.notifier.ready(f"reconfiguration failed ({outcome}); the running "
                             f"configuration is kept")
        else:
            for diagnostic in outcome.diagnostics:
                m.program.diagnostic(diagnostic)
            self.apply(outcome)
        if self._again and not m.loop_should_stop:
            self._again = False
            self.reload()

    def claim(self, pid: int, status: ExitStatus) -> bool:
        """For the reaper: True when `pid` is a loader child (its status is taken)."""
        if self._load is not None and self._load.claim(pid, status):
            return True
        for load in self._abandoned:
            if load.claim(pid, status):
                self._abandoned.remove(load)
                return True
        return False

    def close(self) -> None:
        """The daemon stops: a load still running is killed and its child reaped, and
        the servers a reload is ending get their SIGKILL now rather than never."""
        if self._load is not None:
            self._load.kill()
            self._load = None
        self.terminations.kill_now()

    # -- 2, 3. swap and apply ----------------------------------------------------
    def apply(self, new: Configuration) -> None:
        m = self.master
        m.program.notice("hard_reconfig", "Swapping defaults")
        m.config = new
        m.logs.close_for_reload()
        for service_id, error in redirect.resolve_targets(new.services).items():
            m.program.error("init_services", f"{service_id}: redirect target {error}")

        live = [rt for rt in m.services if rt.state in _LIVE]
        plan = diff_services([rt.config for rt in live], new.services)
        change_of = {id(change.old): change for change in plan.kept}
        kept_ids = {c.old.id.lower() for c in plan.kept}

        # Kept services keep their place, added ones come after them (xinetd's table):
        # the order of the next reload's lines and of the state dump.
        running: list[ServiceRuntime] = []
        to_bind: list[ServiceRuntime] = []
        kept: list[Change] = []
        # As xinetd: the running services in their order, each readjusted or removed.
        for rt in live:
            change = change_of.get(id(rt.config))
            if change is None:
                self._remove(rt, rt.config, kept_ids)
                continue
            m.program.notice("readjust", f"readjusting service {change.old.id}")
            if change.keeps_listener and not m.logs.open(change.new):
                # As xinetd's readjust(), which opens the log again: a service whose
                # log cannot be created is dropped like a removed one (a new socket
                # is not activated either, see pyxinetd.activation).
                self._remove(rt, rt.config, kept_ids - {change.old.id.lower()})
                continue
            kept.append(change)
            if change.keeps_listener:
                self._readjust(rt, change, kept_ids)
                running.append(rt)
            else:
                fresh = self._replace_listener(rt, change, kept_ids)
                running.append(fresh)
                to_bind.append(fresh)
        # The servers, sessions and waiting requests of the kept services are theirs
        # under the new configuration, as in xinetd: their EXIT is logged with it, they
        # count toward its instances, and a later reload that removes it finds them.
        # One pass for all the kept services (one per service took minutes with
        # thousands of services and servers, the loop stalled).
        moves = {id(change.old): change.new for change in kept}
        m.children.rehome(moves)
        m.dispatcher.rehome(moves)
        added: list[ServiceRuntime] = []
        for svc in plan.added:
            rt = ServiceRuntime(svc, m.loop.clock)
            m.warn_if_ids_ignored(svc)
            added.append(rt)
            to_bind.append(rt)
        for rt in m.services:
            if rt.state not in _LIVE:
                # A service waiting for its address may have an attempt in flight
                # (an RPC registration); its replacement is bound afresh.
                m.activations.cancel(rt)
        m.services = running + added
        ids = {rt.config.id for rt in m.services}
        m.dispatcher.access.keep_plans(ids)
        spawner.keep_plans(ids)
        m.activations.refresh()
        self._rechecks.start(tuple(kept))

        counts = (len(kept), len(live) - len(kept))
        self._bind_all(to_bind, lambda: self._reconfigured(added, *counts))

    def _stop(self, rt: ServiceRuntime, why: str,
              successor: ServiceRuntime | None = None) -> None:
        """Take a runtime out of service: its activation in flight abandoned, its RPC
        registration unset, its listening socket closed (`why`: for the clients held
        for its next intercepted server, closed with it unless `successor`, the
        runtime of the service's new socket, takes them over)."""
        m = self.master
        # Stopped first: abandoning a bind still retrying settles the reload that
        # added the service, whose report must not count it as available.
        rt.transition(Event.STOP)
        m.activations.cancel(rt)
        m.rpc.unregister(rt)
        if successor is not None:
            m.dispatcher.intercept.move(rt, successor)
        m.dispatcher.close_listener(rt, why)

    def _remove(self, rt: ServiceRuntime, svc: ServiceConfig, kept_ids: set[str]) -> None:
        m = self.master
        self._stop(rt, REMOVED)
        m.dispatcher.relays.release(rt)
        selected = self._selector(svc, kept_ids)
        m.dispatcher.close_sessions(selected, REMOVED)
        doomed = [c for c in m.children if selected(c.service)]
        for child in doomed:
            m.children.release(child)
        self.terminations.terminate(doomed)
        self._holders.hold(doomed)
        m.program.notice("hard_reconfig", f"service {svc.id} deactivated")

    @staticmethod
    def _selector(svc: ServiceConfig, kept_ids: set[str]) -> Callable[[ServiceConfig], bool]:
        """Which servers and sessions belong to the removed service `svc`.

        They carry the configuration they were started with, which may be an older
        one of the same service, so they are matched by id. When another running
        service keeps that id (duplicate ids), only the exact configuration is
        matched: xinetd cannot tell such services apart either.
        """
        wanted = svc.id.lower()
        if wanted in kept_ids:
            return lambda other: other.belongs_to(svc)
        return lambda other: other.id.lower() == wanted

    def _readjust(self, rt: ServiceRuntime, change: Change, kept_ids: set[str]) -> None:
        old, new = change.old, change.new
        if rt.sock is not None:
            try:
                readjust_options(rt.sock, old, new)
            except OSError as err:
                self.master.program.error("readjust", f"{new.id}: cannot set the options of "
                                                      f"its socket: {strerror(err)}")
        if "INTERCEPT" in new.flags and "INTERCEPT" not in old.flags and old.wait \
                and not old.is_internal and not old.is_redirect:
            # As xinetd (reconfig.c, readjust, "clear->set"): the server that reads the
            # service socket itself would go on answering clients the interceptor is
            # there to check; it is ended, and the next request starts an intercepted
            # one.
            selected = self._selector(old, kept_ids - {old.id.lower()})
            holders = [c for c in self.master.children if selected(c.service)]
            self.terminations.terminate(holders)
        rt.config = change.new
        # The window starts again, as in xinetd, whose counter lives in the
        # configuration a reload replaces.
        rt.cps.rate = change.new.cps[0]
        rt.cps.reset()
        self.master.dispatcher.intercept.readjusted(rt)
        self.master.dispatcher.refresh(rt)
        self.master.rpc.reregister(rt, change.old)

    def _replace_listener(self, rt: ServiceRuntime, change: Change,
                          kept_ids: set[str]) -> ServiceRuntime:
        """A kept service whose socket changed: stop the old runtime, return a new one."""
        m = self.master
        fresh = ServiceRuntime(change.new, m.loop.clock)
        rt.successor = fresh
        self._stop(rt, "a reload replaced the service's socket", fresh)
        # Requests held for a fork retry belong to the old socket's runtime: they end
        # now, logged as given up, rather than silently at their retry.
        m.dispatcher.give_up_held(rt, change.new)
        old = change.old
        if old.wait and not old.is_internal and not old.is_redirect:
            # Those servers hold the old listening socket: it must go away.
            selected = self._selector(old, kept_ids - {old.id.lower()})
            holders = [c for c in m.children if selected(c.service)]
            self.terminations.terminate(holders)
            self._holders.hold(holders)
        # A dgram wait = no server keeps its client: its channel moves to the new socket.
        m.dispatcher.relays.move(rt, fresh)
        return fresh

    # -- 4. bind and report --------------------------------------------------------
    def _bind_all(self, runtimes: list[ServiceRuntime], finish: Callable[[], None]) -> None:
        """Bind every runtime; call `finish()` once all of them are active or failed.

        Each reload counts its own binds: a reload that starts while binds of the
        previous one are still retrying does not swallow that one's report.
        """
        # One extra count is held while binds start, so binds settling at once
        # cannot finish early.
        remaining = [len(runtimes) + 1]

        def settled() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                finish()

        def bound(rt: ServiceRuntime) -> Callable[[], None]:
            def done() -> None:
                # Clients handed over from a replaced socket cannot wait for ever.
                self.master.dispatcher.intercept.unbound(rt)
                settled()
            return done

        for rt in runtimes:
            self._holders.start_when_free(rt, bound(rt))
        settled()

    def _reconfigured(self, added: list[ServiceRuntime], old: int, dropped: int) -> None:
        m = self.master
        # Every log of the new configuration is open: the entries a full disk still
        # holds for a file none of them writes to are settled now.
        m.logs.reloaded()
        new = sum(1 for rt in added if rt.state in _LIVE)
        m.program.notice("hard_reconfig",
                         f"Reconfigured: new={new} old={old} dropped={dropped} (services)")
        available = m.available_count()
        plural = "service" if available == 1 else "services"
        m.notifier.ready(f"Reconfigured: {available} available {plural}")
        if (available == 0 and not m.options.keeps_running_without_services
                and not m.has_waiting_services()):
            m.program.critical("hard_reconfig", "No available services. Exiting")
            m.stop(1)
