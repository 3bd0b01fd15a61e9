"""The processes of a benchmark run: the broker, the bridge, the HTTP ceiling, the generators.

Every process is a :class:`deploy.supervisor.Process`: started in its own session, it listens
on 127.0.0.1 on a free port, has its pid recorded in the run's ``pids.json``, and is stopped
through that pid (its process group) when the run ends, whether it ends normally, with an
error, or with Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import orjson

from deploy.kafka.localkafka import (
    LOG4J_CONFIG,
    LocalKafka,
    classpath,
    ensure_jars,
    kafka_version,
)
from deploy.ports import free_ports
from deploy.supervisor import Exited, NotReady, Process, http_ok

REPO_ROOT: Final = Path(__file__).resolve().parent.parent

__all__ = [
    "LOG4J_CONFIG",
    "LocalKafka",
    "ProcessSet",
    "classpath",
    "ensure_jars",
    "free_ports",
    "http_ok",
    "kafka_version",
]


class BenchError(RuntimeError):
    """A benchmark step could not run."""


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that every cleanup runs."""


class ProcessSet:
    """Processes started by this run, stopped by their recorded pids in reverse order."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pid_file = run_dir / "pids.json"
        self._procs: dict[str, Process] = {}
        # The pid each was started with, which stays known after the process has ended.
        self._pids: dict[str, int] = {}
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
        pids = dict(self._pids)
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
    ) -> Process:
        """Start ``command``: stdout to ``log``, stderr there too or (``console``) to ours."""
        if name in self._procs:
            raise BenchError(f"{name} is already running")
        process = Process(name, log=log)
        self._pids[name] = process.start(command, env=env, cwd=REPO_ROOT, stderr_to_log=not console)
        self._procs[name] = process
        self._record()
        return process

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
        process = self.start(name, command, env=env, log=log, console=console)
        if not process.wait_exit(timeout_s):
            self.stop(name)
            raise BenchError(f"{name} did not finish within {timeout_s:.0f}s")
        self._forget(name)
        code = process.returncode
        assert code is not None  # started here, and it has ended
        return code

    def wait_http(self, name: str, url: str, timeout_s: float) -> None:
        try:
            self._procs[name].wait_until(lambda: http_ok(url), timeout_s, what=url, interval_s=0.1)
        except Exited as exc:
            raise BenchError(f"{name} exited with status {exc.code}; see its log") from None
        except NotReady:
            raise BenchError(f"{name} was not ready at {url} within {timeout_s:.0f}s") from None

    def pid(self, name: str) -> int:
        """The pid ``name`` was started with (KeyError once it is stopped)."""
        return self._pids[name]

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        """SIGTERM the process and its group, SIGKILL after ``timeout_s``; its exit status."""
        process = self._procs.get(name)
        if process is None:
            return None
        code = process.stop(timeout_s)
        self._forget(name)
        return code

    def _forget(self, name: str) -> None:
        self._procs.pop(name, None)
        self._pids.pop(name, None)
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
