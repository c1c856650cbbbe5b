"""The Python-level ways of starting a server, for when the C extension is missing.

pyxinetd.spawner prefers its C extension (pyxinetd._spawn), which does the whole child
checklist of docs/spawner.md in a CLONE_VM|CLONE_VFORK child. Without it (no compiler at
install time, or PYXINETD_NATIVE_SPAWN=0), Spawner.choose picks one of these, the
fastest that reproduces the checklist exactly for the request at hand:

* SPAWN, `os.posix_spawn` (glibc: CLONE_VM|CLONE_VFORK) with dup2/close actions, setsid,
  every signal at default and an empty mask; no credential change.
* FORK_EXEC, CPython's C-level fork/exec (`_posixsubprocess`, behind subprocess): vfork
  speed without a credential change; with one, a real fork, still without Python in
  the child.
* CHECKLIST, `os.fork` and the steps in Python (child_checklist), each checked, any
  failure sent back as "errno:step:message" on a close-on-exec pipe.

The first two cannot set umask (FORK_EXEC can), NOFILE or nice in the child, so the
parent sets them on itself around the call and puts them back right after
(_lend_parent_state): the master is single-threaded and its signal handlers only record.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable
from typing import NoReturn

from pyxinetd.config.serveraccess import access_problem
from pyxinetd.errors import SpawnError
from pyxinetd.interpreter import interpreter_problem
from pyxinetd.posix import RESETTABLE_SIGNALS, Posix
from pyxinetd.spawnrequest import SpawnRequest

# Above any descriptor number the kernel hands out; os.closerange uses close_range(2).
_MAX_FD = 2**31 - 1

_NICE_MIN, _NICE_MAX = -20, 19


class FallbackPaths:
    """posix_spawn, C-level fork/exec and the Python checklist, through a Posix facade."""

    def __init__(self, posix: Posix) -> None:
        self._os = posix

    # -- parent-side state the fast paths lend to the child ---------------------------

    def _lend_parent_state(self, req: SpawnRequest, *, umask: bool) -> list[Callable[[], None]]:
        """Set umask/NOFILE/nice on the parent for the child to inherit; return undo steps."""
        posix = self._os
        undo: list[Callable[[], None]] = []
        step = ""
        try:
            if umask and req.umask is not None:
                step = "umask"
                old_mask = posix.umask(req.umask)

                def restore_umask() -> None:
                    posix.umask(old_mask)
                undo.append(restore_umask)
            if req.nofile is not None:
                current = posix.getrlimit(resource.RLIMIT_NOFILE)
                if current != req.nofile:
                    step = "rlimit_files"
                    posix.setrlimit(resource.RLIMIT_NOFILE, req.nofile)
                    undo.append(lambda: posix.setrlimit(resource.RLIMIT_NOFILE, current))
            if req.nice:
                step = "nice"
                old_prio = posix.getpriority()
                posix.setpriority(min(_NICE_MAX, max(_NICE_MIN, old_prio + req.nice)))
                undo.append(lambda: posix.setpriority(old_prio))
        except OSError as err:
            self._undo(undo)
            raise spawn_error(req, step, err) from err
        return undo

    @staticmethod
    def _undo(undo: list[Callable[[], None]]) -> None:
        # Putting the master's own state back cannot fail for root (the only case where
        # a hard limit or priority was changed); if it ever did, the error escapes.
        for action in reversed(undo):
            action()

    def _errpipe(self, req: SpawnRequest) -> tuple[int, int]:
        try:
            return self._os.pipe()
        except OSError as err:  # EMFILE/ENFILE: no child could have been made either
            raise spawn_error(req, "fork", err) from err

    # -- path 1: posix_spawn ----------------------------------------------------------

    def run_spawn(self, req: SpawnRequest) -> int:
        """posix_spawn with dup2/close actions, setsid, default signals, empty mask."""
        if req.credentials is not None:
            raise ValueError("posix_spawn cannot change credentials")
        posix = self._os
        inherited = []
        for fd in posix.open_fds():
            if fd < 3:
                continue
            try:
                if not posix.is_cloexec(fd):
                    inherited.append(fd)
            except OSError:
                pass  # the listing's own descriptor, already closed
        src = req.fd if req.fd >= 3 else posix.dup_above(req.fd, 3)
        err_src = src if req.stderr_fd < 0 else req.stderr_fd
        if err_src < 3:
            err_src = posix.dup_above(err_src, 3)
        actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, src, 0),
                                          (os.POSIX_SPAWN_DUP2, src, 1),
                                          (os.POSIX_SPAWN_DUP2, err_src, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inherited]
        try:
            undo = self._lend_parent_state(req, umask=True)
            try:
                return posix.posix_spawn(req.path, req.argv, req.env_mapping(),
                                         file_actions=actions, setsigdef=RESETTABLE_SIGNALS)
            except OSError as err:
                raise spawn_error(req, "exec", err) from err
            except ValueError as err:  # e.g. NUL in argv or env
                raise SpawnError(f"{req.service_id}: cannot start {req.path}: {err}",
                                 errno=errno.EINVAL, step="exec") from err
            finally:
                self._undo(undo)
        finally:
            if src != req.fd:
                posix.close(src)
            if err_src not in (src, req.stderr_fd):
                posix.close(err_src)

    # -- path 2: C-level fork/exec (vfork unless credentials change) -------------------

    def run_fork_exec(self, req: SpawnRequest) -> int:
        """_posixsubprocess.fork_exec: groups, gid, uid, umask, setsid, fds in C."""
        posix = self._os
        creds = req.credentials
        errpipe = self._errpipe(req)
        try:
            undo = self._lend_parent_state(req, umask=False)
            try:
                pid = posix.fork_exec(
                    req.path, req.argv, [e for e in req.env], fd=req.fd, errpipe=errpipe,
                    uid=creds.uid if creds else None, gid=creds.gid if creds else None,
                    groups=creds.groups if creds else None,
                    umask=req.umask if req.umask is not None else -1,
                    stderr_fd=req.stderr_fd)
            except OSError as err:
                raise spawn_error(req, "fork", err) from err
            except ValueError as err:
                raise SpawnError(f"{req.service_id}: cannot start {req.path}: {err}",
                                 errno=errno.EINVAL, step="exec") from err
            finally:
                self._undo(undo)
                posix.close(errpipe[1])
            report = posix.read_all(errpipe[0])
        finally:
            posix.close(errpipe[0])
        if not report:
            return pid
        posix.waitpid(pid)
        # subprocess's format: "ExceptionName:hex_errno:noexec" when the failure came
        # before exec (dup2, setsid, setgroups, setgid, setuid, umask).
        _, hex_errno, detail = (report.split(b":", 2) + [b"", b""])[:3]
        try:
            code = int(hex_errno, 16)
        except ValueError:
            code = 0
        step = "credentials" if detail.startswith(b"noexec") else "exec"
        raise spawn_error(req, step, OSError(code, os.strerror(code)))

    # -- path 3: os.fork and the checklist in Python ----------------------------------

    def run_checklist(self, req: SpawnRequest) -> int:
        """os.fork, then child_checklist in the child; errors come back on a pipe."""
        posix = self._os
        errpipe_read, errpipe_write = self._errpipe(req)
        # Nothing may run a Python signal handler in the child before the dispositions
        # are reset (it would write to the master's wakeup socket): block everything
        # across fork; the child empties the mask once the handlers are gone.
        saved_mask = posix.block_signals()
        try:
            pid = posix.fork()
        except OSError as err:
            posix.set_sigmask(saved_mask)
            posix.close(errpipe_read)
            posix.close(errpipe_write)
            raise spawn_error(req, "fork", err) from err
        if pid == 0:
            self.child_checklist(req, errpipe_write)
        posix.set_sigmask(saved_mask)
        posix.close(errpipe_write)
        try:
            report = posix.read_all(errpipe_read)
        finally:
            posix.close(errpipe_read)
        if not report:
            return pid
        posix.waitpid(pid)
        code_text, _, rest = report.decode("utf-8", "replace").partition(":")
        step, _, message = rest.partition(":")
        code = int(code_text) if code_text.isdigit() else 0
        raise SpawnError(f"{req.service_id}: cannot start {req.path}: {step}: {message}"
                         f"{limit_hint(req, step, code)}{script_hint(req, step, code)}",
                         errno=code, step=step)

    def child_checklist(self, req: SpawnRequest, errpipe: int) -> NoReturn:
        """Called in the child; never returns. The order below is the behaviour."""
        posix = self._os
        step = "signals"
        try:
            posix.reset_signal_dispositions()
            posix.set_sigmask([])
            step = "descriptors"
            src = req.fd if req.fd >= 3 else posix.dup_above(req.fd, 3)
            err_src = src if req.stderr_fd < 0 else req.stderr_fd
            if err_src < 3:
                err_src = posix.dup_above(err_src, 3)
            for target in (0, 1, 2):
                posix.dup2(err_src if target == 2 else src, target)
            posix.closerange(3, errpipe)
            posix.closerange(errpipe + 1, _MAX_FD)
            step = "setsid"
            posix.setsid()
            if req.umask is not None:
                step = "umask"
                posix.umask(req.umask)
            # nice and limits while still root: lowering nice or raising a hard limit
            # needs the privilege the next steps give up.
            if req.nice:
                step = "nice"
                posix.nice(req.nice)
            if req.nofile is not None:
                step = "rlimit_files"
                posix.setrlimit(resource.RLIMIT_NOFILE, req.nofile)
            for name, res, value in req.rlimits:
                step = f"rlimit_{name}"
                posix.setrlimit(res, (value, value))
            creds = req.credentials
            if creds is not None:
                step = "setgroups"
                posix.setgroups(creds.groups)
                if creds.gid is not None:
                    step = "setgid"
                    posix.setgid(creds.gid)
                if creds.uid is not None:
                    step = "setuid"
                    posix.setuid(creds.uid)
            step = "exec"
            posix.execve(req.path, req.argv, req.env_mapping())
        except BaseException as exc:
            code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
            text = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                    else f"{type(exc).__name__}: {exc}")
            try:
                posix.write(errpipe, f"{code}:{step}:{text}".encode("utf-8", "replace"))
            except BaseException:
                pass
        finally:
            posix.exit_now(127)


def spawn_error(req: SpawnRequest, step: str, err: OSError) -> SpawnError:
    code = err.errno or 0
    reason = err.strerror or os.strerror(code)
    return SpawnError(f"{req.service_id}: cannot start {req.path}: {step}: {reason}"
                      f"{limit_hint(req, step, code)}{script_hint(req, step, code)}",
                      errno=code, step=step)


def script_hint(req: SpawnRequest, step: str, code: int) -> str:
    """Why exec said ENOENT (or EACCES) of a file that is there: a script whose #!
    interpreter is missing, often a carriage return at its end (pyxinetd.interpreter);
    for EACCES, what the server's user may not reach (the file, or its interpreter
    under a folder only root may search: pyxinetd.config.serveraccess)."""
    if step != "exec" or code not in (errno.ENOENT, errno.EACCES):
        return ""
    problem = interpreter_problem(req.path)
    if problem is not None:
        return f"; {problem}"
    who = req.credentials
    if code == errno.EACCES and who is not None and who.uid not in (None, 0):
        assert who.uid is not None
        gids = {g for g in (who.gid, *who.groups) if g is not None}
        denied = access_problem(req.path, who.uid, gids)
        if denied is not None:
            return f"; uid {who.uid} cannot run it: {denied}"
    return ""


def limit_hint(req: SpawnRequest, step: str, code: int) -> str:
    """Why exec said EAGAIN: since Linux 3.1 setuid() to a user already at its
    RLIMIT_NPROC succeeds, and the exec that follows fails with EAGAIN instead (a
    transient "Resource temporarily unavailable" that names no limit)."""
    if step != "exec" or code != errno.EAGAIN:
        return ""
    uid = req.credentials.uid if req.credentials is not None else None
    who = f"uid {uid}" if uid is not None else "the server's user"
    return f" ({who} has reached its process limit, RLIMIT_NPROC)"
