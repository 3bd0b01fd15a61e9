"""Duplicates remembered by the whole fleet and across restarts, with Kafka as the store.

With ``BRIDGE_DEDUPE_FLEET_TOPIC`` set, every replica writes the digest of each event Kafka
acknowledged to one compacted topic, after the acknowledgement and without ever making an
answer wait for it, and reads that topic into its duplicates windows: from the entries
younger than the window's age at start, then continuously. A batch ALM sends again to
another replica, or to this one after a restart, is then answered as a duplicate.

Record layout (:func:`bridge.core.dedupe.fleet_record`): the key is the event's 16-byte digest
followed by the receiver's name, the value the Unix time of the acknowledgement in
milliseconds. The topic is created when missing (``cleanup.policy=compact,delete``,
``retention.ms`` = the window's age, one partition, the bridge's replication factor);
an existing topic that is not compacted, that the bridge may not describe, read or write,
is refused at start (:class:`FleetTopicRefused`, one line).

What it cannot promise: two replicas that receive the same re-send at the same moment
both publish it (neither has acknowledged it yet), and an acknowledgement reaches the
other replicas only after its record is written and read (tens of milliseconds on a
healthy cluster, longer when the writes queue); ALM re-sends after seconds at the
earliest. The README's "Duplicates" section has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.structs import TopicPartition

from bridge.config.settings import Settings
from bridge.core.dedupe import FLEET_PROBE_KEY, Newest, SeenWindow, fleet_record, read_fleet_record
from bridge.core.errors import KafkaTopicRefused, PublishUnavailable
from bridge.core.partitioning import partition_for
from bridge.core.reasons import FleetWriteFailure
from bridge.core.records import Record
from bridge.kafka.batching import Handle, Lanes
from bridge.kafka.publisher import client_options
from bridge.kafka.topics import describe
from bridge.telemetry.logs import get_logger
from bridge.telemetry.metrics import Metrics

log = get_logger("bridge.fleet")

# Digests waiting to be written; past this, new ones are dropped (and counted): the
# memory of a replica that cannot write stays bounded, and answers never wait.
MAX_QUEUED_KEYS: Final = 50_000
# Writes are not in any answer's path: let them gather into few, full batches.
WRITE_LINGER_SECONDS: Final = 0.05
READ_WAIT_MS: Final = 1000
READ_MAX_RECORDS: Final = 10_000
RETRY_SECONDS: Final = 1.0
PARTITIONS: Final = 1
# Segments roll at least this often, so that retention and compaction can act on them.
MAX_SEGMENT_MS: Final = 3_600_000
_AUTHORIZATION = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError)
_SETTING: Final = "BRIDGE_DEDUPE_FLEET_TOPIC"


class FleetTopicRefused(KafkaTopicRefused):
    """The fleet topic cannot be the fleet's memory: not compacted, or not describable,
    readable or writable by the bridge. Retrying will not help."""

    code = "dedupe_fleet_topic_refused"


class Fleet:
    """The fleet topic's writer and reader for one process's windows (one per receiver)."""

    def __init__(
        self,
        *,
        settings: Settings,
        windows: Mapping[str, SeenWindow],
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = settings.dedupe_fleet_topic
        self._settings = settings
        self._windows = dict(windows)
        self._metrics = metrics
        self._wall = wall_clock
        self._clock = clock
        self._max_age_seconds = settings.dedupe_max_age_seconds
        self._load_timeout_seconds = settings.dedupe_fleet_load_timeout_seconds
        # starting (not reached yet), loading, loaded, refused, stopped
        self.status = "starting"
        self.error: str | None = None
        self._ready_at = float("inf")
        self._queue: deque[tuple[str, list[bytes], int]] = deque()
        self._queued_keys = 0
        self._wake = asyncio.Event()
        # Set while nothing is queued.
        self._idle = asyncio.Event()
        self._idle.set()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._load_ends: dict[TopicPartition, int] = {}
        self._loaders: dict[str, Newest] = {}
        self._load_started = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def started(self) -> bool:
        return self.status in ("loading", "loaded")

    @property
    def ready(self) -> bool:
        """Loaded, or not loaded ``BRIDGE_DEDUPE_FLEET_LOAD_TIMEOUT_SECONDS`` after the first
        try (a large topic, or one whose partition has no leader now): the fleet's memory
        must never keep the bridge out of service for longer. A refused topic is never ready.
        """
        if self.status == "loaded":
            return True
        return self.status in ("starting", "loading") and self._clock() >= self._ready_at

    def share(self, receiver: str, keys: Sequence[bytes | None]) -> None:
        """Queue the digests of events Kafka just acknowledged; never waits, never raises."""
        fresh = [k for k in keys if k is not None]
        if not fresh:
            return
        if self.status in ("refused", "stopped") or (
            self._queued_keys + len(fresh) > MAX_QUEUED_KEYS
        ):
            self._metrics.fleet_writes_failed.labels(FleetWriteFailure.DROPPED).inc(len(fresh))
            return
        self._queue.append((receiver, fresh, int(self._wall() * 1000)))
        self._queued_keys += len(fresh)
        self._idle.clear()
        self._wake.set()

    # ---------------------------------------------------------------------- start-up

    async def start(self, timeout_seconds: float) -> None:
        """Check (or create) the topic, prove it writable and readable, and start loading.

        Raises :class:`FleetTopicRefused` (and remembers it) when the topic cannot serve,
        :class:`PublishUnavailable` when Kafka does not answer: the caller tries again.
        """
        if self.status != "starting":
            return
        if self._ready_at == float("inf"):
            self._ready_at = self._clock() + self._load_timeout_seconds
        producer: AIOKafkaProducer | None = None
        consumer: AIOKafkaConsumer | None = None
        step = "describe or create"
        try:
            async with asyncio.timeout(timeout_seconds):
                await self._prepare_topic()
                step = "write"
                producer = AIOKafkaProducer(**self._producer_options())
                await producer.start()
                await self._probe_write(producer)
                step = "read"
                consumer = AIOKafkaConsumer(**self._consumer_options())
                await consumer.start()
                await self._position(consumer)
                # The first read proves the topic readable (Fetch needs the READ right).
                first = await consumer.getmany(
                    timeout_ms=READ_WAIT_MS, max_records=READ_MAX_RECORDS
                )
        except FleetTopicRefused as exc:
            await _stop_quietly(producer, consumer)
            self._refuse(exc.detail)
            raise
        except _AUTHORIZATION as exc:
            await _stop_quietly(producer, consumer)
            detail = self._denied(step, exc)
            self._refuse(detail)
            raise FleetTopicRefused(detail) from exc
        except (TimeoutError, KafkaError, OSError) as exc:
            await _stop_quietly(producer, consumer)
            raise PublishUnavailable(
                f"{_SETTING} {self.topic}: Kafka did not answer: {describe(exc)}"
            ) from exc
        except BaseException:
            await _stop_quietly(producer, consumer)
            raise
        self._producer, self._consumer = producer, consumer
        self._load_started = self._clock()
        self._loaders = {name: Newest(w.max_entries) for name, w in self._windows.items()}
        self.status = "loading"
        self._take(first)
        await self._check_loaded()
        self._tasks = [
            asyncio.create_task(self._write_forever(), name="dedupe-fleet-writer"),
            asyncio.create_task(self._read_forever(), name="dedupe-fleet-reader"),
        ]
        log.info("dedupe_fleet_started", topic=self.topic, partitions=len(self._partitions))

    def _refuse(self, detail: str) -> None:
        self.status = "refused"
        self.error = detail
        log.error("dedupe_fleet_topic_refused", topic=self.topic, error=detail)

    def _denied(self, step: str, exc: BaseException) -> str:
        return (
            f"{_SETTING} {self.topic}: the bridge may not {step} the topic ({describe(exc)}): "
            "grant its principal Describe, DescribeConfigs, Read and Write on the topic "
            "(and Create, to let it create the topic)"
        )

    def _admin(self) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**client_options(self._settings))

    def _producer_options(self) -> dict[str, Any]:
        # Not idempotent: a digest written twice is harmless, and a separate, plain
        # producer can never disturb the sequence numbers of the events' producer.
        return {**client_options(self._settings), "acks": "all", "enable_idempotence": False}

    def _consumer_options(self) -> dict[str, Any]:
        return {
            **client_options(self._settings),
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "request_timeout_ms": max(self._settings.kafka_request_timeout_ms, 5000),
        }

    def _topic_configs(self) -> dict[str, str]:
        retention_ms = int(self._max_age_seconds * 1000)
        return {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(retention_ms),
            "segment.ms": str(max(60_000, min(retention_ms, MAX_SEGMENT_MS))),
        }

    async def _prepare_topic(self) -> None:
        """The topic exists (created if missing and allowed) and is compacted."""
        admin = self._admin()
        try:
            await admin.start()
            configs = await self._configs(admin)
            if configs is None:
                if not self._settings.kafka_auto_create_topics:
                    raise FleetTopicRefused(
                        f"{_SETTING} {self.topic}: the topic does not exist and "
                        "BRIDGE_KAFKA_AUTO_CREATE_TOPICS is off: create it with "
                        + ", ".join(f"{k}={v}" for k, v in self._topic_configs().items())
                    )
                await self._create(admin)
                configs = await self._configs(admin)
                if configs is None:
                    raise PublishUnavailable(f"{_SETTING} {self.topic}: created, not yet known")
            self._partitions = await self._partitions_of(admin)
        finally:
            await admin.close()
        policy = configs.get("cleanup.policy", "delete")
        if "compact" not in {p.strip() for p in policy.split(",")}:
            raise FleetTopicRefused(
                f"{_SETTING} {self.topic}: the topic exists but is not compacted "
                f"(cleanup.policy={policy}): set cleanup.policy=compact,delete on it, or name "
                "another topic"
            )
        retention = configs.get("retention.ms", "")
        if "delete" not in policy:
            log.warning(
                "dedupe_fleet_topic_grows",
                topic=self.topic,
                detail="cleanup.policy has no delete: every event's digest stays for ever; "
                f"add delete with retention.ms={int(self._max_age_seconds * 1000)}",
            )
        elif retention.lstrip("-").isdigit() and 0 < int(retention) < self._max_age_seconds * 1000:
            log.warning(
                "dedupe_fleet_retention_short",
                topic=self.topic,
                retention_ms=int(retention),
                detail="entries leave the topic before the window's age: a restarted "
                "replica remembers less than BRIDGE_DEDUPE_MAX_AGE_SECONDS",
            )

    async def _configs(self, admin: AIOKafkaAdminClient) -> dict[str, str] | None:
        """The topic's configuration, or None when it does not exist."""
        resource = ConfigResource(ConfigResourceType.TOPIC, self.topic)
        responses = await admin.describe_configs([resource])
        for response in responses:
            for code, message, _, name, entries, *_ in response.resources:
                if name != self.topic:
                    continue
                if code == UnknownTopicOrPartitionError.errno:
                    return None
                if code != 0:
                    raise for_code(code)(message)
                return {entry[0]: entry[1] for entry in entries if entry[1] is not None}
        raise PublishUnavailable(f"{_SETTING} {self.topic}: Kafka did not describe the topic")

    async def _partitions_of(self, admin: AIOKafkaAdminClient) -> list[TopicPartition]:
        for entry in await admin.describe_topics([self.topic]):
            if entry["topic"] != self.topic:
                continue
            code = entry["error_code"]
            if code != 0:
                raise for_code(code)(f"describing {self.topic}")
            found = sorted(part["partition"] for part in entry["partitions"])
            if found:
                return [TopicPartition(self.topic, p) for p in found]
        raise PublishUnavailable(f"{_SETTING} {self.topic}: Kafka lists no partitions of it")

    async def _create(self, admin: AIOKafkaAdminClient) -> None:
        configs = self._topic_configs()
        topic = NewTopic(
            self.topic,
            PARTITIONS,
            self._settings.kafka_topic_replication_factor,
            topic_configs=configs,
        )
        response = await admin.create_topics([topic])
        for entry in response.topic_errors:
            code = entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code in (0, TopicAlreadyExistsError.errno):
                if code == 0:
                    log.info(
                        "dedupe_fleet_topic_created", topic=self.topic, **self._topic_configs()
                    )
                continue
            error = for_code(code)(message)
            if isinstance(error, _AUTHORIZATION):
                raise error
            if getattr(error, "retriable", False):
                raise error
            raise FleetTopicRefused(
                f"{_SETTING} {self.topic}: Kafka refused to create the topic "
                f"({describe(error)}): create it with "
                + ", ".join(f"{k}={v}" for k, v in self._topic_configs().items())
            )

    async def _probe_write(self, producer: AIOKafkaProducer) -> None:
        """One tombstone under a key no reader takes for an event: WRITE is granted."""
        await producer.send_and_wait(self.topic, None, key=FLEET_PROBE_KEY)

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        """Every partition assigned, from its first entry younger than the window's age."""
        consumer.assign(self._partitions)
        since_ms = int((self._wall() - self._max_age_seconds) * 1000)
        starts = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in self._partitions})
        ends = await consumer.end_offsets(self._partitions)
        for tp in self._partitions:
            found = starts.get(tp)
            consumer.seek(tp, ends[tp] if found is None else found.offset)
        self._load_ends = {tp: end for tp, end in ends.items() if end > 0}

    # ----------------------------------------------------------------------- reading

    def _take(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Entries of other replicas (and earlier runs) into the windows, or the loaders."""
        if not batches:
            return
        now_wall = self._wall()
        now = self._clock()
        horizon = now - self._max_age_seconds
        loading = self.status == "loading"
        # The digests of one acknowledgement share their time: learnt together.
        groups: dict[tuple[str, int], list[bytes]] = {}
        windows = self._windows
        for records in batches.values():
            for record in records:
                entry = read_fleet_record(record.key, record.value)
                if entry is None:
                    continue
                receiver, key, acknowledged_ms = entry
                if receiver not in windows:
                    continue
                group = groups.get((receiver, acknowledged_ms))
                if group is None:
                    groups[receiver, acknowledged_ms] = [key]
                else:
                    group.append(key)
        learnt: dict[str, int] = {}
        for (receiver, acknowledged_ms), keys in groups.items():
            stamp = now - max(0.0, now_wall - acknowledged_ms / 1000)
            if stamp < horizon:
                continue
            if loading:
                loader = self._loaders[receiver]
                for key in keys:
                    loader.offer(stamp, key)
            else:
                added = windows[receiver].learn(keys, at=stamp)
                if added:
                    learnt[receiver] = learnt.get(receiver, 0) + added
        for receiver, count in learnt.items():
            self._metrics.fleet_entries_loaded.labels(receiver).inc(count)

    async def _check_loaded(self) -> None:
        consumer = self._consumer
        if self.status != "loading" or consumer is None:
            return
        for tp, end in self._load_ends.items():
            # Known after a seek or a fetch: no request to Kafka.
            if await consumer.position(tp) < end:
                return
        total = 0
        for receiver, loader in self._loaders.items():
            added = self._windows[receiver].merge(loader.take())
            if added:
                self._metrics.fleet_entries_loaded.labels(receiver).inc(added)
            total += added
        self._loaders = {}
        self.status = "loaded"
        self._metrics.fleet_loaded.set(1)
        log.info(
            "dedupe_fleet_loaded",
            topic=self.topic,
            entries=total,
            seconds=round(self._clock() - self._load_started, 3),
        )

    async def _read_forever(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        failing = False
        while True:
            try:
                batches = await consumer.getmany(
                    timeout_ms=READ_WAIT_MS, max_records=READ_MAX_RECORDS
                )
            except KafkaError as exc:
                self._metrics.fleet_read_errors.inc()
                if not failing:
                    log.warning("dedupe_fleet_read_failed", topic=self.topic, error=describe(exc))
                failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if failing:
                log.info("dedupe_fleet_read_again", topic=self.topic)
                failing = False
            self._take(batches)
            await self._check_loaded()
            await self._observe(consumer)

    async def _observe(self, consumer: AIOKafkaConsumer) -> None:
        lag = 0
        polled = 0
        for tp in self._partitions:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag += max(0, highwater - await consumer.position(tp))
            polled = max(polled, consumer.last_poll_timestamp(tp) or 0)
        self._metrics.fleet_lag.set(lag)
        if polled:
            self._metrics.fleet_last_read.set(polled / 1000)

    # ----------------------------------------------------------------------- writing

    async def _write_forever(self) -> None:
        producer = self._producer
        assert producer is not None
        lanes = Lanes(producer, linger_seconds=WRITE_LINGER_SECONDS)
        partitions = sorted(tp.partition for tp in self._partitions)
        topic = self.topic
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    receiver, keys, acknowledged_ms = self._queue.popleft()
                    self._queued_keys -= len(keys)
                    counts: dict[Handle, int] = {}
                    try:
                        for digest in keys:
                            key, value = fleet_record(receiver, digest, acknowledged_ms)
                            lane = lanes.lane(topic, partition_for(key, partitions, partitions))
                            while lane.full:
                                lanes.flush()
                                await asyncio.shield(lane.room())
                            handle = lane.append(Record(topic, key, value, []))
                            counts[handle] = counts.get(handle, 0) + 1
                    except Exception:
                        # Never seen; the writer must outlive it all the same.
                        log.exception("dedupe_fleet_write_failed", topic=topic)
                        lost = len(keys) - sum(counts.values())
                        self._metrics.fleet_writes_failed.labels(FleetWriteFailure.FAILED).inc(lost)
                    for handle, count in counts.items():
                        handle.add_done_callback(functools.partial(self._written, count))
                    lanes.flush()
                self._idle.set()
        finally:
            lanes.close()

    def _written(self, count: int, handle: Handle) -> None:
        if not handle.cancelled() and handle.exception() is None:
            self._metrics.fleet_writes.inc(count)
        else:
            self._metrics.fleet_writes_failed.labels(FleetWriteFailure.FAILED).inc(count)

    async def drain(self, timeout_seconds: float) -> None:
        """Let the queued digests be handed to the producer, within ``timeout_seconds``."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await self._idle.wait()

    async def stop(self, timeout_seconds: float) -> None:
        """Write what is queued (bounded), then stop reading and writing; safe twice."""
        await self.drain(timeout_seconds / 2)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        if self.status != "refused":
            self.status = "stopped"
        await _stop_quietly(producer, consumer, timeout_seconds / 2)


async def _stop_quietly(
    producer: AIOKafkaProducer | None,
    consumer: AIOKafkaConsumer | None,
    timeout_seconds: float = 2.0,
) -> None:
    for client in (consumer, producer):
        if client is None:
            continue
        try:
            async with asyncio.timeout(timeout_seconds):
                await client.stop()
        except Exception as exc:  # stopping must never raise into shutdown
            log.warning("dedupe_fleet_stop_failed", error=describe(exc))
