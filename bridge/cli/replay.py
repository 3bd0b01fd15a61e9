"""``alm-bridge replay``: dead letters back into Kafka, through the bridge's own routing.

Reads the dead-letter topics with the bridge's Kafka settings (TLS, SASL), turns each dead
letter into the events it holds (:class:`bridge.cli.deadletters.Replanner`: the receiver's
current routing, the same parser, limits and duplicate rule as live traffic) and, with
``apply``, publishes them through :class:`bridge.kafka.publisher.Publisher`: the same topic
checks (existence, auto-creation, Kafka's refusals) as live traffic.

Exactly once, across runs and crashes, through a compacted progress topic keyed by each
event's dead letter (``topic:partition:offset``, ``#eventId`` for the events of a batch):

1. before producing a chunk, a ``pending`` record per event (when, which topic, for how
   long at most) is acknowledged in the progress topic;
2. the chunk is produced and acknowledged;
3. a ``done`` (or ``failed``, when Kafka refused it) record per event.

A run reads the progress topic first and skips every event that is ``done``. An event left
``pending`` by a run that stopped between 1 and 3 is looked for in its destination topic,
in the records written between its ``pending`` time and the end of its window (plus a
margin for clocks): found by its ``replay_source`` header, it is marked ``done`` and not
produced again. Records that Kafka still refuses are left in the dead-letter topic (never
dead-lettered again) and counted by reason; the next run tries them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from bridge.cli.deadletters import (
    SOURCE_HEADER,
    DeadLetter,
    Filters,
    Item,
    Ledger,
    Pacer,
    Progress,
    Replanner,
    Tally,
    count,
)
from bridge.config.settings import Settings
from bridge.core.errors import BridgeError, PublishUnavailable
from bridge.core.records import Record
from bridge.kafka.publisher import Publisher, client_options
from bridge.kafka.topics import describe

DEFAULT_PROGRESS_TOPIC: Final = "alm-bridge.replay-progress"
# Records of a stopped run are looked for this much before and after their window: the
# clocks of the run that wrote them, of this one and of the brokers may differ.
CLOCK_MARGIN_MS: Final = 60_000
# At most this many events are produced at once (and fewer under a rate).
MAX_CHUNK: Final = 100
# Reading stops with an error when Kafka returns nothing for this long before the end.
_STALL_SECONDS: Final = 30.0
_START_SECONDS: Final = 15.0


class ReplayError(BridgeError):
    """Kafka could not be read or written (unreachable, refused, the progress topic)."""

    code = "replay_failed"


@dataclass(frozen=True)
class ReplayOptions:
    topics: tuple[str, ...] = ()
    filters: Filters = field(default_factory=Filters)
    apply: bool = False
    rate: float | None = None
    progress_topic: str = DEFAULT_PROGRESS_TOPIC
    examples: int = 3
    chunk_timeout_seconds: float = 30.0


def reader_options(settings: Settings) -> dict[str, Any]:
    """The bridge's connection settings (TLS, SASL), for a reader without a group."""
    return {
        **client_options(settings),
        "client_id": f"{settings.kafka_client_id}-replay",
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }


def admin_options(settings: Settings) -> dict[str, Any]:
    return {**client_options(settings), "client_id": f"{settings.kafka_client_id}-replay"}


async def replay(
    settings: Settings,
    options: ReplayOptions,
    *,
    on_chunk: Callable[[Tally, int], None] | None = None,
) -> Tally:
    """Preview (``apply`` false) or replay the dead letters; returns the counts.

    ``on_chunk(tally, total)`` is called after each chunk, with the number of dead letters
    the run will read in all. Raises :class:`ReplayError` when Kafka cannot be used.
    """
    planner = Replanner(settings)
    topics = options.topics or planner.dead_letter_topics
    admin = AIOKafkaAdminClient(**admin_options(settings))
    consumer = AIOKafkaConsumer(**reader_options(settings))
    publisher: Publisher | None = None
    where = settings.kafka_bootstrap_servers
    try:
        try:
            async with asyncio.timeout(_START_SECONDS):
                await admin.start()
                await consumer.start()
            existing = set(await admin.list_topics())
        except (KafkaError, OSError, TimeoutError) as exc:
            raise ReplayError(f"cannot read Kafka at {where}: {describe(exc)}") from None
        missing = [t for t in topics if t not in existing]
        if missing:
            raise ReplayError(f"no such dead-letter topic: {', '.join(missing)}")
        created = False
        if options.apply:
            created = await _ensure_progress_topic(
                admin, settings, options.progress_topic, existing
            )
        ledger = Ledger()
        if (options.apply or options.progress_topic in existing) and not created:
            ledger = await _read_ledger(admin, consumer, options.progress_topic)
        if options.apply:
            publisher = Publisher(settings=settings)
            try:
                await publisher.start(_START_SECONDS)
            except (PublishUnavailable, BridgeError) as exc:
                raise ReplayError(f"cannot write to Kafka at {where}: {exc}") from None
            await _settle_pending(admin, consumer, publisher, ledger, options)
        return await _run(admin, consumer, publisher, planner, ledger, topics, options, on_chunk)
    except KafkaError as exc:
        raise ReplayError(f"Kafka at {where}: {describe(exc)}") from None
    finally:
        if publisher is not None:
            await publisher.stop(5.0)
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(consumer.stop(), timeout=5)
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(admin.close(), timeout=5)


async def _run(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    publisher: Publisher | None,
    planner: Replanner,
    ledger: Ledger,
    topics: Sequence[str],
    options: ReplayOptions,
    on_chunk: Callable[[Tally, int], None] | None,
) -> Tally:
    tally = Tally()
    loop = asyncio.get_running_loop()
    pacer = Pacer(options.rate, now=loop.time())
    filters = options.filters
    starts, ends = await _ranges(admin, consumer, topics, filters.since_ms)
    total = sum(max(0, ends[tp] - starts[tp]) for tp in starts)
    seen: set[str] = set(ledger.events)
    async for records in _read(consumer, starts, ends, pacer.chunk_size(MAX_CHUNK)):
        chosen: list[Item] = []
        for consumed in records:
            letter = DeadLetter.of(consumed)
            tally.scanned += 1
            if not filters.letter_matches(letter):
                continue
            for item in planner.items(letter):
                if not filters.item_matches(item):
                    continue
                tally.selected += 1
                count(tally.by_reason, letter.reason)
                chosen.append(item)
        if publisher is None:
            _preview(chosen, ledger, seen, tally, options.examples)
        else:
            # A batch's dead letter holds up to BRIDGE_MAX_EVENTS_PER_BATCH events.
            size = pacer.chunk_size(MAX_CHUNK)
            for start in range(0, len(chosen), size):
                part = chosen[start : start + size]
                await _apply(part, publisher, ledger, seen, tally, options, pacer)
        if on_chunk is not None:
            on_chunk(tally, total)
    return tally


def _preview(
    items: Sequence[Item], ledger: Ledger, seen: set[str], tally: Tally, examples: int
) -> None:
    for item in items:
        if ledger.settled(item.source_id):
            tally.already += 1
            continue
        tally.offer(item, examples)
        if item.record is None:
            count(tally.failing, item.blocked or "unknown")
            continue
        key = _event_key(item)
        if key is not None and key in seen:
            tally.duplicates += 1
            continue
        if key is not None:
            seen.add(key)
        tally.replayable += 1
        count(tally.by_destination, item.record.topic)


async def _apply(
    items: Sequence[Item],
    publisher: Publisher,
    ledger: Ledger,
    seen: set[str],
    tally: Tally,
    options: ReplayOptions,
    pacer: Pacer,
) -> None:
    """Produce one chunk: ``pending`` marks, the records, then ``done`` or ``failed``."""
    sending: list[Item] = []
    later: list[Item] = []  # same event as one being sent: a duplicate if that one is stored
    in_chunk: set[str] = set()
    for item in items:
        if ledger.settled(item.source_id):
            tally.already += 1
            continue
        tally.offer(item, options.examples)
        if item.record is None:
            count(tally.failing, item.blocked or "unknown")
            continue
        key = _event_key(item)
        if key is not None and (key in seen or key in in_chunk):
            later.append(item)
        else:
            if key is not None:
                in_chunk.add(key)
            sending.append(item)
    marks: list[tuple[str, Progress]] = []
    stored: set[str] = set()
    if sending:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(pacer.delay(len(sending), loop.time()))
        timeout = options.chunk_timeout_seconds
        window_ms = int(timeout * 1000)
        now_ms = int(time.time() * 1000)
        await _publish_progress(
            publisher,
            options.progress_topic,
            [
                (i.source_id, Progress("pending", i.destination, now_ms, window_ms, _event_key(i)))
                for i in sending
            ],
            timeout,
        )
        records: list[Record] = [i.record for i in sending if i.record is not None]
        try:
            result = await publisher.publish(records, timeout_seconds=timeout)
        except PublishUnavailable as exc:
            raise ReplayError(
                f"Kafka did not take a chunk of {len(records)} records: {exc.detail}; "
                "run again: what it stored is found by its replay_source header"
            ) from None
        for index, item in enumerate(sending):
            refusal = result.refused.get(index)
            key = _event_key(item)
            if refusal is None:
                tally.replayed += 1
                count(tally.by_destination, item.destination or "")
                marks.append((item.source_id, Progress("done", item.destination, now_ms, 0, key)))
                if key is not None:
                    stored.add(key)
                    seen.add(key)
            else:
                count(tally.failing, refusal.reason)
                marks.append((item.source_id, Progress("failed", item.destination, now_ms)))
    for item in later:
        key = _event_key(item)
        if key is not None and key in seen:
            tally.duplicates += 1
            marks.append((item.source_id, Progress("duplicate", item.destination, 0, 0, key)))
        else:
            count(tally.failing, "refused_with_its_duplicate")
    if marks:
        await _publish_progress(publisher, options.progress_topic, marks, 30.0)
        for source_id, progress in marks:
            ledger.record(source_id, progress)


def _event_key(item: Item) -> str | None:
    key = item.event_key
    return None if key is None else key.hex()


async def _publish_progress(
    publisher: Publisher,
    topic: str,
    marks: Sequence[tuple[str, Progress]],
    timeout_seconds: float,
) -> None:
    records = [
        Record(topic, source_id.encode("utf-8", "surrogatepass"), progress.encode(), [])
        for source_id, progress in marks
    ]
    try:
        result = await publisher.publish(records, timeout_seconds=timeout_seconds)
    except PublishUnavailable as exc:
        raise ReplayError(f"the progress topic {topic} did not take a record: {exc}") from None
    if result.refused:
        refusal = next(iter(result.refused.values()))
        raise ReplayError(
            f"the progress topic {topic} refused a record ({refusal.reason}): {refusal.detail}"
        )


# Reading -------------------------------------------------------------------------------


async def _partitions(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for entry in await admin.describe_topics(list(topics)):
        if entry["error_code"]:
            raise ReplayError(
                f"Kafka cannot describe topic {entry['topic']}: {entry['error_code']}"
            )
        found += [TopicPartition(entry["topic"], p["partition"]) for p in entry["partitions"]]
    return sorted(found)


async def _ranges(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    topics: Sequence[str],
    since_ms: int | None,
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Where to start and stop in each partition: from ``since_ms`` to the end now."""
    partitions = await _partitions(admin, topics)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
    if since_ms is not None:
        found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        for tp in partitions:
            at = found.get(tp)
            starts[tp] = ends[tp] if at is None else max(starts[tp], at.offset)
    return starts, ends


async def _read(
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    chunk: int,
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """The records from ``starts`` up to ``ends`` (excluded), in chunks of ``chunk``."""
    live = {tp for tp in starts if starts[tp] < ends[tp]}
    consumer.assign(sorted(live))
    for tp in live:
        consumer.seek(tp, starts[tp])
    loop = asyncio.get_running_loop()
    last = loop.time()
    buffer: list[ConsumerRecord[bytes, bytes]] = []
    while live:
        batches = await consumer.getmany(timeout_ms=500, max_records=chunk)
        for tp, records in batches.items():
            buffer += [r for r in records if r.offset < ends[tp]]
        for tp in list(live):
            if await consumer.position(tp) >= ends[tp]:
                live.discard(tp)
                consumer.pause(tp)
        if batches:
            last = loop.time()
        elif loop.time() - last > _STALL_SECONDS:
            raise ReplayError(f"Kafka returned nothing for {_STALL_SECONDS:.0f}s before the end")
        while len(buffer) >= chunk:
            yield buffer[:chunk]
            buffer = buffer[chunk:]
    if buffer:
        yield buffer


async def _read_ledger(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, topic: str
) -> Ledger:
    ledger = Ledger()
    starts, ends = await _ranges(admin, consumer, [topic], None)
    async for records in _read(consumer, starts, ends, 1000):
        for record in records:
            if record.key is not None:
                source_id = record.key.decode("utf-8", "surrogatepass")
                ledger.record(source_id, Progress.decode(record.value))
    return ledger


async def _ensure_progress_topic(
    admin: AIOKafkaAdminClient, settings: Settings, topic: str, existing: set[str]
) -> bool:
    """The progress topic, compacted: created like the bridge's topics when allowed.

    Returns whether it was created now (then it holds nothing yet).
    """
    if topic in existing:
        return False
    if not settings.kafka_auto_create_topics:
        raise ReplayError(
            f"the progress topic {topic} does not exist and topic creation is off: create it "
            "with cleanup.policy=compact (or choose one with --progress-topic)"
        )
    new = NewTopic(
        topic,
        1,
        settings.kafka_topic_replication_factor,
        topic_configs={"cleanup.policy": "compact"},
    )
    try:
        response = await admin.create_topics([new])
    except TopicAlreadyExistsError:
        return False
    except KafkaError as exc:
        raise ReplayError(f"cannot create the progress topic {topic}: {describe(exc)}") from None
    for entry in getattr(response, "topic_errors", ()):
        code = entry[1]
        if code not in (0, TopicAlreadyExistsError.errno):
            message = entry[2] if len(entry) > 2 else ""
            raise ReplayError(
                f"cannot create the progress topic {topic}: error {code} {message or ''}".strip()
            )
        return bool(code == 0)
    return True


async def _settle_pending(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    publisher: Publisher,
    ledger: Ledger,
    options: ReplayOptions,
) -> None:
    """Events a stopped run was producing: ``done`` if their topic has them, else replayed."""
    pending = ledger.pending()
    by_topic: dict[str, dict[str, Progress]] = {}
    for source_id, progress in pending.items():
        if progress.topic is not None:
            by_topic.setdefault(progress.topic, {})[source_id] = progress
    found: list[tuple[str, Progress]] = []
    existing = set(await admin.list_topics())
    for topic, wanted in by_topic.items():
        if topic not in existing:
            continue
        first = min(p.at_ms for p in wanted.values()) - CLOCK_MARGIN_MS
        last = max(p.at_ms + p.window_ms for p in wanted.values()) + CLOCK_MARGIN_MS
        partitions = await _partitions(admin, [topic])
        ends = await consumer.end_offsets(partitions)
        after_first = await consumer.offsets_for_times({tp: first for tp in partitions})
        after_last = await consumer.offsets_for_times({tp: last for tp in partitions})
        starts: dict[TopicPartition, int] = {}
        stops: dict[TopicPartition, int] = {}
        for tp in partitions:
            begin, end = after_first.get(tp), after_last.get(tp)
            starts[tp] = ends[tp] if begin is None else begin.offset
            stops[tp] = ends[tp] if end is None else end.offset
        async for records in _read(consumer, starts, stops, 1000):
            for record in records:
                headers: dict[str, bytes] = dict(record.headers or ())
                source = headers.get(SOURCE_HEADER)
                if source is None:
                    continue
                source_id = source.decode("utf-8", "surrogatepass")
                if source_id in wanted:
                    progress = wanted.pop(source_id)
                    found.append(
                        (source_id, Progress("done", topic, progress.at_ms, 0, progress.event_key))
                    )
    if found:
        await _publish_progress(publisher, options.progress_topic, found, 30.0)
        for source_id, progress in found:
            ledger.record(source_id, progress)
