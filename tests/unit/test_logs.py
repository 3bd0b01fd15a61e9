"""Log filters: aiokafka's connection errors and malformed requests do not flood the log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog
from aiohttp.http_exceptions import BadHttpMessage
from pydantic import SecretStr

from bridge.config.settings import AuthSettings, ReceiverSettings, Settings
from bridge.telemetry.logs import (
    ClientErrorFilter,
    RepeatFilter,
    Sampler,
    configure,
    escaped,
    get_logger,
    render_json,
    valid_text,
)


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


def _aiohttp_error(error: BaseException) -> logging.LogRecord:
    # What aiohttp's request handler logs for a request it cannot parse.
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("203.0.113.9",),
        (type(error), error, None),
    )


def test_malformed_requests_become_one_condensed_warning_without_traceback() -> None:
    now = [0.0]
    client, repeat = ClientErrorFilter(), RepeatFilter(window_seconds=10, clock=lambda: now[0])

    def passes(record: logging.LogRecord) -> bool:
        return client.filter(record) and repeat.filter(record)

    error = BadHttpMessage("Duplicate 'Content-Length' header found.")
    first = _aiohttp_error(error)
    passed = [passes(first)] + [passes(_aiohttp_error(error)) for _ in range(299)]
    now[0] = 11.0
    later = _aiohttp_error(error)

    assert passed.count(True) == 1
    assert (first.levelno, first.exc_info) == (logging.WARNING, None)
    assert "Duplicate 'Content-Length'" in first.getMessage()
    assert passes(later)
    assert "repeated 299 times" in later.getMessage()


def test_server_errors_keep_their_traceback() -> None:
    record = _aiohttp_error(RuntimeError("a bug"))

    assert ClientErrorFilter().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_configure_hands_back_its_repeat_filter_and_keeps_other_handlers() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    configure("info", "json", stream=io.BytesIO())
    out = io.BytesIO()
    repeat = configure("info", "json", stream=out)

    forwarders = [h for h in root.handlers if type(h).__name__ == "StdlibForwarder"]
    assert len(forwarders) == 1, "a second configure replaces its own forwarder"
    assert foreign in root.handlers
    for _ in range(3):
        logging.getLogger("aiokafka.conn").warning("broker b-1 down")
    assert len(out.getvalue().splitlines()) == 1
    repeat.window_seconds = 0.0  # the window has ended: the count is told
    assert repeat.drain() == [("aiokafka.conn", "broker b-1 down", 2)]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_have_one_shape_for_structlog_and_stdlib_loggers() -> None:
    out = io.BytesIO()
    configure("info", "json", stream=out)
    log = get_logger("bridge.test")

    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        log.info("request", status=200)
        log.debug("not_shown")
        logging.getLogger("aiokafka.conn").warning("broker %s down", "b-1")
        logging.getLogger("aiohttp.server").debug("not shown either")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("unhandled_error")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["request", "broker b-1 down", "unhandled_error"]
    assert [line["logger"] for line in lines] == ["bridge.test", "aiokafka.conn", "bridge.test"]
    assert [line["level"] for line in lines] == ["info", "warning", "error"]
    for line in lines:
        assert line["request_id"] == "r-1"
        assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    assert lines[0]["status"] == 200
    assert "ValueError: boom" in lines[2]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_console_rendering_on_a_terminal_format() -> None:
    out = io.BytesIO()
    configure("warning", "console", stream=out)

    get_logger("bridge.test").warning("kafka_unreachable_at_start", error="timeout")
    get_logger("bridge.test").info("not_shown")

    text = out.getvalue().decode()
    assert "kafka_unreachable_at_start" in text
    assert "error=timeout" in text
    assert "not_shown" not in text


def _started(fmt: str) -> str:
    settings = Settings(
        kafka_bootstrap_servers="kafka-1:9092,kafka-2:9092",
        publish_timeout_ms=2000,
        receivers=[
            ReceiverSettings(
                name="prod",
                accounts=[1234],
                auth=AuthSettings(method="hmac", secrets=[SecretStr("s3cret")]),
            ),
            ReceiverSettings(name="sandbox", auth=AuthSettings(method="none")),
        ],
    )
    out = io.BytesIO()
    configure("info", fmt, stream=out, config_defaults=Settings.defaults())
    get_logger("bridge.app").info(
        "bridge_started", version="1.2.3", receivers=["prod", "sandbox"], config=settings.masked()
    )
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_on_a_terminal_bridge_started_shows_what_differs_from_the_defaults() -> None:
    line = _started("console")
    assert len(line) < 300, line
    assert "bridge_started" in line
    assert "'kafka_bootstrap_servers': 'kafka-1:9092,kafka-2:9092'" in line
    assert "'publish_timeout_ms': 2000" in line
    assert "receivers=['prod (hmac auth)', 'sandbox (none auth)']" in line
    assert "max_body_bytes" not in line  # a default


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_keep_the_whole_masked_configuration() -> None:
    doc = json.loads(_started("json"))
    assert doc["config"]["max_body_bytes"] == 5 * 1024 * 1024
    assert [r["name"] for r in doc["config"]["receivers"]] == ["prod", "sandbox"]
    assert doc["config"]["receivers"][0]["auth"]["secrets"] == ["**********"]


def test_a_burst_that_stopped_is_told_by_drain_once() -> None:
    now = [0.0]
    repeat = RepeatFilter(window_seconds=10, clock=lambda: now[0])
    for _ in range(50):
        repeat.filter(_record("aiokafka.conn", "Unable connect"))
    assert repeat.drain() == []  # the window is still open
    now[0] = 10.5

    assert repeat.drain() == [("aiokafka.conn", "Unable connect", 49)]
    assert repeat.drain() == []
    later = _record("aiokafka.conn", "Unable connect")
    assert repeat.filter(later)
    assert "repeated" not in str(later.msg)  # told already


def test_refused_request_lines_are_sampled_and_counted() -> None:
    now = [0.0]
    sampler = Sampler(burst=3, window_seconds=10, clock=lambda: now[0])
    key = ("alm", "401", "missing")

    allowed = [sampler.allow(key) for _ in range(100)]
    other = sampler.allow(("alm", "401", "mismatch"))
    now[0] = 12.0

    assert allowed.count(True) == 3
    assert other
    assert sampler.drain() == [(key, 97)]
    assert sampler.drain() == []
    assert sampler.allow(key)  # a new window


LONE = "ab\udcffcd"  # what aiohttp makes of the header bytes b"ab\xffcd"


def test_escaped_writes_the_sent_bytes_in_printable_ascii() -> None:
    assert escaped("legit-1") == "legit-1"
    assert escaped(LONE) == "ab\\xffcd"
    assert escaped("café") == "caf\\xc3\\xa9"
    assert escaped('a\\b\t\n"') == 'a\\\\b\\t\\n"'
    assert escaped("\x1b[31m") == "\\x1b[31m"
    assert escaped("x" * 100) == "x" * 64 + "..."
    assert escaped("\ud800") == "\\xed\\xa0\\x80"  # a surrogate no decoder made


def test_valid_text_keeps_valid_characters_and_escapes_the_bytes_that_are_not() -> None:
    assert valid_text("café") == "café"
    assert valid_text("caf\u00e9\udcff") == "café\\xff"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (LONE, "ab\\xffcd"),
        ({"nested": [LONE]}, {"nested": ["ab\\xffcd"]}),
        ({1: "int key", LONE: "x"}, {"1": "int key", "ab\\xffcd": "x"}),
        (2**70, str(2**70)),
        (_Unprintable(), "<_Unprintable that cannot be shown>"),
    ],
)
def test_the_json_renderer_never_raises_and_keeps_the_line(value: object, shown: object) -> None:
    event = {"event": "request", "level": "info", "status": 200, "odd": value, "other": "é"}

    line = json.loads(render_json(None, "info", event))

    assert line == {"event": "request", "level": "info", "status": 200, "odd": shown, "other": "é"}


def test_a_line_nested_too_deep_for_orjson_is_rendered_cut() -> None:
    deep: list[object] = [LONE]
    for _ in range(300):
        deep = [deep]

    line = json.loads(render_json(None, "info", {"event": "deep", "value": deep}))

    assert line["event"] == "deep"
    assert isinstance(line["value"], list)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_with_odd_strings_are_written_whole() -> None:
    out = io.BytesIO()
    configure("info", "json", stream=out)
    log = get_logger("bridge.test")

    with structlog.contextvars.bound_contextvars(request_id="r-1", path="/webhooks/al\udcffm"):
        log.info("request", content_type="text/\udcfe", status=200)
        logging.getLogger("aiohttp.server").warning("odd %s", LONE)
        try:
            raise ValueError(f"bad {LONE}")
        except ValueError:
            log.exception("unhandled_error")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["request", "odd ab\\xffcd", "unhandled_error"]
    assert lines[0]["path"] == "/webhooks/al\\xffm"
    assert lines[0]["content_type"] == "text/\\xfe"
    assert "ValueError: bad ab\\xffcd" in lines[2]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_with_odd_strings_are_written_escaped() -> None:
    out = io.BytesIO()
    configure("info", "console", stream=out)

    get_logger("bridge.test").info(
        "request", request_id=LONE, path="/webhooks/\x1b[2Jx", nested={"v": LONE}, ok="café"
    )

    text = out.getvalue().decode("utf-8")
    assert "request_id=ab\\xffcd" in text
    assert "path=/webhooks/\\x1b[2Jx" in text
    assert "\x1b[2J" not in text
    assert "ok=café" in text
    assert "'v': 'ab\\udcffcd'" in text  # repr, as the console shows nested values


def _produce_retry(partition: str, error: object) -> logging.LogRecord:
    return logging.LogRecord(
        "aiokafka.producer.sender",
        logging.WARNING,
        __file__,
        1,
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        (partition, error),
        None,
    )


def test_a_new_partitions_missing_leader_is_told_once_at_info() -> None:
    from aiokafka.errors import NotLeaderForPartitionError, RequestTimedOutError

    from bridge.telemetry.logs import NewLeaderFilter

    new_leader = NewLeaderFilter()
    first = _produce_retry("TopicPartition(topic='alm.x', partition=0)", NotLeaderForPartitionError)
    again = _produce_retry("TopicPartition(topic='alm.x', partition=0)", NotLeaderForPartitionError)
    other = _produce_retry("TopicPartition(topic='alm.y', partition=0)", RequestTimedOutError())

    assert all(new_leader.filter(record) for record in (first, again, other))

    assert first.levelno == logging.INFO
    assert "has no leader yet (NotLeaderForPartitionError)" in first.getMessage()
    assert again.levelno == logging.WARNING  # a leader that stays away is still a warning
    assert other.levelno == logging.WARNING
