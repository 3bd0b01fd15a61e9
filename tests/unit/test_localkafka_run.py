"""``make run``'s launcher (``localkafka run``/``up``) with a stand-in broker: no JVM."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from deploy.kafka.localkafka import LocalKafka, conflict, main, run_with_broker


class FakeKafka(LocalKafka):
    """Records start/stop; ``running_at`` is the address of a broker already running."""

    def __init__(self, tmp_path: Path, port: int, running_at: str | None = None) -> None:
        super().__init__(port=port, controller_port=port + 1, state_dir=tmp_path)
        self.running_at = running_at
        self.calls: list[str] = []
        self.interrupt_start = False

    def pid(self) -> int | None:
        return 4242 if self.running_at is not None else None

    def recorded_bootstrap(self) -> str | None:
        return self.running_at

    def start(self, timeout_s: float = 60.0) -> None:
        self.calls.append("start")
        if self.interrupt_start:
            raise KeyboardInterrupt
        self.running_at = self.bootstrap

    def stop(self, timeout_s: float = 30.0) -> None:
        self.calls.append("stop")
        self.running_at = None


def _write_env(out: Path) -> list[str]:
    code = (
        "import os, sys; open(sys.argv[1], 'w').write(os.environ['BRIDGE_KAFKA_BOOTSTRAP_SERVERS'])"
    )
    return [sys.executable, "-c", code, str(out)]


def test_a_broker_at_another_port_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = FakeKafka(tmp_path, 9093, running_at="127.0.0.1:9092")

    code = run_with_broker(kafka, _write_env(tmp_path / "env"), 5)

    assert code == 2
    assert kafka.calls == []
    assert not (tmp_path / "env").exists()
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"localkafka: Kafka already runs at 127.0.0.1:9092 (pid 4242, state in {tmp_path}), "
        "not at 127.0.0.1:9093: use KAFKA_PORT=9092, or stop it first with 'make kafka-down' "
        "(KAFKA_PORT=9092)"
    )
    assert conflict(FakeKafka(tmp_path, 9092, running_at="127.0.0.1:9092")) is None
    assert conflict(FakeKafka(tmp_path, 9092)) is None


def test_up_refuses_a_broker_at_another_port_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = FakeKafka(tmp_path, 9093, running_at="127.0.0.1:9092")
    monkeypatch.setattr("deploy.kafka.localkafka.LocalKafka", lambda **_: kafka)

    assert main(["up", "--port", "9093"]) == 2
    assert "Kafka already runs at 127.0.0.1:9092" in capsys.readouterr().err


def test_a_broker_started_for_the_command_is_stopped_after_it(tmp_path: Path) -> None:
    kafka = FakeKafka(tmp_path, 9093)

    code = run_with_broker(kafka, _write_env(tmp_path / "env"), 5)

    assert code == 0
    assert kafka.calls == ["start", "stop"]
    assert (tmp_path / "env").read_text() == "127.0.0.1:9093"


def test_a_broker_already_running_at_the_port_is_used_and_left_running(tmp_path: Path) -> None:
    kafka = FakeKafka(tmp_path, 9092, running_at="127.0.0.1:9092")

    code = run_with_broker(kafka, [sys.executable, "-c", "raise SystemExit(3)"], 5)

    assert code == 3
    assert kafka.calls == []


def test_ctrl_c_while_the_broker_starts_stops_it_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = FakeKafka(tmp_path, 9093)
    kafka.interrupt_start = True

    code = run_with_broker(kafka, _write_env(tmp_path / "env"), 5)

    assert code == 130
    assert kafka.calls == ["start", "stop"]
    assert not (tmp_path / "env").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "interrupted; the broker being started is stopped" in err


def test_ctrl_c_while_the_command_runs_waits_for_it_then_stops_the_broker(
    tmp_path: Path,
) -> None:
    kafka = FakeKafka(tmp_path, 9093)
    # What the launcher must put back: Python's own handler, or SIG_IGN when this process
    # was started in the background of a non-interactive shell.
    before = signal.getsignal(signal.SIGINT)
    # The command interrupts its parent (this process) as the terminal would, then takes
    # its time to shut down: the launcher must wait for it before stopping the broker.
    code = (
        "import os, signal, time; os.kill(os.getppid(), signal.SIGINT); time.sleep(0.5); "
        "open(os.environ['OUT'], 'w').write('done')"
    )
    os.environ["OUT"] = str(tmp_path / "out")
    try:
        result = run_with_broker(kafka, [sys.executable, "-c", code], 5)
    finally:
        del os.environ["OUT"]

    assert result == 0
    assert (tmp_path / "out").read_text() == "done"
    assert kafka.calls == ["start", "stop"]
    assert signal.getsignal(signal.SIGINT) is before
