"""How many cores this process may use: the default number of HTTP processes.

One Python process uses one core, so `ieum serve` answers with one process per core it
may run on. That is the smallest of: the CPUs it is allowed on (its affinity, as
`taskset` or a cpuset sets it; Python 3.13's `os.process_cpu_count()`), and the CPU
quota of its control group rounded up (a container started with `--cpus=2` on a
64-core host may use two, not 64, though it sees all of them).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
MAX_PROCESSES = 64


def http_processes() -> int:
    """The default of IEUM_WORKERS: a process per core where the kernel spreads a port's
    connections over processes (Linux's SO_REUSEPORT); elsewhere extra processes would
    idle (macOS, the BSDs) or cannot share the port (Windows), so one."""
    return min(available(), MAX_PROCESSES) if sys.platform == "linux" else 1


def available() -> int:
    """Cores this process may use, at least 1."""
    allowed = _allowed_cpus()
    quota = cgroup_quota(CGROUP)
    return max(1, min(allowed, math.ceil(quota)) if quota is not None else allowed)


def _allowed_cpus() -> int:
    counted = getattr(os, "process_cpu_count", None)  # Python 3.13
    if counted is not None:
        return int(counted() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_quota(root: Path) -> float | None:
    """CPUs' worth of time the control group mounted at `root` may use (cgroup v2's
    cpu.max, else v1's cfs quota over period); None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        shares = int(quota) / int(period)
    except ValueError:  # "max": no limit
        return None
    except ZeroDivisionError:
        return None
    return shares if shares > 0 else None  # v1 says -1 for no limit
