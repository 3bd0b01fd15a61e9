"""The Kafka producer's lifecycle, and "publish these records, all of them, within a deadline".

A batch is answered 2xx only when every record is acknowledged (``acks=all``, idempotent
producer). Records go into per-partition batches (:mod:`bridge.batching`). Every wait is
bounded: metadata, a full batch and ``stop`` can all block while the cluster is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    UnknownProducerId,
)

from bridge.batching import Lanes, raise_too_large
from bridge.errors import InvalidBatch, KafkaStartError, PublishUnavailable
from bridge.logs import get_logger
from bridge.partitioning import partition_for
from bridge.routing import Record
from bridge.settings import Settings, sasl_password

log = get_logger("bridge.publisher")
T = TypeVar("T")

_FATAL_NAMES = ("SaslAuthenticationFailed", "AuthenticationFailedError", "SSLError")
# After these the idempotent producer's sequence state is broken for good (aiokafka expires
# batches while a partition has no leader, leaving a gap); only a new producer recovers.
_BROKEN_PRODUCER = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    ProducerFenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Every record was acknowledged: how many, and how long it took."""

    records: int
    duration_seconds: float


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by the producer and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }
    if settings.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        context.check_hostname = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile)
            )
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def max_request_size(settings: Settings) -> int:
    """Room for a full batch, and for one record of the largest size the bridge accepts."""
    return max(settings.kafka_max_batch_bytes, settings.max_record_bytes + 1024)


def producer_options(settings: Settings) -> dict[str, Any]:
    """The producer's options: acknowledged by all in-sync replicas, idempotent.

    No partitioner: the bridge picks every record's partition itself (:mod:`bridge.batching`).
    """
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None
        if settings.kafka_compression_type == "none"
        else settings.kafka_compression_type,
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": settings.kafka_max_batch_bytes,
        "max_request_size": max_request_size(settings),
    }


def is_fatal(exc: BaseException) -> bool:
    """Errors that a retry cannot fix: bad credentials, an untrusted certificate."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) or type(current).__name__ in _FATAL_NAMES:
            return True
        current = current.__cause__ or current.__context__
    return False


class Publisher:
    """One idempotent producer per process, started and stopped safely, checked for health."""

    def __init__(
        self,
        *,
        settings: Settings,
        on_connected: Callable[[bool], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_connected = on_connected
        self._producer: AIOKafkaProducer | None = None
        self._lanes: Lanes | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._connected = False
        self._started = False
        self._replacing: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    def _set_connected(self, value: bool) -> None:
        if value != self._connected:
            log.info("kafka_connected" if value else "kafka_disconnected")
        self._connected = value
        if self._on_connected is not None:
            self._on_connected(value)

    def _use(self, producer: AIOKafkaProducer | None) -> None:
        """Publish through ``producer`` from now on; batches of the previous one fail."""
        if self._lanes is not None:
            self._lanes.close()
        self._producer = producer
        self._lanes = None if producer is None else Lanes(producer)

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(**producer_options(self._settings))

    async def start(self, timeout_seconds: float) -> None:
        """Connect once; raises :class:`KafkaStartError` on fatal errors, else may retry."""
        if self._started:
            return
        producer = self._new_producer()
        try:
            async with asyncio.timeout(timeout_seconds):
                await producer.start()
        except BaseException as exc:
            await self._stop_quietly(producer, 2.0)
            if isinstance(exc, TimeoutError | KafkaError | OSError):
                # aiokafka logs why bootstrapping failed and raises a generic error;
                # one direct connection tells bad credentials from an unreachable cluster.
                cause = await self._probe(min(timeout_seconds, 5.0)) or exc
                if is_fatal(cause):
                    raise KafkaStartError(_describe(cause)) from exc
                raise PublishUnavailable(f"cannot reach Kafka: {_describe(cause)}") from exc
            raise
        self._use(producer)
        self._started = True
        self._set_connected(True)
        if self._settings.kafka_auto_create_topics:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_seconds):
                    await self._admin_client()

    async def _admin_client(self) -> AIOKafkaAdminClient | None:
        """The admin client for topic creation, started on first use; None while unreachable."""
        if self._admin is not None:
            return self._admin
        admin = AIOKafkaAdminClient(**client_options(self._settings))
        try:
            await admin.start()
            self._known_topics.update(await admin.list_topics())
        except (KafkaError, OSError) as exc:
            log.warning("kafka_admin_unavailable", error=_describe(exc))
            with contextlib.suppress(Exception):
                await admin.close()
            return None
        except BaseException:
            with contextlib.suppress(Exception):
                await admin.close()
            raise
        self._admin = admin
        return admin

    async def _probe(self, timeout_seconds: float) -> BaseException | None:
        """The error of one direct connection to the first bootstrap server, if any."""
        options = client_options(self._settings)
        first = options.pop("bootstrap_servers").split(",")[0].strip()
        host, _, port = first.rpartition(":")
        try:
            async with asyncio.timeout(timeout_seconds):
                conn = await create_conn(host.strip("[]"), int(port), **options)
        except (ValueError, TimeoutError, KafkaError, OSError) as exc:
            return exc
        conn.close()
        return None

    async def stop(self, timeout_seconds: float) -> None:
        """Flush and stop; bounded, and safe to call twice or after a failed start."""
        replacing, self._replacing = self._replacing, None
        if replacing is not None:
            replacing.cancel()
            with contextlib.suppress(BaseException):
                await replacing
        producer = self._producer
        self._use(None)
        admin, self._admin = self._admin, None
        self._started = False
        if admin is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(min(2.0, timeout_seconds)):
                    await admin.close()
        if producer is not None:
            await self._stop_quietly(producer, timeout_seconds)
        self._set_connected(False)

    @staticmethod
    async def _stop_quietly(producer: AIOKafkaProducer, timeout_seconds: float) -> None:
        try:
            async with asyncio.timeout(timeout_seconds):
                await producer.stop()
        except TimeoutError:
            log.warning("kafka_stop_timed_out", timeout_seconds=timeout_seconds)
        except Exception as exc:  # stopping must never raise into shutdown
            log.warning("kafka_stop_failed", error=_describe(exc))

    def _replace_producer(self, broken: AIOKafkaProducer, cause: BaseException) -> None:
        """Swap in a new producer (new producer id) once; concurrent callers see 503s."""
        if self._producer is not broken or self._replacing is not None:
            return
        log.warning("kafka_producer_replaced", error=_describe(cause))
        self._use(None)

        async def replace() -> None:
            try:
                await self._stop_quietly(broken, 2.0)
                fresh = self._new_producer()
                try:
                    async with asyncio.timeout(10):
                        await fresh.start()
                except (TimeoutError, KafkaError, OSError) as exc:
                    await self._stop_quietly(fresh, 2.0)
                    self._started = False  # the watch loop starts one later
                    log.warning("kafka_producer_replace_failed", error=_describe(exc))
                    return
                self._use(fresh)
                self._set_connected(True)
            finally:
                self._replacing = None

        self._replacing = asyncio.create_task(replace(), name="kafka-producer-replace")

    @property
    def started(self) -> bool:
        return self._started

    async def check(self, timeout_seconds: float) -> bool:
        """Ask the cluster for metadata; updates and returns the connection state."""
        producer = self._producer
        if producer is None:
            self._set_connected(False)
            return False
        try:
            async with asyncio.timeout(timeout_seconds):
                ok = bool(await producer.client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            ok = False
        self._set_connected(ok)
        return ok

    async def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if not missing or not self._settings.kafka_auto_create_topics:
            return
        async with self._topic_lock:
            missing -= self._known_topics
            admin = await self._admin_client() if missing else None
            if admin is None:
                return
            s = self._settings
            new = [
                NewTopic(t, s.kafka_topic_partitions, s.kafka_topic_replication_factor)
                for t in sorted(missing)
            ]
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                response = None
            except (KafkaError, OSError) as exc:
                # Producing still works where the broker creates topics itself; otherwise
                # the records time out and the batch is answered 503.
                log.warning(
                    "kafka_topic_create_failed", topics=sorted(missing), error=_describe(exc)
                )
                return
            errors = (
                getattr(response, "topic_errors", None) or getattr(response, "topics", None) or []
            )
            for entry in errors:
                name, code = entry[0], entry[1]
                if code not in (0, TopicAlreadyExistsError.errno):
                    log.warning("kafka_topic_create_failed", topic=name, error_code=code)
            self._known_topics.update(missing)
            log.info("kafka_topics_created", topics=sorted(missing))

    async def publish(
        self,
        records: Sequence[Record],
        *,
        timeout_seconds: float,
        on_ack: Callable[[Sequence[int]], None] | None = None,
    ) -> PublishResult:
        """Produce ``records`` in order and wait until Kafka acknowledged all of them.

        Raises :class:`PublishUnavailable` when that does not happen within the deadline,
        and :class:`InvalidBatch` when the cluster rejects a record for its size.
        ``on_ack(indexes)`` is called with the records Kafka acknowledged, also after the
        deadline, so that late acknowledgements still count as seen.
        """
        producer, lanes = self._producer, self._lanes
        if producer is None or lanes is None:
            raise PublishUnavailable("the Kafka producer is not connected")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout_seconds
        max_request = max_request_size(self._settings)
        futures: list[asyncio.Future[None]] = []
        cluster = producer.client.cluster
        try:
            # Nothing below waits in the common case (topics known, room in every batch),
            # so a deadline timer is only armed around a wait that actually happens.
            topics = {r.topic for r in records}
            if self._settings.kafka_auto_create_topics and not topics <= self._known_topics:
                await _within(deadline, self._ensure_topics(topics))
            partitions: dict[str, list[int]] = {}
            for record in records:
                if record.exceeds(max_request):
                    raise_too_large(record, max_request)
                topic = record.topic
                known = partitions.get(topic)
                if known is None:
                    found = cluster.partitions_for_topic(topic)
                    if found is None:
                        found = await _within(deadline, producer.partitions_for(topic))
                    known = partitions[topic] = sorted(found)
                    if not known:
                        raise PublishUnavailable(f"Kafka lists no partitions of {topic}")
                if record.key is None:
                    available = sorted(cluster.available_partitions_for_topic(topic))
                    partition = partition_for(None, known, available)
                else:
                    partition = partition_for(record.key, known, known)
                lane = lanes.lane(topic, partition)
                while lane.full:
                    lanes.flush()
                    # Shielded: the room future is shared with other requests.
                    await _within(deadline, asyncio.shield(lane.room()))
                futures.append(lane.append(record))
        except TimeoutError:
            self._set_connected(False)
            if on_ack is not None:
                _ack_later(futures, on_ack)
            raise PublishUnavailable(
                f"Kafka did not accept {len(records) - len(futures)} of {len(records)} "
                f"records within {timeout_seconds:.1f}s"
            ) from None
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise InvalidBatch(f"a record is too large: {exc}", code="record_too_large") from exc
        except KafkaError as exc:
            self._set_connected(False)
            raise PublishUnavailable(f"Kafka refused a record: {_describe(exc)}") from exc
        finally:
            # Also when giving up: what was added goes out (and may still be acknowledged).
            lanes.flush()
        if futures:
            remaining = max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(set(futures), timeout=remaining)
            if on_ack is not None:
                if pending:
                    _ack_later(futures, on_ack)
                else:
                    on_ack([i for i, f in enumerate(futures) if f.exception() is None])
            if pending:
                self._set_connected(False)
                waiting = sum(1 for future in futures if future in pending)
                raise PublishUnavailable(
                    f"Kafka acknowledged {len(futures) - waiting} of {len(futures)} records "
                    f"within {timeout_seconds:.1f}s"
                )
            for future in done:
                failure = future.exception()
                if isinstance(failure, MessageSizeTooLargeError | RecordTooLargeError):
                    raise InvalidBatch(
                        f"a record is too large: {failure}", code="record_too_large"
                    ) from failure
                if isinstance(failure, _BROKEN_PRODUCER):
                    self._replace_producer(producer, failure)
                if failure is not None:
                    self._set_connected(False)
                    raise PublishUnavailable(f"Kafka did not store a record: {_describe(failure)}")
        self._set_connected(True)
        return PublishResult(len(futures), loop.time() - started)


async def _within(deadline: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout_at(deadline):
        return await awaitable


def _ack_later(
    futures: Sequence[asyncio.Future[None]], on_ack: Callable[[Sequence[int]], None]
) -> None:
    """Call ``on_ack`` with each batch's records once (and if) Kafka acknowledges it."""
    groups: dict[asyncio.Future[None], list[int]] = {}
    for index, future in enumerate(futures):
        groups.setdefault(future, []).append(index)
    for future, indexes in groups.items():
        future.add_done_callback(functools.partial(_acked, on_ack, indexes))


def _acked(
    on_ack: Callable[[Sequence[int]], None], indexes: list[int], future: asyncio.Future[None]
) -> None:
    if not future.cancelled() and future.exception() is None:
        on_ack(indexes)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
