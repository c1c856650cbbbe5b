"""Loading the configuration in a short-lived child process, for the daemon.

The parser costs the daemon memory it never gives back: importing pyparsing and the
grammar adds about 5 MiB, and a load leaves the memory of its temporary objects
fragmented (about 6 MiB more for 1,000 services; CPython returns an arena to the system
only once it is entirely empty). The daemon therefore forks a child that loads the
configuration, interns the values services share, and sends the finished model back
pickled; the daemon itself only ever unpickles the result, and never imports the parser.

The child sends either the Configuration or the ConfigError/OSError the load raised
(e.g. an unreadable main file), rebuilt here field by field. It closes every descriptor
it inherited but its pipe first: listening sockets, sessions and the resolver's socket
must not outlive their closing in the daemon while a load runs.

The parser is imported in the child, from disk: after an upgrade replaced the package's
files, that is the new code, next to the daemon's old model inherited by the fork. A
reload's child therefore compares the files with the daemon's first
(pyxinetd.installation) and, when they changed, sends that instead of a configuration.

Two ways to use it:
- `load_isolated()` (start-up) blocks until the child is done and reaps it by pid. When
  the child cannot give a result (fork fails, it dies, it sends garbage), the
  configuration is loaded again in this process, so the outcome never depends on the
  child;
- `start_loader()` + `receive()` (a reload, pyxinetd.reconfig) let the daemon's loop
  read the pipe and reap the child itself; there a failed child raises LoaderFailed and
  the caller decides (the loop does not load in-process: docs/reload.md).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import signal
from collections.abc import Hashable
from typing import Any

from pyxinetd import installation
from pyxinetd.config.model import Configuration, ServiceConfig
from pyxinetd.errors import ConfigError
from pyxinetd.oomscore import offer_to_oom_killer
from pyxinetd.signals import IGNORED_SIGNALS

# The child's exit status when it sent a result (a Configuration or an error).
SENT = 0
_FAILED = 1


class LoaderFailed(Exception):
    """The loader child gave no usable result (it died, or its data made no sense)."""


@dataclasses.dataclass(frozen=True)
class LoaderChild:
    """A running loader: its pid, and the read end of its pipe (non-blocking)."""

    pid: int
    fd: int


def load_isolated(path: str, environ: dict[str, str] | None = None,
                  inetd_compat: bool = False, inetd_path: str = "/etc/inetd.conf"
                  ) -> Configuration:
    """`pyxinetd.config.load()`, run in a child process; see the module docstring."""
    kwargs: dict[str, Any] = dict(environ=environ, inetd_compat=inetd_compat,
                                  inetd_path=inetd_path)
    try:
        return _load_in_child(path, kwargs)
    except LoaderFailed:
        pass
    from pyxinetd.config import load

    # In the daemon itself, which forks its reload loaders later: no resolver threads.
    return compact(load(path, **kwargs, check_host_names=False))


def _load_in_child(path: str, kwargs: dict[str, Any]) -> Configuration:
    try:
        # The daemon has just recorded its files: nothing to compare yet.
        child = start_loader(path, **kwargs, code_check=False)
    except OSError as err:
        raise LoaderFailed(str(err)) from err
    os.set_blocking(child.fd, True)
    with os.fdopen(child.fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(child.pid, 0)
    sent = os.WIFEXITED(status) and os.WEXITSTATUS(status) == SENT
    return receive(data, sent)


def start_loader(path: str, environ: dict[str, str] | None = None,
                 inetd_compat: bool = False, inetd_path: str = "/etc/inetd.conf",
                 code_check: bool = True) -> LoaderChild:
    """Fork the loader child; raises OSError when it cannot be started.

    With `code_check`, the child first compares the package's files on disk with the
    daemon's (pyxinetd.installation) and sends back what changed instead of loading:
    the parser it would import is the new code, its model the daemon's old one.
    The caller reads `fd` to EOF, closes it, reaps `pid`, then calls receive()."""
    kwargs: dict[str, Any] = dict(environ=environ, inetd_compat=inetd_compat,
                                  inetd_path=inetd_path)
    if code_check:
        # Here, before the fork, as well as in the child: files rewritten with the
        # same contents (a reinstall) have their new stamps kept in the daemon's
        # record. Kept in the child's copy only, they died with it, and every later
        # reload read those files again. The child's check is then a stat per file.
        installation.replaced()
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(rfd)
        os.close(wfd)
        raise
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        _child(rfd, wfd, path, kwargs, code_check)
    os.close(wfd)
    os.set_blocking(rfd, False)
    return LoaderChild(pid, rfd)


def receive(data: bytes, sent: bool) -> Configuration:
    """The loader's result: the Configuration, or the error the load raised.

    `sent`: the child exited with status SENT. Raises ConfigError or OSError as load()
    did in the child, LoaderFailed when the child gave nothing usable or found the
    package's files replaced on disk."""
    if not sent:
        raise LoaderFailed("the configuration loader exited without a result")
    try:
        message = pickle.loads(data)
    except Exception as err:
        raise LoaderFailed(f"the configuration loader sent unreadable data ({err})") from None
    if isinstance(message, tuple) and len(message) == 2 and message[0] == "config" \
            and isinstance(message[1], Configuration):
        return message[1]
    if isinstance(message, tuple) and len(message) == 2 and message[0] == "replaced" \
            and isinstance(message[1], str):
        raise LoaderFailed(f"{message[1]}: restart it to load the new code")
    error = _rebuild_error(message)
    if error is not None:
        raise error
    raise LoaderFailed("the configuration loader sent unexpected data")


def _rebuild_error(message: object) -> Exception | None:
    if not isinstance(message, tuple) or len(message) != 5:
        return None
    kind, *fields = message
    if kind == "ConfigError":
        text, path, line, col = fields
        if isinstance(text, str) and all(v is None or isinstance(v, t) for v, t in
                                         ((path, str), (line, int), (col, int))):
            return ConfigError(text, path, line, col)
    elif kind == "OSError":
        errno, strerror, filename, _ = fields
        if isinstance(errno, int) and isinstance(strerror, str):
            return OSError(errno, strerror, filename) if filename is not None \
                else OSError(errno, strerror)
    return None


def _child(rfd: int, wfd: int, path: str, kwargs: dict[str, Any], code_check: bool) -> None:
    """Called in the child; never returns."""
    status = _FAILED
    try:
        # Signals meant for the daemon must not reach its wakeup socket from here.
        signal.set_wakeup_fd(-1)
        # The loader shares the daemon's process group: a signal sent to the group (a
        # terminal's Ctrl-C or hang-up for a -dontfork daemon, `kill -HUP -- -PGID`)
        # reaches it too. Those the daemon ignores or takes as a request are nothing to
        # the loader, whose end they would otherwise be (and the reload's: a SIGINT
        # lost it for good). SIGTERM and SIGQUIT end the daemon, and it with them.
        for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2,
                       signal.SIGABRT, *IGNORED_SIGNALS):
            signal.signal(signum, signal.SIG_IGN)
        # Short of memory, the kernel must take this child, not the daemon.
        offer_to_oom_killer()
        # Objects of the daemon that are already garbage are never collected here, so no
        # finalizer closes a descriptor number the load has since reused.
        gc.freeze()
        os.close(rfd)
        os.closerange(3, wfd)
        os.closerange(wfd + 1, _max_fd())
        message: tuple[object, ...]
        # Checked before anything is imported from disk.
        replaced = installation.replaced() if code_check else None
        if replaced is not None:
            message = ("replaced", str(replaced))
        else:
            from pyxinetd.config import load

            try:
                message = ("config", compact(load(path, **kwargs)))
            except ConfigError as err:
                message = ("ConfigError", err.message, err.path, err.line, err.col)
            except OSError as err:
                message = ("OSError", err.errno, err.strerror, err.filename, None)
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        with os.fdopen(wfd, "wb") as pipe:
            pipe.write(data)
        status = SENT
    except BaseException:
        pass
    finally:
        os._exit(status)


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 256)
    except (ValueError, OSError):
        return 65_536


def compact(config: Configuration) -> Configuration:
    """The same configuration with equal field values of services shared.

    A thousand services generated from one template each carry their own copies of the
    same frozensets and tuples (types, flags, log flags, argv, environment...); one
    shared copy of each is enough, and pickling keeps the sharing.
    """
    seen: dict[Hashable, object] = {}
    # Values already looked at, by identity (all alive until the end: ids stay unique).
    done: dict[int, object] = {}

    def shared(value: object) -> object:
        if value is None or isinstance(value, (bool, int, float)):
            return value    # small or cheap: nothing to gain
        canonical = done.get(id(value))
        if canonical is None:
            try:
                canonical = seen.setdefault(_key(value), value)
            except TypeError:   # something unhashable inside: keep the service's own copy
                canonical = value
            done[id(value)] = canonical
        return canonical

    names = [f.name for f in dataclasses.fields(ServiceConfig)]
    services = []
    for svc in config.services:
        changes: dict[str, Any] = {}
        for name in names:
            value = getattr(svc, name)
            canonical = shared(value)
            if canonical is not value:
                changes[name] = canonical
        services.append(dataclasses.replace(svc, **changes) if changes else svc)
    return dataclasses.replace(config, services=tuple(services))


def _key(value: object) -> Hashable:
    """A key equal only for values of the same types all the way down (1 == True and
    0 == 0.0 in Python, but a shared value must not change any element's type)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is tuple or kind is frozenset:
        if all(type(v) is str for v in value):  # type: ignore[attr-defined]
            return (kind, value)
        items = (_key(v) for v in value)  # type: ignore[attr-defined]
        return (kind, tuple(items) if kind is tuple else frozenset(items))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value), tuple(_key(getattr(value, f.name))
                                   for f in dataclasses.fields(value)))
    return (type(value), value)
