"""Typed errors raised by the library; only cli.py turns them into exit statuses."""

from __future__ import annotations


class PyxinetdError(Exception):
    """Base class of every error pyxinetd raises on purpose."""


class ConfigError(PyxinetdError):
    """A configuration problem that stops loading altogether (e.g. unreadable main file)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 col: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        where = ""
        if path is not None:
            where = path if line is None else f"{path}:{line}"
            if line is not None and col is not None:
                where += f":{col}"
            where += ": "
        super().__init__(where + message)


class SetupError(PyxinetdError):
    """The daemon's own machinery (its selector, its signal socket pair) could not be
    created, e.g. for want of a descriptor under a tiny `ulimit -n`: it cannot serve.
    `what` names it; `cause` is the failed call's error."""

    def __init__(self, what: str, cause: OSError) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"cannot create {what}: {cause.strerror}")


class BindError(PyxinetdError):
    """A service's listening socket could not be created or bound."""


class SpawnError(PyxinetdError):
    """A server process could not be started.

    `errno` is the failing call's errno (0 when there is none), `step` names the set-up
    step that failed ("fork", "setuid", "exec", ...). The child, if one was created, has
    already been reaped: there is nothing left to wait for.
    """

    def __init__(self, message: str, *, errno: int = 0, step: str = "") -> None:
        self.message = message
        self.errno = errno
        self.step = step
        super().__init__(message)

    @property
    def no_process(self) -> bool:
        """True when no child process could be created at all (fork/clone failed:
        EAGAIN, ENOMEM...), as opposed to a child that failed a set-up step or exec.
        Only the former is worth retrying later (reference §4.15)."""
        return self.step == FORK_STEP


# SpawnError.step when the process itself could not be created.
FORK_STEP = "fork"
