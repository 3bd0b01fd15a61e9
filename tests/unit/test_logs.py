"""The repeat filter keeps aiokafka's connection errors from flooding the log."""

from __future__ import annotations

import logging

from bridge.logs import RepeatFilter


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
