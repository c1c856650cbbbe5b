"""The environment external servers get, under one daemon in a private network namespace.

    unshare -n python3 environment_scenario.py WORKDIR DAEMON [ARG...]

Starts the daemon with a small, known environment (with and without REMOTE_HOST in
it), one stream service per passenv/env combination, each running env_probe.py, asks
each once and prints one JSON object: service name (and `/no-startup-remote`) -> the
environment its server received, in order. Standard library only; every wait bounded.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from scenario_support import begin, free_port, wait_for

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "env_probe.py")
EXEC_RAW_ENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exec_raw_env.py")
# An interpreter that finds its library without PATH or PYTHONHOME (some services get
# neither); a private one may locate it through argv[0] and PATH only.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# The daemon's own environment, in this order (PATH and PYTHONPATH so it can run).
STARTUP = [("ZED", "z"), ("PATH", os.environ.get("PATH", "/usr/bin:/bin")),
           ("ALPHA", "a"), ("REMOTE_HOST", "from-startup"), ("BETA", "b"),
           ("PYTHONPATH", os.environ.get("PYTHONPATH", "")), ("GAMMA", "c")]

# One more variable of the daemon's environment, NAME=value, from the test (the spawn
# path switch), last.
EXTRA = os.environ.get("SCENARIO_EXTRA_ENV", "")
if EXTRA:
    STARTUP.append((EXTRA.partition("=")[0], EXTRA.partition("=")[2]))

# Service name -> its passenv/env lines (the defaults' below).
CASES = {
    "plain": "",
    "env-only": "\tenv = BETA=x NEW=n ALPHA=y\n",
    "env-repeats": "\tenv = NEW=1 OTHER=2 NEW=3\n",
    "env-remote": "\tenv = REMOTE_HOST=from-env NEW=n\n",
    "passenv": "\tpassenv = GAMMA ALPHA ZED\n",
    "passenv-env": "\tpassenv = GAMMA ALPHA ZED\n\tenv = ALPHA=y NEW=n GAMMA=g\n",
    "passenv-remote": "\tpassenv = REMOTE_HOST BETA\n",
    "passenv-empty": "\tpassenv =\n\tenv = NEW=n\n",
    "passenv-add": "\tpassenv += ALPHA\n\tenv = NEW=n\n",
}
DEFAULTS_PASSENV = {"defaults-passenv": "", "defaults-passenv-env": "\tenv = BETA=y NEW=n\n"}


def service(name: str, port: int, extra: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = root\n\tserver = {sys.executable}\n"
            f"\tserver_args = {PROBE} stream\n\tbind = 127.0.0.1\n\tport = {port}\n"
            f"{extra}}}\n")


def ask(port: int) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(10)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    try:
        return list(json.loads(data))
    except ValueError:
        return ["unreadable: " + repr(data)]


def main() -> int:
    run = begin()
    ports = {name: free_port() for name in [*CASES, *DEFAULTS_PASSENV]}
    # Two configurations: the defaults' passenv applies to every service of a file.
    plain_conf, defaults_conf = run.conf, run.conf + ".defaults"
    with open(plain_conf, "w") as f:
        f.write("".join(service(n, ports[n], extra) for n, extra in CASES.items()))
    with open(defaults_conf, "w") as f:
        f.write("defaults\n{\n\tpassenv = BETA ALPHA\n}\n"
                + "".join(service(n, ports[n], extra) for n, extra in DEFAULTS_PASSENV.items()))
    result: dict[str, list[str]] = {}
    without_remote = [(k, v) for k, v in STARTUP if k != "REMOTE_HOST"]
    # A supervisor that appends to an inherited environment names a variable twice.
    twice = STARTUP + [("ALPHA", "again"), ("ZED", "last")]
    runs = [(plain_conf, CASES, STARTUP, ""), (defaults_conf, DEFAULTS_PASSENV, STARTUP, ""),
            (plain_conf, CASES, without_remote, "/no-startup-remote"),
            (defaults_conf, DEFAULTS_PASSENV, without_remote, "/no-startup-remote"),
            (plain_conf, {n: CASES[n] for n in ("plain", "passenv")}, twice, "/named-twice")]
    for n, (conf, names, startup, suffix) in enumerate(runs):
        log = f"{conf}.{n}.log"
        env = dict(startup)
        command = [*run.daemon, "-f", conf, "-dontfork", "-filelog", log]
        if len(env) < len(startup):
            with open(f"{conf}.{n}.env", "wb") as f:
                f.write(b"".join(f"{k}={v}".encode() + b"\0" for k, v in startup))
            command = [sys.executable, "-S", EXEC_RAW_ENV, f"{conf}.{n}.env",
                       shutil.which(command[0]) or command[0], *command[1:]]
        proc = subprocess.Popen(command,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            if not wait_for(log, "Started working", time.monotonic() + 20):
                raise SystemExit("the daemon did not start")
            for name in names:
                result[name + suffix] = ask(ports[name])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
