"""SIGTERM while a reload's recheck of a running server waits for its client's name,
inside a private network namespace.

    unshare -n python3 recheck_exit_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up and puts every nameserver of /etc/resolv.conf on it, each with a socket
that never answers (slow_dns_scenario.mute_dns; the daemon gets RES_OPTIONS
"timeout:30 attempts:1" and a 60 s lookup deadline, so the name stays awaited). A
client on 127.0.0.5 (not in /etc/hosts) starts a server that sleeps; a reload then
sets `only_from` to a host name, so the recheck of that server needs its client's
name; the daemon gets SIGTERM. Prints one JSON object: whether the server still runs
once the daemon exited, the daemon's exit status, and its log.
"""

import json
import os
import signal
import socket
import subprocess
import time

from scenario_support import begin, free_port, read, wait_for
from slow_dns_scenario import mute_dns, nameservers

DEADLINE = 30.0


def config(service_log: str, port: int, only_from: str) -> str:
    return f"""defaults
{{
    log_type = FILE {service_log}
    log_on_success = PID HOST EXIT
}}
service sleeper
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    port = {port}
    bind = 127.0.0.1
    server = /bin/sleep
    server_args = 60
    only_from = {only_from}
}}
"""


def main() -> int:
    run = begin()
    servers = [mute_dns(address) for address in nameservers()]
    port = free_port()
    with open(run.conf, "w") as f:
        f.write(config(run.service_log, port, "127.0.0.5"))
    env = dict(os.environ, RES_OPTIONS="timeout:30 attempts:1",
               PYXINETD_LOOKUP_TIMEOUT="60")
    daemon = subprocess.Popen([*run.daemon, "-f", run.conf, "-dontfork", "-filelog",
                               run.program_log], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, object] = {}
    server = 0
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + DEADLINE
        if not wait_for(run.program_log, "Started working", deadline):
            raise SystemExit(f"the daemon did not start: {read(run.program_log)!r}")
        client.bind(("127.0.0.5", 0))
        client.connect(("127.0.0.1", port))
        if not wait_for(run.service_log, r"START: sleeper pid=\d+", deadline):
            raise SystemExit("no server started")
        server = int(read(run.service_log).split("pid=", 1)[1].split()[0])
        with open(run.conf, "w") as f:
            f.write(config(run.service_log, port, "sleeper.example"))
        daemon.send_signal(signal.SIGHUP)
        if not wait_for(run.program_log, "Reconfigured", deadline):
            raise SystemExit("no reload")
        daemon.send_signal(signal.SIGTERM)
        result["status"] = daemon.wait(DEADLINE)
        # A server the exit signalled would be gone (or a zombie, its parent gone too:
        # reaped by init) by the time the daemon's exit is seen: SIGTERM is immediate.
        result["server_runs"] = os.path.exists(f"/proc/{server}") and read(
            f"/proc/{server}/stat").rsplit(")", 1)[1].split()[0] != "Z"
    finally:
        client.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if server:
            try:
                os.kill(server, signal.SIGKILL)
            except OSError:
                pass
        for sock in servers:
            sock.close()
    result["log"] = read(run.program_log)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
