"""Reading a process's memory and CPU time, and a few facts about the machine, from /proc."""

from __future__ import annotations

import os
import platform
import sys

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(utime + stime of the process, cutime + cstime of its reaped children) in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name: state is field 3, utime field 14 ... cstime field 17.
    fields = stat[stat.rindex(b")") + 2:].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime, cutime + cstime


def system_cpu() -> tuple[int, int]:
    """(busy, total) jiffies summed over all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user/nice
    return total - idle, total


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as f:
            loadavg = f.read().split()[:3]
    except OSError:
        loadavg = []
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "mem_mib": mem_kib // 1024,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_at_start": loadavg,
        "clock_ticks_per_s": CLOCK_TICKS,
    }
