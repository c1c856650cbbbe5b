"""Benchmark: load 1,000 service files and measure time and memory.

    python3 bench/config_load.py [--services N] [--keep DIR] [--no-xinetd]

Generates N service files (a realistic mix of attributes: stream and dgram, wait and
nowait, users, server_args, address lists, log flags, env/passenv, limits, a few
internal and redirected services) under an includedir, loads them with
pyxinetd.config.load and prints:

- load time (best of 3 runs) against the 1 s target;
- memory of the loaded configuration, measured twice: tracemalloc (bytes allocated
  by the load and still held by the Configuration) and the growth of the process's
  resident set, against the 20 MB target;
- when the real xinetd can be had (tests/oracle.py), its start-up time on the same
  files (from exec to its `Started working` line, in a private network namespace,
  namespace set-up subtracted using an empty configuration) and the ratio.

It is a benchmark, not a test: it reports, and exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD_TARGET_S = 1.0
MEMORY_TARGET_B = 20 * 1024 * 1024
FIRST_PORT = 20000

INTERNALS = [("echo", "stream"), ("echo", "dgram"), ("daytime", "stream"),
             ("time", "dgram"), ("chargen", "stream"), ("discard", "stream")]


def service_text(i: int, rng: random.Random) -> str:
    """One service file; every one is valid for xinetd and pyxinetd alike."""
    port = FIRST_PORT + i
    kind = rng.random()
    lines = [f"# generated service {i}", f"service bench{i:04d}", "{"]

    def attr(name: str, *values: object, op: str = "=") -> None:
        lines.append(f"\t{name:<15} {op} " + " ".join(str(v) for v in values))

    if kind < 0.05:
        # Internal services are chosen by name, so they keep theirs (unique by id).
        name, socktype = INTERNALS[i % len(INTERNALS)]
        lines[1] = f"service {name}"
        attr("id", f"bench{i:04d}")
        attr("type", "INTERNAL", "UNLISTED")
        attr("socket_type", socktype)
        attr("wait", "yes" if socktype == "dgram" else "no")
        attr("port", port)
    elif kind < 0.08:
        attr("type", "UNLISTED")
        attr("socket_type", "stream")
        attr("wait", "no")
        attr("port", port)
        attr("user", "nobody")
        attr("redirect", "127.0.0.1", 25)
    else:
        dgram = rng.random() < 0.2
        attr("type", "UNLISTED")
        if rng.random() < 0.5:
            attr("flags", *rng.sample(["REUSE", "IPv4", "NODELAY", "KEEPALIVE", "NOLIBWRAP"],
                                      rng.randint(1, 3)))
        attr("socket_type", "dgram" if dgram else "stream")
        attr("protocol", "udp" if dgram else "tcp")
        attr("wait", "yes" if dgram or rng.random() < 0.1 else "no")
        attr("port", port)
        attr("user", rng.choice(["nobody", "root", "daemon", "65534"]))
        if rng.random() < 0.3:
            attr("group", rng.choice(["nogroup", "daemon", "0"]))
        attr("server", rng.choice(["/bin/cat", "/bin/true", "/usr/bin/env"]))
        if rng.random() < 0.7:
            attr("server_args", *[f"--opt{k}=v{i}" for k in range(rng.randint(1, 5))])
        if rng.random() < 0.5:
            attr("instances", rng.choice([5, 10, 50, "UNLIMITED"]))
        if rng.random() < 0.4:
            attr("per_source", rng.choice([2, 5, 11, "UNLIMITED"]))
        if rng.random() < 0.3:
            attr("cps", rng.randint(10, 200), rng.randint(1, 30))
        if rng.random() < 0.5:
            attr("only_from", *rng.sample(["127.0.0.1", "10.0.0.0/8", "192.168.1.0",
                                           "172.16.{1,2,3}", "::1", "localhost",
                                           ".example.com", "0.0.0.0/0"],
                                          rng.randint(1, 4)))
        if rng.random() < 0.2:
            attr("no_access", "10.1.2.3", "10.9.0.0/16")
        if rng.random() < 0.1:
            attr("access_times", "08:00-12:00", "13:00-17:30")
        if rng.random() < 0.4:
            attr("log_on_success", *rng.sample(["PID", "HOST", "DURATION", "EXIT"], 2), op="+=")
        if rng.random() < 0.3:
            attr("log_on_failure", "USERID", op="+=")
        if rng.random() < 0.3:
            attr("env", f"SERVICE=bench{i}", "LANG=C")
        if rng.random() < 0.2:
            attr("passenv", "PATH", "TZ")
        if rng.random() < 0.1:
            attr("nice", rng.randint(0, 10))
        if rng.random() < 0.1:
            attr("umask", "022")
        if rng.random() < 0.1:
            attr("rlimit_as", "64M")
        if rng.random() < 0.1:
            attr("bind", "127.0.0.1")
    if rng.random() < 0.1:
        attr("log_type", "SYSLOG", "daemon", "info")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(folder: Path, count: int, seed: int = 2026) -> Path:
    rng = random.Random(seed)
    confd = folder / "xinetd.d"
    confd.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (confd / f"bench{i:04d}").write_text(service_text(i, rng))
    main = folder / "xinetd.conf"
    main.write_text("defaults\n{\n\tlog_type = SYSLOG daemon info\n"
                    "\tlog_on_failure = HOST\n\tlog_on_success = PID HOST\n"
                    "\tinstances = 60\n\tcps = 100 5\n}\n\n"
                    f"includedir {confd}\n")
    return main


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def bench_pyxinetd(main: Path, count: int, with_xinetd: bool) -> None:
    from pyxinetd.config import load

    environ = {"PATH": "/usr/bin:/bin", "TZ": "UTC"}
    load(str(main), environ=environ)          # warm-up: imports, NSS caches
    times = []
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        config = load(str(main), environ=environ)
        times.append(time.perf_counter() - start)
        del config
    gc.collect()
    rss_before = rss_bytes()
    config = load(str(main), environ=environ)
    rss_delta = rss_bytes() - rss_before
    services = len(config.services)
    problems = sum(1 for d in config.diagnostics if d.severity.value in ("error", "critical"))
    del config
    gc.collect()
    tracemalloc.start()
    config = load(str(main), environ=environ)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del config

    best = min(times)
    print(f"pyxinetd: {count} files -> {services} services, {problems} error diagnostics")
    print(f"  load time      best {best * 1000:8.1f} ms  (runs: "
          + ", ".join(f"{t * 1000:.1f}" for t in times)
          + f" ms)  target < {LOAD_TARGET_S:.0f} s: {mark(best < LOAD_TARGET_S)}")
    print(f"  memory held    {held / 2**20:8.2f} MB (tracemalloc; peak during load "
          f"{peak / 2**20:.2f} MB)  target < 20 MB: {mark(held < MEMORY_TARGET_B)}")
    print(f"  RSS growth     {rss_delta / 2**20:8.2f} MB  target < 20 MB: "
          f"{mark(rss_delta < MEMORY_TARGET_B)}")
    if with_xinetd:
        bench_xinetd(main, best)


def bench_xinetd(main: Path, ours: float) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import oracle
    except ImportError as exc:
        print(f"xinetd: skipped ({exc})")
        return
    if oracle.xinetd_path() is None:
        print(f"xinetd: skipped ({oracle.unavailable_reason()})")
        return
    empty = main.parent / "empty.conf"
    empty.write_text("")
    baseline = min(t for t in (oracle.xinetd_startup_seconds(empty) for _ in range(3))
                   if t is not None)
    runs = [oracle.xinetd_startup_seconds(main) for _ in range(3)]
    done = [t for t in runs if t is not None]
    if not done:
        print("xinetd: did not reach `Started working`")
        return
    theirs = max(min(done) - baseline, 1e-6)
    print(f"xinetd 2.3.15.3 start-up on the same files: {theirs * 1000:.1f} ms "
          f"(namespace set-up of {baseline * 1000:.1f} ms subtracted; includes binding "
          f"the sockets)")
    print(f"  ratio pyxinetd load / xinetd start-up: {ours / theirs:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--no-xinetd", action="store_true", help="skip the xinetd timing")
    args = parser.parse_args()
    if args.keep:
        bench_pyxinetd(generate(args.keep, args.services), args.services, not args.no_xinetd)
        return
    with tempfile.TemporaryDirectory(prefix="pyxinetd-bench-") as tmp:
        bench_pyxinetd(generate(Path(tmp), args.services), args.services, not args.no_xinetd)


if __name__ == "__main__":
    main()
