"""The topics the bridge writes to: made to exist, and Kafka's refusals remembered.

Everything here asks about the bridge's own topics only (a metadata request naming them,
CreateTopics for the missing ones), never about the whole cluster, so its cost does not
grow with other teams' topics. Kafka's answers are sorted into the ones a later try may
change (raised as :class:`PublishUnavailable`: 503) and refusals for good (:class:`Refusal`:
the events concerned are dead-lettered).

An adapter (docs/architecture.md): it builds ``aiokafka.protocol.metadata.MetadataRequest``
(``allow_auto_topic_creation`` set) and ``aiokafka.protocol.admin.CreateTopicsRequest``,
sends them through the producer's client, and reads the answers by position (a topic's
error code and name; CreateTopics' name, error code and message). aiokafka's admin client
is no faster, and its ``describe_topics`` lets a broker that auto-creates topics create a
new one with the broker's defaults; it also brings connections of its own and asks for
the whole cluster's metadata (``python -m bench.topicadmin``, figures in the architecture
page). aiokafka is pinned to one release; tests/unit/test_kafka_protocol.py checks these
classes and positions against it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    InvalidPartitionsError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidReplicationAssignmentError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    PolicyViolationError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownProducerId,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.admin import CreateTopicsRequest
from aiokafka.protocol.metadata import MetadataRequest

from bridge.config.settings import Settings
from bridge.core.errors import PublishUnavailable
from bridge.core.reasons import DeadLetterReason, KafkaRefusal
from bridge.core.sink import Refusal
from bridge.telemetry.logs import get_logger

log = get_logger("bridge.topics")

# After these the idempotent producer's sequence state is broken for good (aiokafka expires
# batches while a partition has no leader, leaving a gap); only a new producer recovers.
BROKEN_PRODUCER = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    ProducerFenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
)


# Kafka's answers that will never change for a topic or a record: the records concerned
# are dead-lettered instead of being answered 503 until ALM gives up.
_TOPIC_REFUSALS: Final[Mapping[type[BaseException], KafkaRefusal]] = {
    TopicAuthorizationFailedError: DeadLetterReason.TOPIC_NOT_AUTHORIZED,
    ClusterAuthorizationFailedError: DeadLetterReason.TOPIC_NOT_AUTHORIZED,
    PolicyViolationError: DeadLetterReason.TOPIC_POLICY,
    InvalidPartitionsError: DeadLetterReason.TOPIC_CONFIG,
    InvalidReplicationFactorError: DeadLetterReason.TOPIC_CONFIG,
    InvalidReplicationAssignmentError: DeadLetterReason.TOPIC_CONFIG,
}
_RECORD_REFUSALS: Final[Mapping[type[BaseException], KafkaRefusal]] = {
    MessageSizeTooLargeError: DeadLetterReason.RECORD_TOO_LARGE,
    RecordTooLargeError: DeadLetterReason.RECORD_TOO_LARGE,
    RecordListTooLargeError: DeadLetterReason.RECORD_TOO_LARGE,
}
# How long a topic Kafka refused is answered from memory before asking again (an
# operator may grant an ACL or create the topic meanwhile).
REFUSAL_MEMORY_SECONDS: Final = 30.0
_MAX_REMEMBERED_TOPICS: Final = 10_000


def refusal_of(exc: BaseException) -> Refusal | None:
    """The refusal an error of Kafka's means, or None when a later try may succeed."""
    for kind, reason in (*_RECORD_REFUSALS.items(), *_TOPIC_REFUSALS.items()):
        if isinstance(exc, kind):
            return Refusal(reason, describe(exc))
    if isinstance(exc, InvalidTopicError):
        return _invalid_topic(describe(exc))
    if (
        isinstance(exc, BrokerResponseError)
        and not exc.retriable
        and not isinstance(exc, (*BROKEN_PRODUCER, UnknownTopicOrPartitionError))
    ):
        return Refusal(DeadLetterReason.KAFKA_REFUSED, describe(exc))
    return None


def _invalid_topic(detail: str) -> Refusal:
    collides = "collides" in detail
    reason: KafkaRefusal = (
        DeadLetterReason.TOPIC_COLLISION if collides else DeadLetterReason.TOPIC_INVALID
    )
    return Refusal(reason, detail)


def refusal_for_code(code: int, message: str | None) -> Refusal | None:
    """What an error code of CreateTopics or Metadata means for a topic (None: retry)."""
    kind = for_code(code)
    detail = f"{kind.__name__}: {message}" if message else kind.__name__
    if kind is InvalidTopicError:
        return _invalid_topic(detail)
    reason = _TOPIC_REFUSALS.get(kind)
    return Refusal(reason, detail) if reason is not None else None


def describe(exc: BaseException) -> str:
    """An error as one short line: its class and its text."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def metadata(producer: AIOKafkaProducer, topics: list[str], *, allow_create: bool) -> Any:
    """A metadata response for ``topics`` only (none: just the brokers), from the first
    broker that answers."""
    client = producer.client
    failure: BaseException | None = None
    for broker in sorted(client.cluster.brokers(), key=lambda b: b.nodeId):
        try:
            return await client.send(
                broker.nodeId, MetadataRequest(topics, allow_auto_topic_creation=allow_create)
            )
        except (KafkaError, OSError) as exc:
            failure = exc
    raise failure or KafkaError("no broker is known")


class Topics:
    """Which of the bridge's topics exist, which Kafka refuses, and making them exist."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.ready: set[str] = set()
        # Topics refused for good, until a monotonic time.
        self._refused: dict[str, tuple[float, Refusal]] = {}
        self._lock = asyncio.Lock()
        # The most brokers any metadata answer listed: a replication factor the cluster met
        # once is a broker away (stopped, restarting), not a configuration it cannot meet.
        self.most_brokers = 0

    def is_refused(self, topic: str) -> bool:
        return topic in self._refused

    async def prepare(
        self, producer: AIOKafkaProducer, topics: Collection[str], *, timeout_seconds: float
    ) -> dict[str, Refusal]:
        """Make sure ``topics`` exist (creating them when allowed); returns those refused.

        Asks only about these topics, never the whole cluster. A topic Kafka refuses for
        good (it collides with another, its name is invalid, the bridge may not create or
        write it, a policy forbids it, it does not exist and may not be created) is
        returned with why, and remembered for :data:`REFUSAL_MEMORY_SECONDS`. Raises
        :class:`PublishUnavailable` when Kafka does not answer in time.
        """
        now = time.monotonic()
        refused: dict[str, Refusal] = {}
        unknown: list[str] = []
        for topic in topics:
            if topic in self.ready:
                continue
            remembered = self._refused.get(topic)
            if remembered is not None and remembered[0] > now:
                refused[topic] = remembered[1]
            else:
                unknown.append(topic)
        if unknown:
            try:
                async with asyncio.timeout(timeout_seconds):
                    refused |= await self._resolve(producer, unknown)
            except TimeoutError:
                raise PublishUnavailable(
                    f"Kafka did not describe {len(unknown)} topic(s) within {timeout_seconds:.1f}s"
                ) from None
        return refused

    def refuse(self, topic: str, refusal: Refusal) -> None:
        if len(self._refused) >= _MAX_REMEMBERED_TOPICS:
            self._refused.clear()
        self._refused[topic] = (time.monotonic() + REFUSAL_MEMORY_SECONDS, refusal)
        self.ready.discard(topic)
        log.warning("kafka_topic_refused", topic=topic, reason=refusal.reason, error=refusal.detail)

    def all_ready(self, topics: Collection[str]) -> bool:
        """Whether every one of ``topics`` is known to exist."""
        return all(t in self.ready for t in topics)

    def forget(self, topic: str) -> None:
        """Ask Kafka about ``topic`` again next time (deleted, or not in the metadata yet)."""
        self.ready.discard(topic)

    def mark_ready(self, topics: Collection[str]) -> None:
        if len(self.ready) + len(topics) > _MAX_REMEMBERED_TOPICS:
            self.ready.clear()
        self.ready.update(topics)
        for topic in topics:
            self._refused.pop(topic, None)

    async def _resolve(self, producer: AIOKafkaProducer, topics: list[str]) -> dict[str, Refusal]:
        auto_create = self._settings.kafka_auto_create_topics
        async with self._lock:
            topics = [t for t in topics if t not in self.ready]
            if not topics:
                return {}
            try:
                # Without auto-creation, the broker's own policy decides whether asking
                # about a topic creates it.
                response = await metadata(producer, topics, allow_create=not auto_create)
            except (KafkaError, OSError) as exc:
                raise PublishUnavailable(f"Kafka did not describe topics: {describe(exc)}") from exc
            self.most_brokers = max(self.most_brokers, len(response.brokers))
            refused: dict[str, Refusal] = {}
            ready: list[str] = []
            missing: list[str] = []
            for entry in response.topics:
                code, topic = entry[0], entry[1]
                if code in (0, LeaderNotAvailableError.errno):
                    ready.append(topic)
                elif code == UnknownTopicOrPartitionError.errno:
                    missing.append(topic)
                else:
                    refusal = refusal_for_code(code, None)
                    if refusal is None:
                        raise PublishUnavailable(
                            f"Kafka answered {for_code(code).__name__} for topic {topic}"
                        )
                    refused[topic] = refusal
            if missing and not auto_create:
                for topic in missing:
                    refused[topic] = Refusal(
                        DeadLetterReason.TOPIC_MISSING,
                        f"topic {topic} does not exist and topic creation is off",
                    )
            elif missing:
                created, not_created = await self._create(producer, missing)
                ready += created
                refused |= not_created
            self.mark_ready(ready)
            for topic, refusal in refused.items():
                self.refuse(topic, refusal)
            return refused

    async def _create(
        self, producer: AIOKafkaProducer, topics: list[str]
    ) -> tuple[list[str], dict[str, Refusal]]:
        s = self._settings
        client = producer.client
        controller = client.cluster.controller
        node = controller.nodeId if controller is not None else client.get_random_node()
        request = CreateTopicsRequest(
            create_topic_requests=[
                (t, s.kafka_topic_partitions, s.kafka_topic_replication_factor, [], [])
                for t in topics
            ],
            timeout=s.kafka_request_timeout_ms,
            validate_only=False,
        )
        try:
            response = await client.send(node, request)
        except (KafkaError, OSError) as exc:
            raise PublishUnavailable(f"Kafka did not create topics: {describe(exc)}") from exc
        created: list[str] = []
        existing: list[str] = []
        refused: dict[str, Refusal] = {}
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code == 0:
                created.append(topic)
                continue
            if code == TopicAlreadyExistsError.errno:
                existing.append(topic)
                continue
            if (
                code == InvalidReplicationFactorError.errno
                and s.kafka_topic_replication_factor <= self.most_brokers
            ):
                # e.g. "only 2 broker(s) are registered" while one of three restarts.
                client.force_metadata_update()
                raise PublishUnavailable(
                    f"Kafka cannot create topic {topic} with {s.kafka_topic_replication_factor} "
                    f"replicas now (the cluster listed {self.most_brokers} brokers before): "
                    f"{message or 'InvalidReplicationFactorError'}"
                )
            refusal = refusal_for_code(code, message)
            if refusal is None:
                client.force_metadata_update()
                raise PublishUnavailable(
                    f"Kafka did not create topic {topic}: {for_code(code).__name__} {message or ''}"
                )
            refused[topic] = refusal
        if created:
            log.info("kafka_topics_created", topics=sorted(created))
        return created + existing, refused
