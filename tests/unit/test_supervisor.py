"""deploy/supervisor.py: start with a log, record the pid, wait while alive, stop by that pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from deploy.supervisor import Exited, NotReady, Process, wait_until

REPO = Path(__file__).resolve().parents[2]


def _marker(tmp_path: Path) -> str:
    return f"supervised-{tmp_path.name}"


def _sleeper(tmp_path: Path, *, pid_file: bool = True) -> Process:
    marker = _marker(tmp_path)

    def identity(argv: Sequence[str]) -> bool:
        return marker in argv

    return Process(
        "sleeper",
        log=tmp_path / "logs" / "sleeper.log",
        pid_file=tmp_path / "sleeper.pid" if pid_file else None,
        identity=identity,
    )


def _sh(script: str, tmp_path: Path) -> list[str]:
    # The marker is $0 of the shell: it shows on the command line.
    return ["sh", "-c", script, _marker(tmp_path)]


def _group_gone(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z" and int(group) == pgid:
            return False
    return True


def test_started_with_its_log_and_pid_file_and_stopped_by_that_pid(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    pid = process.start(_sh("echo hello; exec sleep 300", tmp_path), banner=True)

    assert process.pid() == pid
    assert (tmp_path / "sleeper.pid").read_text() == f"{pid}\n"
    assert os.getpgid(pid) == pid  # its own session: its group is ours to signal
    wait_until(lambda: "hello" in process.log_tail(), timeout_s=10, what="the greeting")
    assert process.log_tail().startswith("=== start ")

    assert process.stop(grace_s=5) == -signal.SIGTERM
    assert process.pid() is None
    assert not (tmp_path / "sleeper.pid").exists()
    assert process.stop() == -signal.SIGTERM  # idempotent


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    process.start(_sh("trap '' TERM; echo trapped; while :; do sleep 0.1; done", tmp_path))
    wait_until(lambda: "trapped" in process.log_tail(), timeout_s=10, what="the trap")

    began = time.monotonic()
    assert process.stop(grace_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - began < 5


def test_what_outlives_the_group_leader_is_killed_too(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    # A child that ignores SIGTERM, and a leader that does not.
    pid = process.start(
        _sh("(trap '' TERM; echo child; exec sleep 300) & exec sleep 300", tmp_path)
    )
    wait_until(lambda: "child" in process.log_tail(), timeout_s=10, what="the child")

    process.stop(grace_s=5)

    assert _group_gone(pid)


def test_a_later_command_finds_the_process_by_its_recorded_pid(tmp_path: Path) -> None:
    first = _sleeper(tmp_path)
    # Not exec: the shell, whose command line has the marker, stays the process.
    pid = first.start(_sh("sleep 300; :", tmp_path))
    try:
        later = _sleeper(tmp_path)
        assert later.pid() == pid
        # A pid file naming a process that runs something else is not ours.
        stranger = Process(
            "sleeper", log=tmp_path / "x.log", pid_file=tmp_path / "sleeper.pid",
            identity=lambda argv: "something-else" in argv,
        )  # fmt: skip
        assert stranger.pid() is None
        unsure = Process("sleeper", log=tmp_path / "x.log", pid_file=tmp_path / "sleeper.pid")
        assert unsure.pid() is None

        assert later.stop(grace_s=5) is None  # not its child: no status to tell
        assert first.pid() is None
        assert first.returncode == -signal.SIGTERM
    finally:
        first.stop()


def test_waiting_ends_when_the_process_exits(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    process.start(_sh("echo going; exit 3", tmp_path))

    with pytest.raises(Exited) as failed:
        process.wait_until(lambda: False, 10, what="nothing")

    assert failed.value.code == 3
    assert failed.value.process is process
    assert "going" in process.log_tail()


def test_waiting_ends_at_the_deadline(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    process.start(_sh("exec sleep 300", tmp_path))
    try:
        with pytest.raises(NotReady, match="timed out waiting for godot"):
            process.wait_until(lambda: False, 0.3, what="godot", interval_s=0.05)
    finally:
        process.stop()


def test_freezing_and_thawing(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    process.start(_sh("exec sleep 300", tmp_path))
    try:
        process.signal(signal.SIGSTOP)
        wait_until(process.frozen, timeout_s=5, what="the stop", interval_s=0.02)
        process.signal(signal.SIGCONT)
        wait_until(lambda: not process.frozen(), timeout_s=5, what="the thaw", interval_s=0.02)
    finally:
        # A frozen process is thawed by stop() before SIGTERM.
        process.signal(signal.SIGSTOP)
        assert process.stop(grace_s=5) == -signal.SIGTERM


def test_the_local_kubernetes_launcher_needs_the_standard_library_only() -> None:
    """`make k8s-up` runs it with the system's python3, before the virtualenv exists."""
    # -S: no site-packages at all, so any import outside the standard library fails.
    done = subprocess.run(
        [sys.executable, "-S", "-m", "deploy.k8s.localk8s", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
