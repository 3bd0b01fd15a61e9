"""The one way the local tooling runs a server process (standard library only).

Used by the local Kafka (deploy/kafka/localkafka.py), the local Kubernetes control plane
(deploy/k8s/localk8s.py, which runs before the virtualenv exists), the benchmark
(bench/services.py) and the system tests (tests/system/harness.py).

A :class:`Process` is started in a session of its own (a Ctrl-C on the terminal does not
reach it; its process group is ours to signal), with stdin closed and its output appended
to its log file. Its pid is recorded in a pid file when it has one, so that a later
command can find it again; a recorded pid counts only while ``identity`` recognises the
command line of that process, so that a recycled pid is never signalled. Stopping is by
that pid only, never by name: SIGTERM to the process group it leads, SIGKILL after a
grace period, then SIGKILL to whatever of the group outlived its leader.

:func:`wait_until` waits for a condition with a deadline and fails as soon as one of the
processes it watches has exited (with :class:`Exited`, which carries the log's tail).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

# How long a process gets to go after SIGKILL, and its group's stragglers after its leader.
KILL_WAIT_S: Final = 10.0
STRAGGLER_WAIT_S: Final = 2.0

Identity = Callable[[Sequence[str]], bool]
"""Whether a command line (``/proc/<pid>/cmdline``) is the one this process was started with."""


class SupervisorError(RuntimeError):
    """A process could not be started, waited for or stopped."""


class Exited(SupervisorError):
    """A watched process ended (or was never running) while a condition was waited for."""

    def __init__(self, process: Process, code: int | None) -> None:
        self.process = process
        self.code = code
        status = "" if code is None else f" with status {code}"
        super().__init__(f"{process.name} exited{status}")


class NotReady(SupervisorError):
    """The condition did not hold before the deadline."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def command_line(pid: int) -> list[str] | None:
    """The arguments of a running process (None if gone, a zombie, or unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The field after the parenthesised command name is the state; Z is a zombie.
    if stat.rpartition(")")[2].split()[0] == "Z":
        return None
    return [os.fsdecode(arg) for arg in raw.split(b"\0") if arg]


def process_state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (R, S, T for stopped, Z...), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def send_signal(pid: int, sig: int) -> None:
    """``sig`` to the process group that ``pid`` leads, or to ``pid`` alone if it leads none.

    A process that is already gone is no error.
    """
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether ``url`` answers a GET with a 2xx status (a readiness condition)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (OSError, ValueError):  # urllib.error.URLError is an OSError
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which only wait for their
    parent to collect them, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # state, ppid, pgrp
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class Process:
    """One server process: started with its log file, its pid recorded, stopped by that pid.

    ``pid_file`` and ``identity`` let another :class:`Process` (of a later command, e.g.
    ``make kafka-down`` after ``make kafka-up``) find and stop a process started earlier;
    without ``identity`` only the process started by this object is ever signalled.
    """

    def __init__(
        self,
        name: str,
        *,
        log: Path,
        pid_file: Path | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.pid_file = pid_file
        self.identity = identity
        self._popen: subprocess.Popen[bytes] | None = None

    # Starting ------------------------------------------------------------------------

    def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stderr_to_log: bool = True,
        banner: bool = False,
    ) -> int:
        """Start ``command``; returns its pid.

        stdout goes to the log (appended), stderr too unless ``stderr_to_log`` is false (then
        it is ours). ``env`` replaces the environment when given. ``banner`` first writes a
        ``=== start <time>`` line, to tell the runs of one log apart.
        """
        running = self.pid()
        if running is not None:
            raise SupervisorError(f"{self.name} is already running (pid {running})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:  # the child has its own copy of the descriptor
            if banner:
                out.write(f"=== start {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
                out.flush()
            self._popen = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if stderr_to_log else None,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self._popen.pid}\n")
        return self._popen.pid

    # State ---------------------------------------------------------------------------

    def recorded_pid(self) -> int | None:
        """The pid in the pid file, whether or not that process still runs."""
        if self.pid_file is None:
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of the running process: the one started here, else the recorded one if
        that process still runs the command ``identity`` recognises."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            return popen.pid
        pid = self.recorded_pid()
        if pid is None or self.identity is None or (popen is not None and popen.pid == pid):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        assert self.identity is not None
        argv = command_line(pid)
        for _ in range(50):
            # Empty while the process is in the middle of exec (or a kernel thread's).
            if argv != []:
                break
            time.sleep(0.01)
            argv = command_line(pid)
        if argv is not None:
            return bool(argv) and self.identity(argv)
        if Path("/proc/self").is_dir():
            return False
        # No /proc to read the command line from: the pid's existence is all there is.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def running(self) -> bool:
        return self.pid() is not None

    @property
    def returncode(self) -> int | None:
        """The exit status of the process started here once it has ended (negative: the
        signal that ended it), else None."""
        return None if self._popen is None else self._popen.poll()

    def frozen(self) -> bool:
        """Whether the process is stopped by a signal (SIGSTOP: state T)."""
        pid = self.pid()
        return pid is not None and process_state(pid) == "T"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)

    def check(self) -> None:
        """:class:`Exited` unless the process is running."""
        if self.pid() is None:
            raise Exited(self, self.returncode)

    # Waiting -------------------------------------------------------------------------

    def wait_until(
        self, ready: Callable[[], bool], timeout_s: float, *, what: str, interval_s: float = 0.2
    ) -> None:
        """:func:`wait_until` watching this process."""
        wait_until(ready, timeout_s=timeout_s, what=what, watch=[self], interval_s=interval_s)

    def wait_exit(self, timeout_s: float) -> bool:
        """Whether the process is gone within ``timeout_s`` (True at once if not running)."""
        pid = self.pid()
        return pid is None or self._wait_gone(pid, timeout_s)

    async def wait_exit_async(self, timeout_s: float) -> int | None:
        """The exit status, or None if the process still runs after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if not self.running() or loop.time() >= deadline:
                return self.returncode
            # A Popen's exit has no awaitable: poll.
            await asyncio.sleep(0.02)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        popen = self._popen
        if popen is not None and popen.pid == pid:
            try:
                popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while self._is_ours(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    # Signals and stopping ------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """``sig`` to the running process (its group; see :func:`send_signal`), if any."""
        pid = self.pid()
        if pid is not None:
            send_signal(pid, sig)

    def terminate(self) -> None:
        """SIGCONT (a frozen process cannot act on SIGTERM), then SIGTERM; no waiting."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM, SIGKILL after ``grace_s``; idempotent. The exit status when known."""
        pid = self.pid()
        if pid is not None:
            group = _leads_group(pid)
            send_signal(pid, signal.SIGCONT)
            send_signal(pid, signal.SIGTERM)
            if not self._wait_gone(pid, grace_s):
                self._kill(pid)
            if group:
                _reap_group(pid)
        return self._forget()

    def kill(self) -> int | None:
        """SIGKILL (a crash: no clean shutdown); idempotent. The exit status when known."""
        pid = self.pid()
        if pid is not None:
            group = _leads_group(pid)
            self._kill(pid)
            if group:
                _reap_group(pid)
        return self._forget()

    def _kill(self, pid: int) -> None:
        send_signal(pid, signal.SIGKILL)
        if not self._wait_gone(pid, KILL_WAIT_S):
            raise SupervisorError(f"{self.name} (pid {pid}) survived SIGKILL")

    def _forget(self) -> int | None:
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return self.returncode


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _reap_group(pgid: int) -> None:
    """SIGKILL what is left of a process group after its leader, after a short grace."""
    deadline = time.monotonic() + STRAGGLER_WAIT_S
    killed = False
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            if killed:
                raise SupervisorError(f"process group {pgid} survived SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + KILL_WAIT_S
        time.sleep(0.05)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float | None = None,
    deadline: float | None = None,
    watch: Iterable[Process] = (),
    interval_s: float = 0.2,
) -> None:
    """Poll ``ready`` until it holds.

    :class:`Exited` as soon as a process of ``watch`` is not running, :class:`NotReady`
    ("timed out waiting for <what>") once ``timeout_s`` has passed, or the
    ``time.monotonic()`` instant ``deadline``.
    """
    end = _deadline(timeout_s, deadline, time.monotonic())
    watched = list(watch)
    while True:
        for process in watched:
            process.check()
        if ready():
            return
        if time.monotonic() > end:
            raise NotReady(f"timed out waiting for {what}")
        time.sleep(interval_s)


async def wait_until_async(
    ready: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout_s: float,
    watch: Iterable[Process] = (),
    interval_s: float = 0.1,
) -> None:
    """:func:`wait_until` for a condition that is awaited, in an event loop."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    watched = list(watch)
    while True:
        for process in watched:
            process.check()
        if await ready():
            return
        if loop.time() > end:
            raise NotReady(f"timed out waiting for {what}")
        await asyncio.sleep(interval_s)


def _deadline(timeout_s: float | None, deadline: float | None, now: float) -> float:
    if (timeout_s is None) == (deadline is None):
        raise ValueError("give either timeout_s or deadline")
    return deadline if deadline is not None else now + (timeout_s or 0.0)
