#!/usr/bin/env python3
"""Serving benchmark: pyxinetd against the real xinetd 2.3.15.3, same configuration, same run.

    python3 bench/serve.py [--duration S] [--cases GLOBS] [--idle S] [--services N] ...

Phases, all on 127.0.0.1:
1. the load generator's ceiling: the same client loops against trivial pre-forked servers;
2. the cases: for each case, each daemon is started on the generated configuration, the
   clients run a warm-up then a measured window, and the daemon is stopped (daemons are
   restarted per case, and which one goes first alternates, so drift on a shared machine
   does not favour either);
3. resources: both daemons started at once, each on the benchmark configuration and on one
   with --services services (same text, each on its own free ports): VmRSS, then the CPU
   ticks used over --idle idle seconds.
Prints a table and writes every number to bench/results/latest.json (or --json).
Run it as root: the nobody case needs the daemons to switch users.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make `bench` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cases as case_table  # noqa: E402
from bench import cclient, confgen, daemons, loadgen, procinfo, profile, report  # noqa: E402
from bench.procs import Janitor, become_subreaper, terminate_raises  # noqa: E402
from bench.refserver import reference_server  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
DAEMONS = ("xinetd", "pyxinetd")


@dataclass
class Context:
    args: argparse.Namespace
    janitor: Janitor
    workdir: Path
    specs: dict[str, daemons.DaemonSpec]
    failed: dict[str, str] = field(default_factory=dict)  # daemon -> why it was dropped
    profiles: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    tools: cclient.CTools | None = None  # compiled C client and server; None: Python


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0,
                   help="measured seconds per case and daemon (default 5; the slow "
                        "wait=yes case runs 4 times as long, for a steadier p99)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every case this many times, interleaved; figures are pooled "
                        "(default 1)")
    p.add_argument("--warmup", type=float, default=0.5,
                   help="unmeasured seconds of load before each measurement (default 0.5)")
    p.add_argument("--cases", default=None,
                   help="comma-separated case names or globs; a word matches a prefix "
                        "(default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--idle", type=float, default=30.0,
                   help="idle seconds for the CPU-time measurement (default 30; 0 skips)")
    p.add_argument("--services", type=int, default=1000,
                   help="services in the memory configuration (default 1000; 0 skips)")
    p.add_argument("--no-resources", action="store_true",
                   help="skip the RSS and idle-CPU phase")
    p.add_argument("--daemons", default=",".join(DAEMONS),
                   help="which daemons to run (default xinetd,pyxinetd)")
    p.add_argument("--xinetd", default=None,
                   help="xinetd binary or wrapper (default: what scripts/fetch-xinetd prints)")
    p.add_argument("--pyxinetd-cmd", default=None,
                   help="command that runs pyxinetd (default: PYTHON -m pyxinetd)")
    p.add_argument("--ceiling-duration", type=float, default=None,
                   help="measured seconds per load-generator ceiling run (default: "
                        "--duration, at most 3)")
    p.add_argument("--no-ceiling", action="store_true", help="skip the ceiling phase")
    p.add_argument("--python-clients", action="store_true",
                   help="drive the daemons with the Python request loop instead of the C "
                        "client (bench/loadclient.c, compiled for the run when a C "
                        "compiler is installed)")
    p.add_argument("--service-log", action="store_true",
                   help="give both daemons a FILE service log (START/EXIT per connection)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="per-request socket timeout in seconds (default 5)")
    p.add_argument("--udp-rto", type=float, default=0.1,
                   help="seconds before a UDP request is sent again (default 0.1)")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="sample pyxinetd with py-spy during each case; collapsed stacks go "
                        "to DIR, a summary to the JSON (rates are then not comparable)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (configurations and daemon logs)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.duration <= 0 or args.warmup < 0 or args.idle < 0 or args.services < 0:
        p.error("durations and counts must not be negative (and --duration > 0)")
    return args


# -- phase 1: the load generator's ceiling ----------------------------------------------

def measure_ceilings(ctx: Context, chosen: list[case_table.Case],
                     services: dict[str, confgen.BenchService]) -> dict[str, dict[str, object]]:
    args = ctx.args
    duration = args.ceiling_duration or min(args.duration, 3.0)
    wanted = sorted({(services[c.service].kind, services[c.service].payload, c.concurrency)
                     for c in chosen})
    ceilings: dict[str, dict[str, object]] = {}
    for kind, payload, concurrency in wanted:
        with reference_server(ctx.janitor, kind, payload,
                              binary=ctx.tools.refserver if ctx.tools else None) as addr:
            result = loadgen.run_load(ctx.janitor, kind, addr, payload, concurrency,
                                      args.warmup, duration, args.timeout, args.udp_rto,
                                      client=ctx.tools.client if ctx.tools else None)
        ceilings[report.ceiling_key(kind, concurrency)] = result.summary()
        report.progress(f"ceiling {kind:<5} c{concurrency}: {result.rate:10.1f} req/s"
                        + (f"  ({result.errors} errors)" if result.errors else ""))
    return ceilings


# -- phase 2: the cases ------------------------------------------------------------------

def _probe(pid: int) -> loadgen.Probe:
    def probe() -> dict[str, float]:
        ticks = procinfo.cpu_ticks(pid) or (0, 0)
        busy, total = procinfo.system_cpu()
        return {"self": ticks[0], "children": ticks[1], "sys_busy": busy, "sys_total": total}
    return probe


def _cpu_summary(result: loadgen.LoadResult) -> dict[str, float]:
    if result.probes is None:
        return {}
    a, b = result.probes
    seconds = result.duration * procinfo.CLOCK_TICKS
    sys_total = b["sys_total"] - a["sys_total"]
    return {
        "daemon_cpu_pct": round(100 * (b["self"] - a["self"]) / seconds, 1),
        "reaped_children_cpu_pct": round(100 * (b["children"] - a["children"]) / seconds, 1),
        "machine_busy_pct": round(100 * (b["sys_busy"] - a["sys_busy"]) / sys_total, 1)
        if sys_total else 0.0,
    }


Measured = tuple[loadgen.LoadResult, dict[str, Any]]  # a run and the daemon's figures


def run_case(ctx: Context, case: case_table.Case, service: confgen.BenchService,
             conf: Path, order: list[str]) -> dict[str, Measured]:
    """One round of one case: each daemon in `order` started, measured and stopped."""
    args = ctx.args
    results: dict[str, Measured] = {}
    for name in order:
        if name in ctx.failed:
            continue
        try:
            running = daemons.start(ctx.janitor, ctx.specs[name], conf, ctx.workdir,
                                    f"{case.name}-{name}")
        except daemons.DaemonError as e:
            ctx.failed[name] = str(e).splitlines()[0]
            report.progress(f"{name} could not start, dropped from the run:\n{e}")
            continue
        sampler = None
        if args.profile and name == "pyxinetd":
            runs = len(ctx.profiles.get(case.name, []))
            sampler = profile.Sampler(ctx.janitor, running.pid,
                                      args.profile / f"{case.name}-{runs}.txt")
        try:
            result = loadgen.run_load(ctx.janitor, service.kind, ("127.0.0.1", service.port),
                                      service.payload, case.concurrency, args.warmup,
                                      args.duration * case.duration_factor, args.timeout,
                                      args.udp_rto, probe=_probe(running.pid),
                                      client=ctx.tools.client if ctx.tools else None)
            extra: dict[str, Any] = dict(_cpu_summary(result))
            extra["rss_after_kib"] = procinfo.status_kib(running.pid, "VmRSS")
            extra["hwm_after_kib"] = procinfo.status_kib(running.pid, "VmHWM")
            if running.proc.poll() is not None:
                extra["note"] = f"daemon exited during the case (status {running.proc.returncode})"
        finally:
            if sampler is not None:
                ctx.profiles.setdefault(case.name, []).append(sampler.finish())
            daemons.stop(ctx.janitor, running)
        results[name] = (result, extra)
        report.progress(f"{case.name:<15} {name:<8} {result.rate:10.1f} req/s  "
                        f"p50 {report.fmt_ms(result.summary()['p50_ms'])} ms  "
                        f"p99 {report.fmt_ms(result.summary()['p99_ms'])} ms  "
                        f"daemon cpu {extra.get('daemon_cpu_pct', 0):.0f}%"
                        + (f"  {result.errors} errors {result.error_kinds}"
                           if result.errors else "")
                        + (f"  {result.retransmits} UDP retransmissions"
                           if result.retransmits else ""))
    return results


def combine(rounds: list[Measured]) -> dict[str, Any]:
    """One daemon's figures for a case over every round: pooled requests and latencies."""
    merged = loadgen.merge([r for r, _ in rounds])
    summary = merged.summary()
    extras = [e for _, e in rounds]
    for key in ("daemon_cpu_pct", "reaped_children_cpu_pct", "machine_busy_pct"):
        values = [e[key] for e in extras if key in e]
        if values:
            summary[key] = round(sum(values) / len(values), 1)
    for key in ("rss_after_kib", "hwm_after_kib"):
        values = [e[key] for e in extras if e.get(key) is not None]
        summary[key] = max(values) if values else None
    notes = [e["note"] for e in extras if "note" in e]
    if notes:
        summary["note"] = "; ".join(notes)
    if len(rounds) > 1:
        summary["round_rates_per_s"] = [round(r.rate, 1) for r, _ in rounds]
    return summary


# -- phase 3: memory and idle CPU --------------------------------------------------------

def measure_resources(ctx: Context, names: list[str]) -> dict[str, dict[str, object]]:
    """Both daemons at once, each on the bench configuration and on the N-service one."""
    args = ctx.args
    configs: list[tuple[str, str, Path]] = []
    for name in names:
        text, _ = confgen.bench_config()
        conf = ctx.workdir / f"resources-bench-{name}.conf"
        conf.write_text(text)
        configs.append((name, "bench", conf))
        if args.services:
            conf = ctx.workdir / f"resources-many-{name}.conf"
            conf.write_text(confgen.many_services_config(args.services))
            configs.append((name, "many", conf))
    running: list[tuple[str, str, daemons.Running]] = []
    out: dict[str, dict[str, object]] = {name: {} for name in names}
    try:
        for name, which, conf in configs:
            try:
                r = daemons.start(ctx.janitor, ctx.specs[name], conf, ctx.workdir,
                                  f"resources-{which}-{name}", timeout=120.0)
            except daemons.DaemonError as e:
                out[name][which] = {"error": str(e).splitlines()[0]}
                report.progress(f"{name} ({which} configuration) could not start:\n{e}")
                continue
            running.append((name, which, r))
        time.sleep(1.0)  # let start-up work (imports, first allocations) settle
        before = {}
        for name, which, r in running:
            before[(name, which)] = procinfo.cpu_ticks(r.pid)
            out[name][which] = {"services": r.services,
                                "rss_kib": procinfo.status_kib(r.pid, "VmRSS"),
                                "hwm_kib": procinfo.status_kib(r.pid, "VmHWM"),
                                # Anonymous memory is the daemon's own; file-backed pages
                                # (interpreter, libraries) are shared with other processes.
                                "rss_anon_kib": procinfo.status_kib(r.pid, "RssAnon"),
                                "rss_file_kib": procinfo.status_kib(r.pid, "RssFile")}
        if args.idle and running:
            report.progress(f"idle for {args.idle:g} s ...")
            time.sleep(args.idle)
            for name, which, r in running:
                t0, t1 = before[(name, which)], procinfo.cpu_ticks(r.pid)
                entry = out[name][which]
                assert isinstance(entry, dict)
                entry["idle_s"] = args.idle
                entry["idle_ticks"] = None if t0 is None or t1 is None else t1[0] - t0[0]
                entry["rss_after_idle_kib"] = procinfo.status_kib(r.pid, "VmRSS")
    finally:
        for _, _, r in running:
            daemons.stop(ctx.janitor, r)
    return out


# -- the run -----------------------------------------------------------------------------

def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(daemons.REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _raise_fd_limit() -> int:
    """1,000 listeners need more than the usual soft limit of 1,024 descriptors; the
    daemons inherit the raised limit (xinetd sizes its tables from the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(args: argparse.Namespace) -> int:
    chosen = case_table.select(args.cases)
    names = [n.strip() for n in args.daemons.split(",") if n.strip()]
    if not names or any(n not in DAEMONS for n in names):
        raise SystemExit(f"--daemons takes a list of {', '.join(DAEMONS)}")
    if os.geteuid() != 0:
        report.progress("warning: not root; the daemons cannot switch to nobody")
    nofile = _raise_fd_limit()
    subreaper = become_subreaper()
    janitor = Janitor()
    workdir = Path(tempfile.mkdtemp(prefix="pyxinetd-bench-"))
    specs: dict[str, daemons.DaemonSpec] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            specs[name] = (daemons.xinetd_spec(args.xinetd) if name == "xinetd"
                           else daemons.pyxinetd_spec(args.pyxinetd_cmd))
        except daemons.DaemonError as e:
            failed[name] = str(e)
    ctx = Context(args, janitor, workdir, specs, failed)
    if args.python_clients:
        client_text = "Python (--python-clients)"
    else:
        ctx.tools, client_text = cclient.build(workdir)
        if ctx.tools is None:
            client_text = f"Python ({client_text})"
    report.progress(f"load generator: {client_text}")
    data: dict[str, object] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": _git_commit(),
        "machine": procinfo.machine(),
        "commands": {n: list(s.argv) for n, s in specs.items()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "nofile_soft_limit": nofile,
        "subreaper": subreaper,
        "load_generator": client_text,
    }
    try:
        with terminate_raises():
            service_log = str(workdir / "service.log") if args.service_log else None
            text, bench_services = confgen.bench_config(service_log)
            conf = workdir / "bench.conf"
            conf.write_text(text)
            services = {s.key: s for s in bench_services}
            data["config"] = text
            ceilings = {} if args.no_ceiling else measure_ceilings(ctx, chosen, services)
            data["ceilings"] = ceilings
            measured: dict[str, dict[str, list[Measured]]] = {c.name: {} for c in chosen}
            for round_no in range(args.rounds):
                for i, case in enumerate(chosen):
                    # Alternate which daemon goes first, so neither always runs warmer.
                    order = names if (i + round_no) % 2 == 0 else list(reversed(names))
                    for name, m in run_case(ctx, case, services[case.service], conf,
                                            order).items():
                        measured[case.name].setdefault(name, []).append(m)
            data["cases"] = [
                report.case_row(case, services[case.service],
                                {n: combine(ms) for n, ms in measured[case.name].items()},
                                ceilings, os.cpu_count() or 1)
                for case in chosen]
            alive = [n for n in names if n in specs and n not in ctx.failed]
            resources = ({} if args.no_resources or not alive
                         else measure_resources(ctx, alive))
            data["resources"] = resources
            data["resource_verdicts"] = report.resource_verdicts(resources)
    finally:
        janitor.cleanup()
        data["dropped_daemons"] = ctx.failed
        if ctx.profiles:
            data["profiles"] = ctx.profiles
        data["workdir"] = str(workdir) if args.keep else None
        if not args.keep:
            for path in sorted(workdir.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            workdir.rmdir()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(report.render(data))
    print(f"\nJSON: {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for case in case_table.CASES:
            print(f"{case.name:<16} ratio >= {case.min_ratio:<4g} {case.what}")
        return 0
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; every started process was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
