"""``alm-bridge canary``: one signed synthetic batch through the public URL, read back from Kafka.

Proves from outside what readiness cannot: that DNS, the ingress, the bridge, its
authentication and Kafka all work, end to end, and how long the trip takes. The batch holds
one event named :data:`~bridge.core.routing.CANARY_EVENT_NAME`, which every receiver routes to its
canary topic and never to a topic of the consumers. The bridge also records each canary it
stores (``almbridge_canary_last_success_timestamp_seconds``), so a canary that stops arriving
raises an alert even when nothing watches the command's exit status.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.cli.sender.engine import client_context
from bridge.cli.tail import stop_quietly
from bridge.config.settings import Settings
from bridge.core.errors import BridgeError
from bridge.core.routing import CANARY_EVENT_NAME
from bridge.kafka.publisher import client_options


class CanaryError(BridgeError):
    """Kafka could not be read, so the canary could not be checked at all."""

    code = "canary_failed"


@dataclass(frozen=True)
class CanaryResult:
    """One canary's trip: the answer, and the record found in Kafka (or why not)."""

    ok: bool
    event_id: str
    status: int | None
    answer_ms: float | None
    end_to_end_ms: float | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None

    def as_json(self) -> str:
        return orjson.dumps({k: v for k, v in asdict(self).items() if v is not None}).decode()


def canary_batch(account_id: int, event_id: str, now: datetime) -> bytes:
    """A batch of one canary event, in the dialect of ALM's documentation."""
    when = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = {
        "eventId": event_id,
        "eventName": CANARY_EVENT_NAME,
        "timestamp": when,
        "data": {"source": "alm-bridge canary"},
    }
    return orjson.dumps({"accountId": account_id, "events": [event]})


async def _positions(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """Where each partition of ``topic`` ends now (none yet: the topic does not exist)."""
    partitions = consumer.partitions_for_topic(topic) or set()
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not assigned:
        return {}
    ends: dict[TopicPartition, int] = await consumer.end_offsets(assigned)
    return ends


async def run_canary(
    url: str,
    *,
    settings: Settings,
    topic: str,
    account_id: int,
    sign: Callable[[bytes], Mapping[str, str]],
    timeout_seconds: float = 30.0,
    ca_file: Path | None = None,
    consumer_factory: Callable[..., AIOKafkaConsumer] = AIOKafkaConsumer,
) -> CanaryResult:
    """Send one canary batch to ``url`` and wait for its record on ``topic``."""
    event_id = f"canary-{uuid.uuid4()}"
    consumer = consumer_factory(
        **client_options(settings), enable_auto_commit=False, metadata_max_age_ms=1000
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await stop_quietly(consumer)
        raise CanaryError(
            f"cannot read Kafka at {settings.kafka_bootstrap_servers}: {exc}"
        ) from None
    try:
        await consumer.topics()
        # Positions before sending: the record can only come after them. A partition that
        # appears later (the topic made by this very canary) is read from its start.
        start = await _positions(consumer, topic)
        body = canary_batch(account_id, event_id, datetime.now(UTC))
        started = time.monotonic()
        status, answer_ms, error = await _post(url, body, sign(body), timeout_seconds, ca_file)
        if status != 200:
            return CanaryResult(False, event_id, status, answer_ms, error=error)
        found = await _find(consumer, topic, event_id, start, started + timeout_seconds)
        if found is None:
            return CanaryResult(
                False,
                event_id,
                status,
                answer_ms,
                topic=topic,
                error=f"not on {topic} within {timeout_seconds:g} s of sending",
            )
        partition, offset = found
        return CanaryResult(
            True,
            event_id,
            status,
            answer_ms,
            end_to_end_ms=round((time.monotonic() - started) * 1000, 1),
            topic=topic,
            partition=partition,
            offset=offset,
        )
    except KafkaError as exc:
        raise CanaryError(f"reading Kafka at {settings.kafka_bootstrap_servers}: {exc}") from None
    finally:
        await stop_quietly(consumer)


async def _post(
    url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float, ca_file: Path | None
) -> tuple[int | None, float | None, str | None]:
    connector = aiohttp.TCPConnector(ssl=client_context(ca_file))
    started = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as response,
        ):
            text = await response.text(errors="replace")
            elapsed = round((time.monotonic() - started) * 1000, 1)
            if response.status != 200:
                return response.status, elapsed, f"answered {response.status}: {text[:300]}"
            return response.status, elapsed, None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"


async def _find(
    consumer: AIOKafkaConsumer,
    topic: str,
    event_id: str,
    start: dict[TopicPartition, int],
    deadline: float,
) -> tuple[int, int] | None:
    """(partition, offset) of the canary's record, or None at the deadline."""
    wanted = event_id.encode()
    assigned: set[TopicPartition] = set()
    while time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic) or set()
        every = {TopicPartition(topic, p) for p in partitions}
        if every - assigned:
            assigned = every
            consumer.assign(sorted(assigned))
            for tp in assigned:
                if tp in start:
                    consumer.seek(tp, start[tp])
                else:
                    await consumer.seek_to_beginning(tp)
        if not assigned:
            await consumer.topics()
            await asyncio.sleep(0.2)
            continue
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                if any(k == "ce_id" and v == wanted for k, v in record.headers or ()):
                    return record.partition, record.offset
    return None
