"""The Kafka producer's lifecycle, and "publish these records, all of them, within a deadline".

A batch is answered 2xx only when every record is acknowledged (``acks=all``, idempotent
producer) or refused by Kafka for good (then the caller dead-letters it). Records go into
per-partition batches (:mod:`bridge.kafka.batching`); the topics are made to exist by
:mod:`bridge.kafka.topics`. Every wait is bounded: metadata, a full batch and ``stop`` can all
block while the cluster is unreachable.

An adapter (docs/architecture.md): after a failed start, ``aiokafka.conn.create_conn``
opens one connection to the first bootstrap server with the producer's own options, whose
error tells refused credentials or an untrusted certificate from an unreachable broker
(the producer raises a generic error). aiokafka is pinned to one release;
tests/unit/test_kafka_protocol.py checks the options it takes.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from bridge.config.settings import Settings, sasl_password, setting_name, setting_said, setting_to
from bridge.core.errors import KafkaStartError, PublishUnavailable
from bridge.core.partitioning import partition_for
from bridge.core.reasons import TOPIC_REFUSALS, DeadLetterReason
from bridge.core.records import Record
from bridge.core.sink import PublishResult, Refusal
from bridge.kafka.batching import Handle, Lanes
from bridge.kafka.listener import Listener, first_server, identify
from bridge.kafka.topics import BROKEN_PRODUCER, Topics, describe, metadata, refusal_of
from bridge.telemetry.logs import get_logger

log = get_logger("bridge.publisher")
T = TypeVar("T")

# Kafka refused the credentials: retrying with the same ones never helps.
_CREDENTIALS_REFUSED = (SaslAuthenticationFailed, AuthenticationFailedError)
# Errors that say the first bootstrap server was never reached: no listener to ask.
_NOT_REACHED = (ConnectionRefusedError, socket.gaierror, TimeoutError)


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

    No partitioner: the bridge picks every record's partition itself (:mod:`bridge.kafka.batching`).
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
    return any(isinstance(each, (ssl.SSLError, *_CREDENTIALS_REFUSED)) for each in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (or contexts), each once."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _in_chain(
    exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> bool:
    return any(isinstance(each, kinds) for each in _chain(exc))


def _not_reached(exc: BaseException) -> bool:
    """The first bootstrap server was never reached: no listener to ask."""
    return _in_chain(exc, _NOT_REACHED)


def _untrusted(exc: BaseException) -> bool:
    """A certificate refused, or credentials: the listener's protocol was the right one."""
    return _in_chain(exc, (ssl.SSLCertVerificationError, *_CREDENTIALS_REFUSED))


def mismatch(settings: Settings, address: str, listener: Listener) -> str | None:
    """Why the bridge's settings cannot work with ``listener``, in one line, or ``None``."""
    protocol = settings.kafka_security_protocol
    if listener.protocol != protocol:
        article = "an" if listener.protocol == "SSL" else "a"
        return (
            f"{setting_said(settings, 'kafka_security_protocol')}, but {address} answered "
            f"like {article} {listener.protocol} listener: set "
            f"{setting_to(settings, 'kafka_security_protocol', listener.protocol)}, or point "
            f"{setting_name(settings, 'kafka_bootstrap_servers')} at the broker's "
            f"{protocol} listener"
        )
    mechanism = settings.kafka_sasl_mechanism
    if protocol.startswith("SASL") and mechanism and mechanism not in listener.mechanisms:
        offered = ", ".join(listener.mechanisms)
        return (
            f"{setting_said(settings, 'kafka_sasl_mechanism')}, but {address} offers only "
            f"{offered}: set {setting_name(settings, 'kafka_sasl_mechanism')} to one of them"
        )
    return None


__all__ = ["KafkaStartError", "PublishResult", "Publisher", "Refusal"]


class Publisher:
    """One idempotent producer per process, started and stopped safely, checked for health.

    The :class:`bridge.core.sink.Sink` that talks to a real cluster.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        standing_topics: Collection[str] = (),
    ) -> None:
        self._settings = settings
        self._standing_topics = tuple(sorted(set(standing_topics)))
        self._producer: AIOKafkaProducer | None = None
        self._lanes: Lanes | None = None
        self._topics = Topics(settings)
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

    def _use(self, producer: AIOKafkaProducer | None) -> None:
        """Publish through ``producer`` from now on; batches of the previous one fail."""
        if self._lanes is not None:
            self._lanes.close()
        self._producer = producer
        self._lanes = (
            None
            if producer is None
            else Lanes(producer, linger_seconds=self._settings.kafka_linger_ms / 1000)
        )

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
                if not _not_reached(cause) and not _untrusted(cause):
                    # A TCP answer but no Kafka session: perhaps another security protocol.
                    wrong = await self._wrong_protocol()
                    if wrong is not None:
                        raise KafkaStartError(wrong) from exc
                if is_fatal(cause):
                    raise KafkaStartError(describe(cause)) from exc
                raise PublishUnavailable(f"cannot reach Kafka: {describe(cause)}") from exc
            raise
        self._use(producer)
        self._started = True
        self._set_connected(True)
        await self._track_standing(producer, timeout_seconds)

    async def _track_standing(self, producer: AIOKafkaProducer, timeout_seconds: float) -> None:
        """Have the producer's periodic metadata refresh ask about the standing topics.

        Until it tracks a topic, aiokafka's refresh asks for *every* topic of the cluster,
        a cost that grows with other teams' topics. The standing topics (dead-letter
        topics) are made to exist first, so that asking about them creates nothing.
        """
        if not self._standing_topics:
            return
        try:
            refused = await self.prepare(self._standing_topics, timeout_seconds=timeout_seconds)
            async with asyncio.timeout(timeout_seconds):
                for topic in self._standing_topics:
                    if topic not in refused:
                        await producer.client.add_topic(topic)
        except (PublishUnavailable, TimeoutError, KafkaError, OSError) as exc:
            log.info("kafka_standing_topics_not_tracked", error=str(exc))

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

    async def _wrong_protocol(self) -> str | None:
        """Why the first bootstrap server cannot work with these settings, if it says so.

        Only a listener that answered like Kafka (with another security protocol, or
        without the SASL mechanism) gives a reason; anything else is left to the retries.
        """
        try:
            host, port = first_server(self._settings.kafka_bootstrap_servers)
        except ValueError:
            return None
        listener = await identify(host, port)
        if listener is None:
            return None
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return mismatch(self._settings, address, listener)

    async def stop(self, timeout_seconds: float) -> None:
        """Flush and stop; bounded, and safe to call twice or after a failed start."""
        replacing, self._replacing = self._replacing, None
        if replacing is not None:
            replacing.cancel()
            # Waits for it without taking on its outcome: its own cancellation or failure is
            # not ours, while a cancellation of this caller still reaches it.
            await asyncio.wait([replacing])
            if not replacing.cancelled():
                replacing.exception()
        producer = self._producer
        self._use(None)
        self._started = False
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
            log.warning("kafka_stop_failed", error=describe(exc))

    def _replace_producer(self, broken: AIOKafkaProducer, cause: BaseException) -> None:
        """Swap in a new producer (new producer id) once; concurrent callers see 503s."""
        if self._producer is not broken or self._replacing is not None:
            return
        log.warning("kafka_producer_replaced", error=describe(cause))
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
                    log.warning("kafka_producer_replace_failed", error=describe(exc))
                    return
                self._use(fresh)
                self._set_connected(True)
                await self._track_standing(fresh, 5.0)
            finally:
                self._replacing = None

        self._replacing = asyncio.create_task(replace(), name="kafka-producer-replace")

    @property
    def started(self) -> bool:
        return self._started

    async def check(self, timeout_seconds: float) -> bool:
        """Whether a broker answers; updates and returns the connection state.

        A metadata request for no topic at all: its cost does not grow with the number of
        topics in the cluster, and a refused record never makes the bridge "not ready".
        """
        producer = self._producer
        if producer is None:
            self._set_connected(False)
            return False
        try:
            async with asyncio.timeout(timeout_seconds):
                await metadata(producer, [], allow_create=False)
            ok = True
        except (TimeoutError, KafkaError, OSError):
            ok = False
        self._set_connected(ok)
        return ok

    async def prepare(
        self, topics: Collection[str], *, timeout_seconds: float
    ) -> dict[str, Refusal]:
        """Make sure ``topics`` exist (see :meth:`bridge.kafka.topics.Topics.prepare`)."""
        producer = self._producer
        if producer is None:
            raise PublishUnavailable("the Kafka producer is not connected")
        return await self._topics.prepare(producer, topics, timeout_seconds=timeout_seconds)

    async def publish(
        self,
        records: Sequence[Record],
        *,
        timeout_seconds: float,
        on_ack: Callable[[Sequence[int]], None] | None = None,
        on_produced: Callable[[Sequence[tuple[int, Handle]]], None] | None = None,
    ) -> PublishResult:
        """Produce ``records`` in order and wait until Kafka acknowledged or refused each.

        Records that Kafka refuses for good (see :func:`refusal_of` and :meth:`prepare`)
        are returned in ``refused``; raises :class:`PublishUnavailable` when anything else
        is not acknowledged within the deadline. ``on_ack(indexes)`` is called with the
        records Kafka acknowledged on every path, also after the deadline and when an
        exception is raised, so that whatever Kafka stored counts as seen.
        ``on_produced`` learns, before any wait for Kafka, the outcome future of every
        record handed to the producer: a record stays there after a deadline, and a
        re-send of it can wait for that outcome instead of producing it again.

        Two phases: :class:`_Handover` puts every record in its partition's batch, then
        :meth:`_outcome` waits for Kafka's answers and sorts them.
        """
        producer, lanes = self._producer, self._lanes
        if producer is None or lanes is None:
            raise PublishUnavailable("the Kafka producer is not connected")
        loop = asyncio.get_running_loop()
        started = loop.time()
        handover = _Handover(
            self._topics,
            producer,
            lanes,
            records,
            deadline=started + timeout_seconds,
            max_request=max_request_size(self._settings),
        )
        try:
            await handover.run()
        except TimeoutError:
            _report_acks(handover.handles, on_ack)
            raise PublishUnavailable(
                f"Kafka did not accept {handover.not_handed_over} of "
                f"{len(records)} records within {timeout_seconds:.1f}s"
            ) from None
        except KafkaError as exc:
            _report_acks(handover.handles, on_ack)
            if isinstance(exc, UnknownTopicOrPartitionError) and records:
                # Created (or described) but not yet in the producer's metadata, or deleted
                # meanwhile: ask about it again next time.
                self._topics.forget(handover.current_topic)
            raise PublishUnavailable(f"Kafka refused a record: {describe(exc)}") from exc
        except BaseException:
            _report_acks(handover.handles, on_ack)
            raise
        finally:
            # Also when giving up: what was added goes out (and may still be acknowledged).
            lanes.flush()
            if on_produced is not None and handover.handles:
                on_produced(handover.handles)
        acknowledged = await self._outcome(handover, on_ack, timeout_seconds)
        self._set_connected(True)
        return PublishResult(acknowledged, loop.time() - started, handover.refused)

    async def _outcome(
        self,
        handover: _Handover,
        on_ack: Callable[[Sequence[int]], None] | None,
        timeout_seconds: float,
    ) -> int:
        """Wait for Kafka's answer about every record handed over; returns how many it stored.

        A record Kafka refuses for good joins ``handover.refused``; any other failure, or
        a record still unanswered at the deadline, raises :class:`PublishUnavailable`.
        """
        handles = handover.handles
        if not handles:
            return 0
        pending = await _settled({h for _, h in handles}, handover.deadline)
        acknowledged = _report_acks(handles, on_ack)
        if pending:
            waiting = sum(1 for _, h in handles if h in pending)
            raise PublishUnavailable(
                f"Kafka acknowledged {len(handles) - waiting} of {len(handles)} records "
                f"within {timeout_seconds:.1f}s"
            )
        retriable: BaseException | None = None
        for index, handle in handles:
            failure = handle.exception()
            if failure is None:
                continue
            topic = handover.records[index].topic
            refusal = refusal_of(failure)
            if refusal is not None:
                handover.refused[index] = refusal
                if refusal.reason in TOPIC_REFUSALS:
                    self._topics.refuse(topic, refusal)
                continue
            if isinstance(failure, BROKEN_PRODUCER):
                self._replace_producer(handover.producer, failure)
            if isinstance(failure, UnknownTopicOrPartitionError):
                self._topics.forget(topic)
            retriable = retriable or failure
        if retriable is not None:
            raise PublishUnavailable(f"Kafka did not store a record: {describe(retriable)}")
        return acknowledged


class _Handover:
    """One :meth:`Publisher.publish` call's first phase: every record into its batch.

    Checks the topics, refuses a record larger than a Kafka request, picks each record's
    partition and appends it to that partition's lane, waiting (until ``deadline``) only
    when a lane is full or a topic's partitions are not known yet.
    """

    __slots__ = (
        "_cluster",
        "_lanes",
        "_max_request",
        "_partitions",
        "_refused_topics",
        "_topics",
        "deadline",
        "handles",
        "producer",
        "records",
        "refused",
    )

    def __init__(
        self,
        topics: Topics,
        producer: AIOKafkaProducer,
        lanes: Lanes,
        records: Sequence[Record],
        *,
        deadline: float,
        max_request: int,
    ) -> None:
        self._topics = topics
        self.producer = producer
        self._lanes = lanes
        self._cluster = producer.client.cluster
        self.records = records
        self.deadline = deadline
        self._max_request = max_request
        self._refused_topics: Mapping[str, Refusal] = {}
        self._partitions: dict[str, list[int]] = {}
        self.refused: dict[int, Refusal] = {}
        self.handles: list[tuple[int, Handle]] = []

    @property
    def not_handed_over(self) -> int:
        return len(self.records) - len(self.handles) - len(self.refused)

    @property
    def current_topic(self) -> str:
        """The topic of the first record neither handed over nor refused."""
        return self.records[len(self.handles) + len(self.refused)].topic

    async def run(self) -> None:
        # Nothing here waits in the common case (topics known, room in every batch), so
        # a deadline timer is only armed around a wait that actually happens.
        await self._check_topics()
        # Locals: this loop runs for every record.
        lanes, cluster, max_request = self._lanes, self._cluster, self._max_request
        partitions, refused, handles = self._partitions, self.refused, self.handles
        for index, record in enumerate(self.records):
            topic = record.topic
            refusal = self._refused_topics.get(topic)
            if refusal is None and record.exceeds(max_request):
                refusal = Refusal(
                    DeadLetterReason.RECORD_TOO_LARGE,
                    f"a record of {record.size} bytes is larger than a Kafka request "
                    f"({max_request} bytes)",
                )
            if refusal is not None:
                refused[index] = refusal
                continue
            known = partitions.get(topic)
            if known is None:
                known = await self._partitions_of(topic)
                if known is None:
                    refused[index] = self._refused_topics[topic]
                    continue
            if record.key is None:
                available = sorted(cluster.available_partitions_for_topic(topic))
                partition = partition_for(None, known, available)
            else:
                partition = partition_for(record.key, known, known)
            lane = lanes.lane(topic, partition)
            while lane.full:
                lanes.flush()
                if not lane.full:
                    # Handed over at once: the room this request waited for is there.
                    break
                # Shielded: the room future is shared with other requests.
                await _within(self.deadline, asyncio.shield(lane.room()))
            handles.append((index, lane.append(record)))

    async def _check_topics(self) -> None:
        """Make the records' topics exist, unless known; remembers the ones refused."""
        topics = {r.topic for r in self.records}
        own = self._topics
        if own.all_ready(topics):
            return
        # Topics the producer already has metadata for exist: no need to ask.
        own.mark_ready(
            [
                t
                for t in topics
                if not own.is_refused(t) and self._cluster.partitions_for_topic(t) is not None
            ]
        )
        timeout = self.deadline - asyncio.get_running_loop().time()
        self._refused_topics = await own.prepare(self.producer, topics, timeout_seconds=timeout)

    async def _partitions_of(self, topic: str) -> list[int] | None:
        """The topic's partitions, asked of Kafka if not known; None when it is refused."""
        found = self._cluster.partitions_for_topic(topic)
        if found is None:
            try:
                found = await _within(self.deadline, self.producer.partitions_for(topic))
            except TopicAuthorizationFailedError as exc:
                denied = Refusal(DeadLetterReason.TOPIC_NOT_AUTHORIZED, describe(exc))
                self._topics.refuse(topic, denied)
                self._refused_topics = {**self._refused_topics, topic: denied}
                return None
        known = self._partitions[topic] = sorted(found)
        if not known:
            raise PublishUnavailable(f"Kafka lists no partitions of {topic}")
        return known


def _report_acks(
    handles: Sequence[tuple[int, asyncio.Future[None]]],
    on_ack: Callable[[Sequence[int]], None] | None,
) -> int:
    """Tell ``on_ack`` which records are acknowledged now, and later about the others.

    Returns how many are acknowledged now.
    """
    done: list[int] = []
    later: dict[asyncio.Future[None], list[int]] = {}
    for index, handle in handles:
        if not handle.done():
            later.setdefault(handle, []).append(index)
        elif not handle.cancelled() and handle.exception() is None:
            done.append(index)
    if on_ack is not None:
        if done:
            on_ack(done)
        for handle, indexes in later.items():
            handle.add_done_callback(functools.partial(_acked, on_ack, indexes))
    return len(done)


async def _settled(futures: set[Handle], deadline: float) -> set[Handle]:
    """Wait until every future is done or the loop's clock reaches ``deadline``.

    Returns the futures not done. ``asyncio.wait`` does the same with more work per call
    (a set of each kind, every callback removed afterwards), and every request waits here.
    """
    pending = {f for f in futures if not f.done()}
    if not pending:
        return pending
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    left = len(pending)

    def one_done(_: Handle) -> None:
        nonlocal left
        left -= 1
        if not left and not waiter.done():
            waiter.set_result(None)

    for future in pending:
        future.add_done_callback(one_done)
    timer = loop.call_at(deadline, _release, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        if left:
            for future in pending:
                future.remove_done_callback(one_done)
    return {f for f in pending if not f.done()}


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _within(deadline: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout_at(deadline):
        return await awaitable


def _acked(
    on_ack: Callable[[Sequence[int]], None], indexes: list[int], future: asyncio.Future[None]
) -> None:
    if not future.cancelled() and future.exception() is None:
        on_ack(indexes)
