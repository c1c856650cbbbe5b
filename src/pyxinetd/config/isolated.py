"""Loading the configuration in a short-lived child process, for the daemon.

The parser costs the daemon memory it never gives back: importing pyparsing and the
grammar adds about 5 MiB, and a load leaves the memory of its temporary objects
fragmented (about 6 MiB more for 1,000 services; CPython returns an arena to the system
only once it is entirely empty). The daemon therefore forks a child that loads the
configuration, interns the values services share, and sends the finished model back
pickled; the daemon itself only ever unpickles the result, and never imports the parser.

The result is the same Configuration `load()` returns. Whenever the child cannot give
it (fork fails, the child dies, pickling fails, or the load raises, e.g. ConfigError
for an unreadable main file), the configuration is loaded again in this process, so
errors are raised exactly as by `load()` and the outcome never depends on the child.
The caller blocks until the child is done, as it would during an in-process load; the
child is reaped here, by pid, before this returns, so the daemon's reaper never sees it.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
from collections.abc import Hashable
from typing import Any

from pyxinetd.config.model import Configuration, ServiceConfig

# The child's exit status when it sent a Configuration.
_SENT = 0
_FAILED = 1


def load_isolated(path: str, environ: dict[str, str] | None = None,
                  inetd_compat: bool = False, inetd_path: str = "/etc/inetd.conf"
                  ) -> Configuration:
    """`pyxinetd.config.load()`, run in a child process; see the module docstring."""
    kwargs: dict[str, Any] = dict(environ=environ, inetd_compat=inetd_compat,
                                  inetd_path=inetd_path)
    config = _load_in_child(path, kwargs)
    if config is None:
        from pyxinetd.config import load

        config = compact(load(path, **kwargs))
    return config


def _load_in_child(path: str, kwargs: dict[str, Any]) -> Configuration | None:
    try:
        rfd, wfd = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(rfd)
        os.close(wfd)
        return None
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        _child(rfd, wfd, path, kwargs)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != _SENT:
        return None
    try:
        config = pickle.loads(data)
    except Exception:
        return None
    return config if isinstance(config, Configuration) else None


def _child(rfd: int, wfd: int, path: str, kwargs: dict[str, Any]) -> None:
    """Called in the child; never returns."""
    status = _FAILED
    try:
        os.close(rfd)
        # Signals meant for the daemon must not reach its wakeup socket from here.
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        from pyxinetd.config import load

        data = pickle.dumps(compact(load(path, **kwargs)), pickle.HIGHEST_PROTOCOL)
        with os.fdopen(wfd, "wb") as pipe:
            pipe.write(data)
        status = _SENT
    except BaseException:
        pass
    finally:
        os._exit(status)


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
