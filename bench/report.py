"""Verdicts against the targets, and the printed table."""

from __future__ import annotations

import sys
from typing import Any

from bench.cases import Case
from bench.confgen import BenchService

RSS_TARGET_KIB = 25 * 1024  # pyxinetd's resident set: at most 25 MiB
IDLE_TICKS_TARGET = 0  # pyxinetd's CPU time while idle
CEILING_WARN = 0.7  # a daemon above this fraction of the client ceiling may be client-bound


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt_ms(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def ceiling_key(kind: str, concurrency: int) -> str:
    return f"{kind}-c{concurrency}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def cpu_per_request(r: dict[str, Any], cpus: int) -> dict[str, float] | None:
    """Microseconds of CPU per completed request: the daemon itself, the servers it reaped,
    and everything else on the machine (clients, kernel work charged to them, other jobs).

    When the machine is saturated (several clients on few cores), the rate is simply the
    cores divided by `total`, so the ratio of two daemons' totals is the ratio their rates
    can reach there, whatever their latency."""
    rate = r.get("rate_per_s")
    keys = ("daemon_cpu_pct", "reaped_children_cpu_pct", "machine_busy_pct")
    if not rate or any(k not in r for k in keys):
        return None
    daemon = r["daemon_cpu_pct"] / 100 / rate * 1e6
    servers = r["reaped_children_cpu_pct"] / 100 / rate * 1e6
    # The machine-wide counters tick at 100 Hz: at a few requests per second (xinetd's
    # UDP echo) they can read less than the daemon's own share.
    total = max(r["machine_busy_pct"] / 100 * cpus / rate * 1e6, daemon + servers)
    return {"daemon": round(daemon), "servers": round(servers),
            "other": round(total - daemon - servers), "total": round(total)}


def round_ratios(xi: dict[str, Any], py: dict[str, Any]) -> list[float]:
    """pyxinetd/xinetd per round: the two daemons of a round ran back to back, so each
    ratio compares them under the same conditions; their spread shows the noise."""
    xs, ps = xi.get("round_rates_per_s"), py.get("round_rates_per_s")
    if not xs or not ps or len(xs) != len(ps):
        return []
    return [round(p / x, 3) for x, p in zip(xs, ps) if x > 0]


def case_row(case: Case, service: BenchService, results: dict[str, Any],
             ceilings: dict[str, dict[str, Any]], cpus: int = 1) -> dict[str, Any]:
    xi, py = results.get("xinetd"), results.get("pyxinetd")
    warnings = []
    ceiling = ceilings.get(ceiling_key(service.kind, case.concurrency))
    fractions = {}
    for name, r in results.items():
        if r.get("errors"):
            warnings.append(f"{name}: {r['errors']} failed requests {r['error_kinds']}")
        if r.get("udp_retransmits"):
            warnings.append(f"{name}: {r['udp_retransmits']} UDP requests sent again after "
                            "a lost datagram")
        if r.get("note"):
            warnings.append(f"{name}: {r['note']}")
        if ceiling and ceiling["rate_per_s"]:
            fractions[name] = round(r["rate_per_s"] / ceiling["rate_per_s"], 3)
            if fractions[name] > CEILING_WARN:
                warnings.append(f"{name} reached {fractions[name]:.0%} of the load generator's "
                                f"ceiling ({ceiling['rate_per_s']:.0f}/s): it may be client-bound")
    ratio = None
    rate_ok = p99_ok = None
    if xi and py and xi["rate_per_s"] > 0:
        ratio = round(py["rate_per_s"] / xi["rate_per_s"], 3)
        rate_ok = ratio >= case.min_ratio
        if xi["p99_ms"] is not None and py["p99_ms"] is not None:
            p99_ok = py["p99_ms"] <= xi["p99_ms"]
    return {
        "name": case.name,
        "what": case.what,
        "kind": service.kind,
        "concurrency": case.concurrency,
        "target_ratio": case.min_ratio,
        "results": results,
        "ratio": ratio,
        "rate_verdict": _verdict(rate_ok),
        "p99_verdict": _verdict(p99_ok),
        "ceiling_fraction": fractions,
        "round_ratios": round_ratios(xi, py) if xi and py else [],
        "cpu_per_request_us": {name: cpu_per_request(r, cpus) for name, r in results.items()},
        "warnings": warnings,
    }


def resource_verdicts(resources: dict[str, Any]) -> dict[str, str]:
    py = resources.get("pyxinetd", {})
    verdicts = {}
    for which in ("bench", "many"):
        entry = py.get(which)
        if not entry or "error" in entry:
            continue
        rss = entry.get("rss_kib")
        verdicts[f"rss_{which}"] = _verdict(None if rss is None else rss <= RSS_TARGET_KIB)
        if "idle_ticks" in entry:
            ticks = entry["idle_ticks"]
            verdicts[f"idle_{which}"] = _verdict(
                None if ticks is None else ticks <= IDLE_TICKS_TARGET)
    return verdicts


def _rate(r: dict[str, Any] | None) -> str:
    return f"{r['rate_per_s']:.1f}" if r else "-"


def _mib(kib: object) -> str:
    return f"{kib / 1024:.1f}" if isinstance(kib, (int, float)) else "-"


def _cpu_text(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "-"
    return f"{cpu['daemon']:.0f} + {cpu['servers']:.0f} + {cpu['other']:.0f} = {cpu['total']:.0f}"


def _cpu_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Where each request's CPU went, the ratio a saturated machine allows, and the
    per-round ratios."""
    lines = ["", "CPU per request, us: daemon + its servers + everything else = total; "
             "'cpu' = xinetd total / pyxinetd total",
             f"{'case':<15} {'xinetd':>27} {'pyxinetd':>27} {'cpu':>6}  per-round ratios"]
    for row in rows:
        cpu = row.get("cpu_per_request_us") or {}
        xi, py = cpu.get("xinetd"), cpu.get("pyxinetd")
        cpu_ratio = (f"{xi['total'] / py['total']:.2f}" if xi and py and py["total"]
                     else "-")
        rounds = " ".join(f"{r:.2f}" for r in row.get("round_ratios", [])) or "-"
        lines.append(f"{row['name']:<15} {_cpu_text(xi):>27} {_cpu_text(py):>27} "
                     f"{cpu_ratio:>6}  {rounds}")
    return lines


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "",
        f"pyxinetd serving benchmark  commit {data.get('git_commit')}  {data['generated']}",
        f"machine: {m['cpus']} x {m['cpu_model']}, {m['mem_mib']} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}",
        f"per case and daemon: {data['options']['rounds']} x ({data['options']['warmup']:g} s "
        f"warm-up + {data['options']['duration']:g} s measured, 4 x that for wait-c1); "
        f"requests/s, latency in ms",
        "",
    ]
    head = (f"{'case':<15}{'cl':>3} | {'xinetd/s':>9}{'p50':>7}{'p99':>7} | "
            f"{'pyxinetd/s':>10}{'p50':>7}{'p99':>7} | {'ratio':>6}{'target':>8}"
            f"{'rate':>6}{'p99':>6}")
    lines += [head, "-" * len(head)]
    warnings = []
    for row in data.get("cases", []):
        xi, py = row["results"].get("xinetd"), row["results"].get("pyxinetd")
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        lines.append(
            f"{row['name']:<15}{row['concurrency']:>3} | {_rate(xi):>9}"
            f"{fmt_ms(xi and xi['p50_ms']):>7}{fmt_ms(xi and xi['p99_ms']):>7} | "
            f"{_rate(py):>10}{fmt_ms(py and py['p50_ms']):>7}{fmt_ms(py and py['p99_ms']):>7} | "
            f"{ratio:>6}{'>=' + format(row['target_ratio'], 'g'):>8}"
            f"{row['rate_verdict']:>6}{row['p99_verdict']:>6}")
        warnings += [f"{row['name']}: {w}" for w in row["warnings"]]
    lines += _cpu_lines(data.get("cases", []))
    ceilings = data.get("ceilings") or {}
    if ceilings:
        lines += ["", f"load generator: {data.get('load_generator', 'Python')}; its ceiling "
                  "(trivial pre-forked server): " + ", ".join(
            f"{k} {v['rate_per_s']:.0f}/s" for k, v in ceilings.items())]
    resources = data.get("resources") or {}
    if resources:
        verdicts = data.get("resource_verdicts", {})
        lines += ["", f"{'resources':<44}{'xinetd':>10}{'pyxinetd':>10}  target"]
        for which, label in (("bench", "benchmark configuration"),
                             ("many", f"{data['options']['services']} services")):
            xi_e = resources.get("xinetd", {}).get(which, {})
            py_e = resources.get("pyxinetd", {}).get(which, {})
            if not xi_e and not py_e:
                continue
            lines.append(f"{'RSS MiB, ' + label:<44}{_mib(xi_e.get('rss_kib')):>10}"
                         f"{_mib(py_e.get('rss_kib')):>10}  <= {RSS_TARGET_KIB // 1024} "
                         f"{verdicts.get('rss_' + which, 'n/a')}")
            lines.append(f"{'  of which anonymous (not shared)':<44}"
                         f"{_mib(xi_e.get('rss_anon_kib')):>10}{_mib(py_e.get('rss_anon_kib')):>10}")
            if "idle_ticks" in xi_e or "idle_ticks" in py_e:
                idle = xi_e.get("idle_s", py_e.get("idle_s"))
                lines.append(f"{f'CPU ticks idle {idle:g} s, ' + label:<44}"
                             f"{str(xi_e.get('idle_ticks', '-')):>10}"
                             f"{str(py_e.get('idle_ticks', '-')):>10}  == 0 "
                             f"{verdicts.get('idle_' + which, 'n/a')}")
            for name, e in (("xinetd", xi_e), ("pyxinetd", py_e)):
                if "error" in e:
                    warnings.append(f"{name} ({label}): {e['error']}")
    for name, why in (data.get("dropped_daemons") or {}).items():
        warnings.append(f"{name} was not measured: {why}")
    if warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in warnings]
    return "\n".join(lines)
