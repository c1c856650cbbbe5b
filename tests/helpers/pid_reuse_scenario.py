"""`etc/init.d/xinetd stop` while the daemon's pid is taken by another process.

Run as process 1 of a new pid namespace (`unshare -p -f --mount-proc`), where
/proc/sys/kernel/ns_last_pid chooses the next pid. Usage: SCRIPT PIDFILE.

A stand-in xinetd takes its time to exit on SIGTERM. Once it has the SIGTERM, the
stop script is frozen (SIGSTOP to its process group, so it cannot look in between),
the stand-in ends and is reaped, an unrelated `sleep` is started with its pid, and the
script resumes. It must see that the process it signalled is gone, and never signal
the newcomer. Prints one JSON line: the script's status and output, and whether the
newcomer survived.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

STAND_IN = ("import os, signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: os.write(1, b'T'))\n"
            "os.write(1, b'R')\n"
            "time.sleep(60)\n")


def start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def spawn_at(pid: int, avoid_start: str) -> subprocess.Popen[bytes]:
    """`sleep 60` with the given pid (and another start time than `avoid_start`)."""
    for _ in range(1000):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        newcomer = subprocess.Popen(["sleep", "60"])
        if newcomer.pid == pid and start_time(pid) != avoid_start:
            return newcomer
        newcomer.kill()
        newcomer.wait()
    raise SystemExit(f"could not start a process with pid {pid}")


def main() -> None:
    script, pidfile = sys.argv[1], sys.argv[2]
    stand_in = subprocess.Popen(["xinetd", "-c", STAND_IN], executable=sys.executable,
                                stdout=subprocess.PIPE)
    assert stand_in.stdout is not None
    assert stand_in.stdout.read(1) == b"R"
    before = start_time(stand_in.pid)
    Path(pidfile).write_text(f"{stand_in.pid}\n")
    env = {**os.environ, "PYXINETD_PIDFILE": pidfile, "PYXINETD_STOP_TIMEOUT": "2",
           "PYXINETD_DAEMON": "/bin/false", "PYXINETD_DEFAULTS": "/nonexistent"}
    stop = subprocess.Popen(["/bin/sh", script, "stop"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert stand_in.stdout.read(1) == b"T"
    os.killpg(stop.pid, signal.SIGSTOP)
    stand_in.kill()
    stand_in.wait()
    newcomer = spawn_at(stand_in.pid, before)
    os.killpg(stop.pid, signal.SIGCONT)
    output, _ = stop.communicate(timeout=30)
    survived = newcomer.poll() is None
    newcomer.kill()
    newcomer.wait()
    print(json.dumps({"status": stop.returncode, "output": output, "survived": survived,
                      "pidfile_left": Path(pidfile).exists()}))


if __name__ == "__main__":
    main()
