"""Log set-up: aiokafka's repeated errors are folded; bridge_started fits a terminal line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from bridge.logs import RepeatFilter, configure, get_logger
from bridge.settings import AuthSettings, ReceiverSettings, Settings


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_a_repeated_aiokafka_message_passes_once_per_window_with_a_count() -> None:
    now = [0.0]
    repeat = RepeatFilter(window_seconds=10, clock=lambda: now[0])

    passed = [repeat.filter(_record("aiokafka.conn", "Unable connect")) for _ in range(500)]
    now[0] = 10.5
    later = _record("aiokafka.conn", "Unable connect")

    assert passed.count(True) == 1
    assert repeat.filter(later)
    assert "repeated 499 times" in str(later.msg)


def test_other_loggers_and_other_messages_are_untouched() -> None:
    repeat = RepeatFilter(clock=lambda: 0.0)

    assert all(repeat.filter(_record("bridge.http", "request")) for _ in range(5))
    assert repeat.filter(_record("aiokafka", "first"))
    assert repeat.filter(_record("aiokafka", "second"))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)


def _started(fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    settings = Settings(
        kafka_bootstrap_servers="kafka-1:9092,kafka-2:9092",
        publish_timeout_ms=2000,
        receivers=[
            ReceiverSettings(
                name="prod",
                accounts=[1234],
                auth=AuthSettings(method="hmac", secrets=[SecretStr("s3cret")]),
            ),
            ReceiverSettings(name="sandbox"),
        ],
    )
    configure("info", fmt)
    get_logger("bridge.app").info(
        "bridge_started", version="1.2.3", receivers=["prod", "sandbox"], config=settings.masked()
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_on_a_terminal_bridge_started_shows_what_differs_from_the_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _started("console", capsys)
    assert len(line) < 300, line
    assert "bridge_started" in line
    assert "'kafka_bootstrap_servers': 'kafka-1:9092,kafka-2:9092'" in line
    assert "'publish_timeout_ms': 2000" in line
    assert "receivers=['prod (hmac auth)', 'sandbox (none auth)']" in line
    assert "max_body_bytes" not in line  # a default


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_keep_the_whole_masked_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = json.loads(_started("json", capsys))
    assert doc["config"]["max_body_bytes"] == 5 * 1024 * 1024
    assert [r["name"] for r in doc["config"]["receivers"]] == ["prod", "sandbox"]
    assert doc["config"]["receivers"][0]["auth"]["secrets"] == ["**********"]
