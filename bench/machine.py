"""The machine: what it is, and how busy it was (CPU-seconds, from /proc)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """CPU model, cores, memory, kernel, Python and wrk versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [
        line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line
    ]
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2
    try:
        wrk = subprocess.run(
            ["wrk", "--version"],  # noqa: S607  (wrk on PATH, as the docs say)
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split()[1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        wrk = "?"
    return (
        f"{models[0] if models else platform.processor()}, {os.cpu_count()} cores, "
        f"{memory_gib:.0f} GiB, Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}, wrk {wrk}"
    )


def machine_cpu() -> tuple[float, float]:
    """CPU-seconds all cores have been busy since boot, and those stolen by the hypervisor."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(n) for n in fields[:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def ours_cpu() -> float:
    """CPU-seconds of this process and every child it has waited for (servers, wrk)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def database_cpu() -> dict[int, float]:
    """CPU-seconds of each running PostgreSQL process, by pid."""
    result = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name.startswith("postgres"):
            fields = rest.split()
            result[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return result
