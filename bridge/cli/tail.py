"""``alm-bridge tail``: print the records the bridge published, with its own Kafka settings.

Topics by name, or by a regular expression; by default every topic the configured receivers
can publish to (their topic templates, overrides, catch-all and dead-letter topics). Each
record is printed with its topic, partition, offset, key, headers and value, for people or as
one JSON object a line. Bounded by ``max_records`` and ``idle_seconds`` so scripts and tests
can use it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.config.settings import ReceiverSettings, Settings
from bridge.core.errors import BridgeError
from bridge.kafka.publisher import client_options

# A pattern subscription notices topics created later only when metadata is refreshed.
_METADATA_MAX_AGE_MS = 3000


class TailError(BridgeError):
    """Kafka could not be read (unreachable, refused credentials, a bad pattern)."""

    code = "tail_failed"


@dataclass(frozen=True)
class TailOptions:
    topics: tuple[str, ...] = ()
    pattern: str | None = None
    from_beginning: bool = False
    group: str | None = None
    as_json: bool = False
    max_records: int | None = None
    idle_seconds: float | None = None


def _template_pattern(template: str) -> str:
    """``alm.{event}`` -> ``alm\\..+``: each placeholder matches any non-empty text."""
    parts: list[str] = []
    for literal, field_name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field_name is not None:
            parts.append(".+")
    return "".join(parts)


def default_pattern(receivers: Iterable[ReceiverSettings]) -> str:
    """A regular expression that matches every topic the receivers can publish to."""
    alternatives: list[str] = []
    for receiver in receivers:
        routing = receiver.routing
        candidates = [
            _template_pattern(routing.topic_template),
            re.escape(routing.catchall_topic),
            re.escape(receiver.dead_letter.topic),
            *(re.escape(topic) for topic in routing.overrides.values()),
        ]
        for candidate in candidates:
            if candidate not in alternatives:
                alternatives.append(candidate)
    return "^(?:" + "|".join(alternatives) + ")$"


def _text_or_base64(data: bytes) -> tuple[str, bool]:
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def record_dict(record: Any) -> dict[str, Any]:
    """A consumed record as JSON-ready data; a JSON value is embedded as JSON."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
    }
    if record.key is None:
        out["key"] = None
    else:
        key, encoded = _text_or_base64(record.key)
        out["key_base64" if encoded else "key"] = key
    headers: dict[str, str] = {}
    for name, value in record.headers or ():
        text, _ = _text_or_base64(value or b"")
        headers[name] = text
    out["headers"] = headers
    if record.value is None:
        out["value"] = None
    else:
        try:
            out["value"] = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            text, encoded = _text_or_base64(record.value)
            out["value_base64" if encoded else "value"] = text
    return out


def render(record: Any, *, as_json: bool) -> str:
    data = record_dict(record)
    if as_json:
        return orjson.dumps(data).decode()
    when = datetime.fromtimestamp(data["timestamp"] / 1000, tz=UTC).isoformat(
        timespec="milliseconds"
    )
    lines = [f"--- {data['topic']} [partition {data['partition']}, offset {data['offset']}] {when}"]
    if "key_base64" in data:
        lines.append(f"key (base64): {data['key_base64']}")
    else:
        lines.append(f"key: {'(none)' if data['key'] is None else data['key']}")
    for name, value in data["headers"].items():
        lines.append(f"{name}: {value}")
    if "value_base64" in data:
        lines.append(f"value (base64): {data['value_base64']}")
    elif isinstance(data["value"], (dict, list)):
        lines.append(orjson.dumps(data["value"], option=orjson.OPT_INDENT_2).decode())
    elif data["value"] is None:
        lines.append("(no value)")
    else:
        lines.append(str(data["value"]))
    return "\n".join(lines)


def consumer_options(settings: Settings, options: TailOptions) -> dict[str, Any]:
    """The bridge's connection settings (TLS, SASL), plus a reader's."""
    return {
        **client_options(settings),
        "client_id": f"{settings.kafka_client_id}-tail",
        "group_id": options.group,
        "auto_offset_reset": "earliest" if options.from_beginning else "latest",
        # With a group, offsets are committed for the records printed, never further.
        "enable_auto_commit": False,
        "metadata_max_age_ms": _METADATA_MAX_AGE_MS,
    }


async def tail(
    settings: Settings,
    options: TailOptions,
    emit: Callable[[str], None],
    *,
    consumer_factory: Callable[..., AIOKafkaConsumer] = AIOKafkaConsumer,
) -> int:
    """Print records until ``max_records`` were printed or ``idle_seconds`` passed without one.

    Returns the number of records printed.
    """
    pattern = options.pattern
    if not options.topics and pattern is None:
        pattern = default_pattern(settings.effective_receivers())
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise TailError(f"--pattern {pattern!r} is not a regular expression: {exc}") from None
    consumer = consumer_factory(**consumer_options(settings, options))
    try:
        await consumer.start()
    except KafkaError as exc:
        await stop_quietly(consumer)
        raise TailError(f"cannot read Kafka at {settings.kafka_bootstrap_servers}: {exc}") from None
    printed = 0
    done: dict[TopicPartition, int] = {}
    try:
        if options.topics:
            consumer.subscribe(topics=list(options.topics))
        else:
            consumer.subscribe(pattern=pattern)
        loop = asyncio.get_running_loop()
        last = loop.time()
        while options.max_records is None or printed < options.max_records:
            batches = await consumer.getmany(timeout_ms=500)
            records = sorted(
                (r for batch in batches.values() for r in batch),
                key=lambda r: (r.timestamp, r.topic, r.partition, r.offset),
            )
            for record in records:
                emit(render(record, as_json=options.as_json))
                printed += 1
                done[TopicPartition(record.topic, record.partition)] = record.offset + 1
                if options.max_records is not None and printed >= options.max_records:
                    break
            if records:
                last = loop.time()
                if options.group is not None:
                    await consumer.commit(dict(done))
            elif options.idle_seconds is not None and loop.time() - last >= options.idle_seconds:
                break
    except KafkaError as exc:
        raise TailError(f"reading Kafka at {settings.kafka_bootstrap_servers}: {exc}") from None
    finally:
        await stop_quietly(consumer)
    return printed


async def stop_quietly(consumer: AIOKafkaConsumer) -> None:
    with contextlib.suppress(KafkaError, TimeoutError, OSError):
        await asyncio.wait_for(consumer.stop(), timeout=5)
