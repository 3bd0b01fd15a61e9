"""The public-API designs the benchmark weighs against the lanes (bench/handover.py) work.

``python -m bench.cores --handover`` compares the bridge's lanes with two designs on
aiokafka's documented API. The comparison only means something if those designs publish
correctly: every record acknowledged, stored once, in the order added, on a real broker.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.handover import DESIGNS, designed_lanes
from bridge.core.records import Record
from tests.kafka_fixtures import consume_all

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("design", DESIGNS)
async def test_a_design_stores_every_record_once_in_order(
    design: str, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = f"test.handover.{design}.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    await producer.partitions_for(topic)
    lanes = designed_lanes(design)(producer, linger_seconds=0.0)
    lane = lanes.lane(topic, 0)
    handles = []
    for request in range(5):  # five requests, one after the other without waiting
        for i in range(20):
            value = f"{request}-{i}".encode()
            handles.append(lane.append(Record(topic, b"k", value, [("ce_id", value)])))
        lanes.flush()

    await asyncio.wait_for(asyncio.gather(*set(handles)), 15)
    lanes.close()

    stored = await consume_all(kafka_bootstrap, topic, expected=100)
    assert [r.value.decode() for r in stored] == [f"{r}-{i}" for r in range(5) for i in range(20)]
