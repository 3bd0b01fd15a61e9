"""The lanes (bridge/kafka/batching.py) on aiokafka's real producer and a real broker.

The lanes use members of aiokafka's accumulator that are not its documented API; these
tests check what the bridge relies on through them, on the installed aiokafka: order,
coalescing of concurrent requests into one batch, a broker's refusal reaching every record
of the batch, and closing failing what was not handed over.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from bridge.config.settings import Settings
from bridge.core.records import Record
from bridge.kafka.batching import Lane, LaneClosed, Lanes
from bridge.kafka.publisher import Publisher
from tests.kafka_fixtures import consume_all

pytestmark = pytest.mark.kafka


async def _topic(bootstrap: str, **configs: str) -> str:
    name = f"test.lanes.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return name


async def _lane(
    producer: AIOKafkaProducer,
    bootstrap: str,
    *,
    linger_seconds: float = 0.0,
    configs: dict[str, str] | None = None,
) -> tuple[str, Lanes, Lane]:
    """A new one-partition topic, known to the producer, and the lanes with its lane."""
    topic = await _topic(bootstrap, **(configs or {}))
    await producer.partitions_for(topic)
    lanes = Lanes(producer, linger_seconds=linger_seconds)
    return topic, lanes, lanes.lane(topic, 0)


def _record(topic: str, value: str) -> Record:
    return Record(topic, b"k", value.encode(), [("ce_id", value.encode())])


async def test_records_reach_kafka_in_the_order_added(
    producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic, lanes, lane = await _lane(producer, kafka_bootstrap)
    handles = []
    for request in range(5):  # five requests, one after the other without waiting
        handles += [lane.append(_record(topic, f"{request}-{i}")) for i in range(20)]
        lanes.flush()

    await asyncio.wait_for(asyncio.gather(*set(handles)), 15)

    stored = await consume_all(kafka_bootstrap, topic, expected=100)
    assert [r.value.decode() for r in stored] == [f"{r}-{i}" for r in range(5) for i in range(20)]


async def test_requests_arriving_while_a_batch_is_in_flight_share_the_next_batch(
    producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic, lanes, lane = await _lane(producer, kafka_bootstrap)
    first = lane.append(_record(topic, "a"))
    lanes.flush()  # handed to the accumulator
    second = lane.append(_record(topic, "b"))
    lanes.flush()  # the partition's batch is not drained yet: "b" waits in the lane...
    third = lane.append(_record(topic, "c"))
    lanes.flush()  # ...and "c", from another request, joins it

    await asyncio.wait_for(asyncio.gather(first, second, third), 15)

    assert second is third is not first
    stored = await consume_all(kafka_bootstrap, topic, expected=3)
    assert [r.value for r in stored] == [b"a", b"b", b"c"]


async def test_a_refused_batch_fails_each_of_its_records(
    producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic, lanes, lane = await _lane(
        producer, kafka_bootstrap, configs={"max.message.bytes": "1024"}
    )
    handles = [lane.append(Record(topic, b"k", b"x" * 600, [])) for _ in range(3)]
    lanes.flush()

    results = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), 15)

    assert all(isinstance(r, MessageSizeTooLargeError) for r in results), results


async def test_closing_fails_what_was_not_handed_over(
    producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic, lanes, lane = await _lane(producer, kafka_bootstrap)
    handed = lane.append(_record(topic, "a"))
    lanes.flush()
    waiting = lane.append(_record(topic, "b"))
    lanes.flush()  # waits in the lane behind "a"

    lanes.close()
    outcomes = await asyncio.wait_for(asyncio.gather(handed, waiting, return_exceptions=True), 15)

    assert outcomes[0] is None  # what the producer had is still delivered
    assert isinstance(outcomes[1], LaneClosed)
    stored = await consume_all(kafka_bootstrap, topic, expected=1, timeout_s=5)
    assert [r.value for r in stored] == [b"a"]


async def test_linger_holds_a_batch_on_the_real_producer(
    producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic, lanes, lane = await _lane(producer, kafka_bootstrap, linger_seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = lane.append(_record(topic, "a"))
    lanes.flush()
    await asyncio.sleep(0.1)
    second = lane.append(_record(topic, "b"))
    lanes.flush()

    await asyncio.wait_for(asyncio.gather(first, second), 15)

    assert first is second
    assert loop.time() - started >= 0.3


async def test_one_request_larger_than_a_batch_of_its_partition_is_produced_whole(
    kafka_bootstrap: str,
) -> None:
    """The first full batch is handed over at once: the request goes on filling the next
    one instead of waiting for room that is already there."""
    name = await _topic(kafka_bootstrap)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_max_batch_bytes=65_536)
    publisher = Publisher(settings=settings)
    await publisher.start(10)
    try:
        # About 3.5 batches of 64 KiB, all for the one partition.
        records = [Record(name, b"k", f"{n:06d}".encode(), [("h", b"x" * 200)]) for n in range(800)]

        result = await publisher.publish(records, timeout_seconds=10)
    finally:
        await publisher.stop(5)

    assert result.records == 800
    stored = await consume_all(kafka_bootstrap, name, expected=800)
    assert [r.value for r in stored] == [r.value for r in records]
