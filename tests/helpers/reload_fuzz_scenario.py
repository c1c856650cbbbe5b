"""A sequence of reloads described by a case file, against one daemon inside a private
network namespace (scripts/diff-fuzz-reload writes the case and compares two runs).

    unshare -n python3 reload_fuzz_scenario.py WORKDIR DAEMON [ARG...]

WORKDIR/case.json: {"steps": [STEP, ...]}; the first step starts the daemon, each
other one is a reload. A STEP is
  name        what the step changed
  services    {id: {"name": service name, "place": "main"|"extra"|"dir"|"dir2"|
                    "dir~"|"dir.rpmsave" (the last two: files of the `includedir`
                    folder whose names it skips, svc~ and svc.rpmsave),
                    "broken": bool, "attrs": {attribute: value}}}
  absent      the include files ("extra", "dir", "dir2") not there in this step
  defaults    {attribute: value} set in `defaults` over the scenario's own
  release     labels of held clients to close before the edit
  probes      [[label, "tcp"|"udp", port name, address], ...] after the reload
  hold        [[label, port name, first bytes], ...] clients to hold after the probes
Attribute values may name `{port:NAME}` (a free port, the same for one NAME),
`{server:TAG:MODE}` (the server_args of tests/helpers/reload_diff_server.py),
`{python}`, `{log:N}` (the Nth service log) and `{times:here}` or `{times:away}` (an
`access_times` that includes the hour of the step and the next one, or excludes
them). Each step is recorded as
reload_diff_scenario.py records its own (the same World, probes and observation), and
the run prints {"steps": [[name, observation], ...]}. Standard library only; every
wait bounded.
"""

import json
import os
import re
import shutil
import signal
import sys
import time

import reload_diff_scenario as rds
from scenario_support import begin, read, running, wait_for

# Probes of a port that does not answer wait this long (a refused client is closed at
# once; nothing here is silent on purpose).
rds.ANSWER_WAIT = 1.0


class FuzzWorld(rds.World):
    """The World of reload_diff_scenario.py, with any service in any of four files
    (the main one, the one named by `include`, two in the `includedir` folder), each
    of the three others there or not. Its servers may run as nobody: they can write
    their notes."""

    def __init__(self, workdir: str) -> None:
        super().__init__(workdir)
        with open(self.record, "a"):
            pass
        os.chmod(self.record, 0o666)
        # A server run as nobody cannot read the checkout's copy when the checkout lies
        # under /root (mode 0700): it runs one from the case's folder.
        self.server = shutil.copy(rds.SERVER, workdir)
        os.chmod(self.server, 0o644)

    def expand(self, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            kind, _, rest = match.group(1).partition(":")
            if kind == "port":
                return str(self.port(rest))
            if kind == "server":
                tag, mode = rest.split(":")
                return f"-I -S {self.server} {tag} {self.record} {mode} {os.getpid()}"
            if kind == "log":
                return self.logs[int(rest)]
            if kind == "times":
                return access_times(rest == "here")
            return sys.executable
        return re.sub(r"\{(port:[\w-]+|server:[\w-]+:\w+|log:\d|times:\w+|python)\}", one, value)

    def write_services(self, conf: str, step: dict[str, object]) -> None:
        services: dict[str, dict[str, object]] = step["services"]  # type: ignore
        files = {"main": "", "extra": "", "dir": "", "dir2": "", "dir~": "",
                 "dir.rpmsave": ""}
        for sid, spec in services.items():
            attrs = {k: self.expand(str(v)) for k, v in dict(spec["attrs"]).items()}
            attrs["_name"] = str(spec["name"])
            files[str(spec["place"])] += self.block(sid, attrs, bool(spec["broken"]))
        defaults = {"log_type": f"FILE {self.log}", "log_on_success": "PID HOST EXIT",
                    "log_on_failure": "HOST", "cps": "0 0"}
        defaults.update({k: self.expand(str(v))
                         for k, v in dict(step.get("defaults") or {}).items()})
        text = ("defaults\n{\n" + "".join(f"\t{k} = {v}\n" for k, v in defaults.items())
                + "}\n" + files["main"] + f"include {self.extra}\nincludedir {self.incdir}\n")
        absent = set(step.get("absent") or ())  # type: ignore[call-overload]
        for place, path in (("extra", self.extra),
                            ("dir", os.path.join(self.incdir, "svc")),
                            ("dir2", os.path.join(self.incdir, "svc2"))):
            if place in absent:
                if os.path.exists(path):
                    os.unlink(path)
                continue
            with open(path + ".new", "w") as f:
                f.write(files[place])
            os.replace(path + ".new", path)
        # Files the `includedir` skips for their names: written once a service is
        # placed there (and kept, maybe empty, after), so that cases without them
        # leave the folder as it was.
        for place, path in (("dir~", os.path.join(self.incdir, "svc~")),
                            ("dir.rpmsave", os.path.join(self.incdir, "svc.rpmsave"))):
            if files[place] or os.path.exists(path):
                with open(path, "w") as f:
                    f.write(files[place])
        with open(conf + ".new", "w") as f:
            f.write(text)
        os.replace(conf + ".new", conf)


def access_times(here: bool) -> str:
    """Two whole hours of the local clock: this one and the next (here), or the two
    three hours on (away). An interval cannot wrap midnight: each hour is its own."""
    hour = time.localtime().tm_hour + (0 if here else 3)
    return " ".join(f"{h % 24:02d}:00-{h % 24:02d}:59" for h in (hour, hour + 1))


def release(w: FuzzWorld, labels: list[str]) -> None:
    """Close held clients; wait for the servers they ended (and their EXIT lines)."""
    before = read(w.record)
    for label in labels:
        conn = w.held.pop(label, None)
        if conn is not None:
            conn.close()
    starts = [line.split() for line in before.splitlines()]
    tags = {label.split("#")[0] for label in labels}
    pids = [pid for tag, what, pid in starts if what == "start" and tag in tags]
    deadline = time.monotonic() + rds.ENDING
    for pid in pids:
        if rds.alive(pid):
            wait_for(w.record, rf"eof {pid}\b", deadline)
    rds.wait_gone(w, [pid for pid in pids if rds.alive(pid)])
    time.sleep(rds.SETTLE)


def children(pid: int) -> set[str]:
    """The processes whose parent is `pid` (zombies included: not yet reaped)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == str(pid):
                    found.add(entry)
        except (OSError, IndexError):
            continue
    return found


def probe(w: FuzzWorld, daemon: int, proto: str, port: str, addr: str) -> str:
    """A probe, then (bounded) until the daemon has ended, reaped and logged what it
    started for it: with `instances`, a probe right after another one would find the
    first one's session still counted. xinetd's builtins and redirects run in a child
    it has to reap (`FAIL: ID service_limit` until then); pyxinetd's in-loop session
    (pid=0) ends when its loop has read the client's close."""
    before = children(daemon)
    sizes = {path: len(read(path)) for path in w.logs}
    answer = (rds.probe_tcp if proto == "tcp" else rds.probe_udp)(w.port(port), addr)

    def ended() -> bool:
        # Every START with a pid gets its EXIT (the fuzzer's log_on_success values
        # have PID only with EXIT), logged once the session no longer counts.
        new = "".join(read(path)[size:] for path, size in sizes.items())
        return (not children(daemon) - before
                and len(re.findall(r"^\S+ EXIT: ", new, re.M))
                >= len(re.findall(r"^\S+ START: .* pid=", new, re.M)))

    deadline = time.monotonic() + rds.ENDING
    while time.monotonic() < deadline and not ended():
        time.sleep(0.01)
    return answer


def main() -> int:
    run = begin()
    os.environ["PYXINETD_KILL_GRACE"] = "0.5"
    os.environ["FUZZPASS"] = "daemon"      # for the services' `passenv`
    w = FuzzWorld(os.path.dirname(run.conf))
    with open(os.path.join(w.workdir, "case.json")) as f:
        case = json.load(f)
    steps: list[tuple[str, dict[str, object]]] = []
    w.write_services(run.conf, case["steps"][0])
    reloads = 0
    with running(run.daemon, run.conf, run.program_log, "-stayalive") as daemon:
        for n, spec in enumerate(case["steps"]):
            if n:
                release(w, spec["release"])
                w.write_services(run.conf, spec)
                reloads += 1
                daemon.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and len(
                        re.findall(rds.RELOAD_END, read(run.program_log))) < reloads:
                    time.sleep(0.02)
                signalled = re.findall(r"Sending signal \d+ to \S+ server (\d+)",
                                       read(run.program_log)[w.seen["program"]:])
                rds.wait_gone(w, signalled)
            before_probes = len(read(w.record))
            done: dict[str, object] = {}
            for label, proto, port, addr in spec["probes"]:
                done[label] = probe(w, daemon.pid, proto, port, addr)
            started = [line.split() for line in read(w.record)[before_probes:].splitlines()]
            rds.wait_gone(w, (pid for _tag, what, pid in started if what == "start"))
            for label, port, first in spec["hold"]:
                done[f"hold {label}"] = rds.hold(w, label, w.port(port), first.encode())
            steps.append((spec["name"], rds.observe(w, run.program_log, done)))
        for conn in w.held.values():
            conn.close()
    rds.stop_servers(w)
    print(json.dumps({"steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
