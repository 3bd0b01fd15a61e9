"""The processes of a benchmark run: the broker, the bridge, the HTTP ceiling, the generators.

Every process is started in its own session, listens on 127.0.0.1 on a free port, has its pid
recorded in the run's ``pids.json``, and is stopped through that pid (its process group) when
the run ends, whether it ends normally, with an error, or with Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import orjson

from bench import processes
from deploy.kafka.localkafka import (
    LOG4J_CONFIG,
    LocalKafka,
    classpath,
    ensure_jars,
    kafka_version,
)
from deploy.ports import free_ports

REPO_ROOT: Final = Path(__file__).resolve().parent.parent

__all__ = [
    "LOG4J_CONFIG",
    "LocalKafka",
    "ProcessSet",
    "classpath",
    "ensure_jars",
    "free_ports",
    "kafka_version",
]


class BenchError(RuntimeError):
    """A benchmark step could not run."""


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that every cleanup runs."""


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ProcessSet:
    """Processes started by this run, stopped by their recorded pids in reverse order."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pid_file = run_dir / "pids.json"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._kafka: LocalKafka | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        def on_term(signum: int, frame: object) -> None:
            raise Interrupted(signal.Signals(signum).name)

        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term)
        # Explicit, because a shell starting us in the background leaves SIGINT ignored.
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def _record(self) -> None:
        pids = {name: proc.pid for name, proc in self._procs.items()}
        if self._kafka is not None:
            pid = self._kafka.pid()
            if pid is not None:
                pids["kafka"] = pid
        self.pid_file.write_bytes(orjson.dumps(pids, option=orjson.OPT_INDENT_2))

    def start(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        log: Path,
        console: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``command``: stdout to ``log``, stderr there too or (``console``) to ours."""
        if name in self._procs:
            raise BenchError(f"{name} is already running")
        proc = processes.start(command, log=log, env=env, console=console)
        self._procs[name] = proc
        self._record()
        return proc

    def run(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        log: Path,
        timeout_s: float,
        console: bool = False,
    ) -> int:
        """Start a process that ends by itself, wait for it (bounded), then forget it."""
        proc = self.start(name, command, env=env, log=log, console=console)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(name)
            raise BenchError(f"{name} did not finish within {timeout_s:.0f}s") from None
        self._forget(name)
        return code

    def wait_http(self, name: str, url: str, timeout_s: float) -> None:
        proc = self._procs[name]
        deadline = time.monotonic() + timeout_s
        while not http_ok(url):
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with status {proc.returncode}; see its log")
            if time.monotonic() > deadline:
                raise BenchError(f"{name} was not ready at {url} within {timeout_s:.0f}s")
            time.sleep(0.1)

    def pid(self, name: str) -> int:
        return self._procs[name].pid

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        """SIGTERM the process and its children, SIGKILL after ``timeout_s``; its exit status."""
        proc = self._procs.get(name)
        if proc is None:
            return None
        code = processes.stop(proc, timeout_s)
        self._forget(name)
        return code

    def _forget(self, name: str) -> None:
        self._procs.pop(name, None)
        self._record()

    def adopt_kafka(self, kafka: LocalKafka) -> None:
        self._kafka = kafka
        self._record()

    def stop_all(self) -> None:
        for name in reversed(list(self._procs)):
            try:
                self.stop(name)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {name}: {exc}", file=sys.stderr)
        if self._kafka is not None:
            kafka, self._kafka = self._kafka, None
            try:
                kafka.stop()
            except Exception as exc:  # the broker's own error says what is left
                print(f"bench: could not stop Kafka: {exc}", file=sys.stderr)
        self._record()
