"""What the processes of the benchmark and the system tests cost, read with psutil.

CPU seconds, resident memory and the host's busy time over a measured window. Starting and
stopping them is deploy/supervisor.py's (bench/services.py, tests/system/harness.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import psutil

_GONE: Final = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except _GONE:
        return False


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), or None when it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except _GONE:
        return None
    return float(times.user + times.system)


def memory_mb(pid: int) -> tuple[float | None, float | None]:
    """(resident, peak resident) of ``pid`` in MiB; None for what cannot be read."""
    try:
        rss = psutil.Process(pid).memory_info().rss / 2**20
    except _GONE:
        return None, None
    return rss, _peak_rss_mb(pid)


def _peak_rss_mb(pid: int) -> float | None:
    # psutil has no peak resident size on Linux; the kernel keeps it as VmHWM.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def system_busy_seconds() -> float:
    """CPU seconds all cores spent neither idle nor waiting for I/O, since boot."""
    t = psutil.cpu_times()
    # Guest time is already counted in user time.
    total = t.user + t.nice + t.system + t.idle + t.iowait + t.irq + t.softirq + t.steal
    return float(total - t.idle - t.iowait)


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other machines while we wanted them, since boot."""
    return float(psutil.cpu_times().steal)
