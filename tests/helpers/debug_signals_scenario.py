"""The daemon under test in `-d` mode, on a terminal, taking signals one at a time:
SIGHUP onto a changed configuration (one service dropped, one kept, one added), SIGUSR2
onto a main file that is gone, SIGABRT, SIGUSR1, an ignored SIGWINCH, then SIGINT,
which ends a `-d` daemon.

xinetd writes its debug log to /dev/tty, so the daemon gets a pseudo-terminal as its
controlling terminal; everything written there is collected. Runs as
`unshare -n -m python3 THIS WORKDIR DAEMON [ARG...]` (tests.daemon.run_scenario, with
mount): /run gets a private tmpfs for xinetd's fixed dump path. Prints one JSON object:
the terminal's lines, the exit status, whether the pidfile was left behind, and the
lines and status of the start that finds no file.
"""

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable

from scenario_support import bring_up_loopback, free_port

CONF = """service echo
{{
\ttype = INTERNAL
\tid = echo-stream
\tsocket_type = stream
\tprotocol = tcp
\twait = no
}}
service {name}
{{
\ttype = INTERNAL
\tid = {name}-stream
\tsocket_type = stream
\tprotocol = tcp
\twait = no
}}
service sleeper
{{
\ttype = UNLISTED
\tsocket_type = stream
\tprotocol = tcp
\tport = {port}
\tbind = 127.0.0.1
\twait = no
\tuser = root
\tserver = /bin/sleep
\tserver_args = {seconds}
}}
"""


class Terminal:
    """The daemon on a pseudo-terminal of its own (its session's controlling one)."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        # No echo, no CR added: the lines read back are the lines written.
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=controlling_terminal)
        os.close(slave)
        self.master = master
        self.text = ""

    def read_until(self, text: str, count: int, deadline: float) -> bool:
        while self.text.count(text) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:   # EIO: every writer is gone
                break
            if not chunk:
                break
            self.text += chunk.decode(errors="replace")
        return self.text.count(text) >= count

    def wait(self, deadline: float) -> int | None:
        """The exit status, once the daemon is gone and its last lines are read (None
        at the deadline). A NUL never comes: read_until() then reads until its time."""
        while time.monotonic() < deadline:
            self.read_until("\0", 1, min(deadline, time.monotonic() + 0.1))
            status = self.proc.poll()
            if status is not None:
                self.read_until("\0", 1, time.monotonic() + 0.2)
                return status
        return None


def main() -> None:
    workdir, daemon = sys.argv[1], sys.argv[2:]
    bring_up_loopback()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    conf = os.path.join(workdir, "xinetd.conf")
    port = free_port()
    with open(conf, "w") as f:
        f.write(CONF.format(name="discard", port=port, seconds=30))
    pidfile = "/run/debug.pid"
    term = Terminal([*daemon, "-d", "-f", conf, "-pidfile", pidfile])
    deadline = time.monotonic() + 30
    status = None
    try:
        if term.read_until("Started working", 1, deadline):
            pid = term.proc.pid
            # (what to do first, the signal, the line that shows it was taken)
            steps: list[tuple[Callable[[], None] | None, int, str]] = [
                (lambda: os.replace(conf + ".new", conf), signal.SIGHUP, "Reconfigured"),
                # SIGUSR2 is SIGHUP's old name for the same reload.
                (lambda: os.unlink(conf), signal.SIGUSR2, "reconfiguration failed"),
                (None, signal.SIGABRT, "Consistency check"),
                (None, signal.SIGUSR1, "generated state dump"),
            ]
            with open(conf + ".new", "w") as f:
                f.write(CONF.format(name="daytime", port=port, seconds=31))
            for before, signum, mark in steps:
                if before is not None:
                    before()
                os.kill(pid, signum)
                term.read_until(mark, 1, deadline)
            # Ignored: nothing is logged; the SIGINT that follows shows it was taken.
            os.kill(pid, signal.SIGWINCH)
            time.sleep(0.2)
            os.kill(pid, signal.SIGINT)
            status = term.wait(deadline)
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait(10)
        os.close(term.master)
    pidfile_left = os.path.exists(pidfile)
    # Started on the file that is gone now: the reason, then the CRITICAL line.
    missing = Terminal([*daemon, "-d", "-f", conf])
    try:
        missing_status = missing.wait(time.monotonic() + 30)
    finally:
        if missing.proc.poll() is None:
            missing.proc.kill()
            missing.proc.wait(10)
        os.close(missing.master)
    print(json.dumps({"lines": term.text.splitlines(), "status": status,
                      "pidfile_left": pidfile_left,
                      "missing_lines": missing.text.splitlines(),
                      "missing_status": missing_status}))


if __name__ == "__main__":
    main()
