"""Child processes of the benchmark and the system tests, and what they cost (with psutil).

One way to run a server we start: in a session of its own (a Ctrl-C on the parent does not
reach it; its group is ours to signal), output to a log file, stopped only through the pid we
started (SIGTERM to it and to everything it started, SIGKILL to what is left after a bound),
never by name. The readers give CPU seconds, resident memory and the host's busy time over a
measured window.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import psutil

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
_GONE: Final = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def start(
    command: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    console: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session; stdout to ``log``, stderr too unless ``console``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=None if console else subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=REPO_ROOT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int | None:
    """SIGTERM the process and its descendants, SIGKILL them after ``timeout_s``; idempotent.

    Returns the exit status (negative: the signal that ended it).
    """
    if proc.poll() is None:
        family = _family(proc.pid)
        _each(family, psutil.Process.terminate)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _each(family, psutil.Process.kill)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        _, left = psutil.wait_procs(family[1:], timeout=2.0)
        _each(left, psutil.Process.kill)
    return proc.returncode


def _family(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except _GONE:
        return []


def _each(procs: Sequence[psutil.Process], action: object) -> None:
    for proc in procs:
        with contextlib.suppress(*_GONE):
            action(proc)  # type: ignore[operator]


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
