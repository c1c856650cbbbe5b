"""Serve several generated services from one daemon (scripts/diff-fuzz-serve --shared)
and report what every client saw and each service's log.

    unshare -n -m python3 serve_shared_scenario.py CASE_JSON DAEMON [ARG...]

CASE_JSON holds {"services": [...], "defaults": LINES, "limit": N or null, "waves":
[...]}. Services are those of serve_fuzz_scenario.py (their own "waves" unused);
"defaults" are the attribute lines of a `defaults` section, and "limit" the daemon's
`-limit`. A wave is {"clients": [...], "signal": null, "USR1", "HUP" or "HUP-disable"
(with "disable": a service id)}: its clients ({"svc": id, "src", "data",
"half_close"}) connect in order, each once the daemon has reaped every server but
those of the clients still held, and are held until the wave ends. The wave's signal
comes once all its clients are connected: the scenario waits for the daemon's `generated
state dump` or `Reconfigured` line, then sends each client still open one more line
and reads again (a held client must still be served, or see its server end when its
service was disabled). `HUP-disable` first rewrites the configuration with
`disable = yes` in that service. Then the wave's connections are closed and the
daemon's servers are waited for. A case with a SIGUSR1 mounts a tmpfs on /run first,
so the dumps go to a /var/run/xinetd.dump of its own.

Prints one JSON object: for each service id, "clients" (one line each, in the
service's order: what the client got, then ` | after SIGNAL: ` and what it got after
the signal when it was held across one) and "log" (sorted, as serve_fuzz_scenario.py
makes it). Standard library only; every wait bounded.
"""

import json
import os
import signal
import subprocess
import sys
import time

from procs import children_of
from scenario_support import begin, free_port, read, running, seen, wait_count, write_file
from serve_fuzz_scenario import (
    ENDING, PATIENCE, QUIET, dgram_client, echo_server, log_lines, normalised, quiesce,
    reaped, stream_client)

SIGNALLED = 10.0     # at most this long for the daemon to log that it handled a signal


def configuration(case, workdir, ports, echo, disabled):
    text = "defaults\n{\n" + case["defaults"] + "}\n"
    for svc in case["services"]:
        body = svc["body"].replace("{W}", workdir).replace("{ECHO}", str(echo))
        if svc["id"] in disabled:
            body += "\tdisable = yes\n"
        text += (f"service {svc['name']}\n{{\n\tid = {svc['id']}\n\tport = {ports[svc['id']]}\n"
                 f"\tbind = 127.0.0.1\n\tlog_type = FILE {workdir}/{svc['id']}.log\n"
                 f"{body}}}\n")
    return text


def deliver(wave, proc, run, case, workdir, ports, echo, disabled):
    """Send the wave's signal and wait for the daemon to have handled it."""
    name = wave["signal"]
    if name == "USR1":
        line, sig = "generated state dump", signal.SIGUSR1
    else:
        line, sig = "Reconfigured:", signal.SIGHUP
        if name == "HUP-disable":
            disabled.add(wave["disable"])
            write_file(run.conf, configuration(case, workdir, ports, echo, disabled))
    count = read(run.program_log).count(line)
    proc.send_signal(sig)
    wait_count(run.program_log, line, count + 1, time.monotonic() + SIGNALLED)


def run_wave(wave, services, ports, proc, deliver_signal):
    """The wave's clients; (service id, what the client got) for each, in order."""
    results = []
    held = []           # (index in results, connection) of stream clients still open
    serving = set()
    for client in wave["clients"]:
        svc = services[client["svc"]]
        patience = PATIENCE if svc["kind"] in ENDING else QUIET
        port = ports[svc["id"]]
        if svc["dgram"]:
            results.append([svc["id"], dgram_client(port, client, max(patience, QUIET * 2))])
            reaped(proc.pid, serving)
            continue
        conn, error = stream_client(port, client)
        if conn is None:
            results.append([svc["id"], error])
            reaped(proc.pid, serving)
            continue
        got = seen(conn, wait=patience)
        if svc["unread"]:   # a server that never reads: reset or EOF is a race
            got = got.replace("ConnectionResetError", "EOF")
        results.append([svc["id"], got])
        if got.endswith(" open"):
            held.append((len(results) - 1, conn))
            serving = set(children_of(proc.pid))
        else:
            conn.close()
            reaped(proc.pid, serving)
    if wave["signal"]:
        deliver_signal(wave)
        for index, conn in held:
            after = seen(conn, b"z\n", wait=QUIET, reset_after_data_is_eof=True)
            results[index][1] += f" | after {wave['signal']}: {after}"
    for _, conn in held:
        conn.close()
    quiesce(proc.pid)
    return results


def main():
    case_path = sys.argv[1]
    with open(case_path) as f:
        case = json.load(f)
    sys.argv[1] = workdir = os.path.dirname(case_path)
    run = begin()
    echo = echo_server()
    ports = {svc["id"]: free_port() for svc in case["services"]}
    services = {svc["id"]: svc for svc in case["services"]}
    disabled = set()
    write_file(run.conf, configuration(case, workdir, ports, echo, disabled))
    if any(wave["signal"] == "USR1" for wave in case["waves"]):
        # The dump goes to /var/run/xinetd.dump: a private /run (the scenario runs in
        # its own mount namespace) keeps it off the host's.
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    keep = {k: os.environ[k] for k in ("PATH", "PYTHONPATH", "HOME", "LANG") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    options = ["-limit", str(case["limit"])] if case["limit"] is not None else []
    out = {svc["id"]: {"clients": []} for svc in case["services"]}
    with running(run.daemon, run.conf, run.program_log, *options) as proc:
        def deliver_signal(wave):
            deliver(wave, proc, run, case, workdir, ports, echo, disabled)
        for wave in case["waves"]:
            for sid, got in run_wave(wave, services, ports, proc, deliver_signal):
                out[sid]["clients"].append(normalised(got))
        quiesce(proc.pid)
    for svc in case["services"]:
        out[svc["id"]]["log"] = log_lines(os.path.join(workdir, f"{svc['id']}.log"))
    out["program"] = [line.split(": ", 1)[1] for line in read(run.program_log).split("\n")
                      if ": " in line]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
