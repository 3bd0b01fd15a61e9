"""Readers of /proc: CPU seconds, resident memory and its peak, and whole-machine busy time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (threads included), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return parse_stat_cpu(stat)


def parse_stat_cpu(stat: str) -> float:
    # The command name in parentheses may contain spaces; fields are counted after it.
    fields = stat.rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def memory_mb(pid: int) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of ``pid`` in MB (MiB), or None for values that cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    return parse_status_kb(status, "VmRSS"), parse_status_kb(status, "VmHWM")


def parse_status_kb(status: str, key: str) -> float | None:
    """A ``kB`` line of /proc/<pid>/status in MiB."""
    prefix = f"{key}:"
    for line in status.splitlines():
        if line.startswith(prefix):
            parts = line[len(prefix) :].split()
            if parts:
                return int(parts[0]) / 1024.0
    return None


def system_busy_seconds() -> float | None:
    """CPU seconds all cores spent not idle since boot (from /proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return parse_system_busy(first)


def parse_system_busy(cpu_line: str) -> float:
    values = [int(v) for v in cpu_line.split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guests are in user.
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _TICKS


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
