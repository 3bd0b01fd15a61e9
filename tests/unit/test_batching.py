"""Lanes: records of concurrent requests coalesced into one batch per partition.

The producer here is a fake with aiokafka's batch interface (``create_batch``,
``send_batch``); the real one is exercised by the app, integration and fault tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.batching import LaneClosed, Lanes, raise_too_large
from bridge.errors import InvalidBatch
from bridge.routing import Record


class FakeBuilder:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values: list[bytes] = []
        self.closed = False

    def append(
        self, *, timestamp: Any, key: bytes | None, value: bytes, headers: Any
    ) -> object | None:
        if self.closed:
            return None
        if self.values and len(self.values) >= self.capacity:
            self.closed = True
            return None
        self.values.append(value)
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Holds each batch until the test lets it go, like a producer with one in flight."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.handed: list[tuple[str, int, list[bytes]]] = []
        self.outcomes: list[asyncio.Future[None]] = []
        self.gate: asyncio.Event | None = None
        self.refuse: Exception | None = None

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder(self.capacity)

    async def send_batch(self, batch: FakeBuilder, topic: str, *, partition: int) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse is not None:
            raise self.refuse
        assert batch.closed, "a batch is closed before it is handed over"
        self.handed.append((topic, partition, list(batch.values)))
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outcomes.append(outcome)
        return outcome


def record(value: str) -> Record:
    return Record("alm.t", b"k", value.encode(), [("h", b"v")])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_records_appended_together_make_one_batch_in_order() -> None:
    producer = FakeProducer()
    lane = Lanes(producer).lane("alm.t", 2)
    handles = [lane.append(record(str(i))) for i in range(5)]
    assert len(set(handles)) == 1
    await settle()
    assert producer.handed == [("alm.t", 2, [b"0", b"1", b"2", b"3", b"4"])]
    assert not handles[0].done()
    producer.outcomes[0].set_result(None)
    await settle()
    assert handles[0].done()
    assert handles[0].exception() is None


async def test_records_arriving_while_a_batch_is_held_form_the_next_batch() -> None:
    producer = FakeProducer()
    producer.gate = asyncio.Event()
    lane = Lanes(producer).lane("alm.t", 0)
    first = lane.append(record("a"))
    await settle()  # the sender holds "a" and waits for the producer
    second = [lane.append(record(v)) for v in ("b", "c")]
    assert second[0] is second[1] is not first
    producer.gate.set()
    await settle()
    assert [values for _, _, values in producer.handed] == [[b"a"], [b"b", b"c"]]


async def test_a_full_batch_waits_and_makes_room_when_taken() -> None:
    producer = FakeProducer(capacity=2)
    producer.gate = asyncio.Event()
    lane = Lanes(producer).lane("alm.t", 0)
    handles = [lane.append(record(v)) for v in ("a", "b", "c")]
    assert lane.full
    assert handles[0] is handles[1] is not handles[2]
    room = lane.room()
    assert not room.done()
    producer.gate.set()
    await settle()
    assert room.done()
    assert not lane.full
    assert [values for _, _, values in producer.handed] == [[b"a", b"b"], [b"c"]]


async def test_a_failed_batch_fails_its_records_only() -> None:
    producer = FakeProducer()
    lane = Lanes(producer).lane("alm.t", 0)
    first = lane.append(record("a"))
    await settle()
    second = lane.append(record("b"))
    await settle()
    producer.outcomes[0].set_exception(RuntimeError("broker said no"))
    producer.outcomes[1].set_result(None)
    await settle()
    assert isinstance(first.exception(), RuntimeError)
    assert second.exception() is None


async def test_a_refused_hand_over_fails_the_batch_and_the_lane_goes_on() -> None:
    producer = FakeProducer()
    producer.refuse = RuntimeError("no metadata")
    lane = Lanes(producer).lane("alm.t", 0)
    first = lane.append(record("a"))
    await settle()
    assert isinstance(first.exception(), RuntimeError)
    producer.refuse = None
    second = lane.append(record("b"))
    await settle()
    assert producer.handed == [("alm.t", 0, [b"b"])]
    assert not second.done()


async def test_closing_fails_what_was_not_handed_over() -> None:
    producer = FakeProducer(capacity=1)
    producer.gate = asyncio.Event()
    lanes = Lanes(producer)
    lane = lanes.lane("alm.t", 0)
    handles = [lane.append(record(v)) for v in ("a", "b", "c")]
    await settle()
    lanes.close()
    await settle()
    assert all(isinstance(h.exception(), LaneClosed) for h in handles)
    assert producer.handed == []


async def test_outcomes_nobody_awaits_are_not_reported_as_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = FakeProducer()
    lane = Lanes(producer).lane("alm.t", 0)
    lane.append(record("a"))
    await settle()
    producer.outcomes[0].set_exception(RuntimeError("late failure"))
    await settle()
    del lane
    import gc

    gc.collect()
    assert "never retrieved" not in caplog.text


def test_a_record_larger_than_a_request_is_named_as_such() -> None:
    big = record("x" * 2000)
    assert big.exceeds(1000)
    assert not record("x" * 100).exceeds(1000)
    with pytest.raises(InvalidBatch) as caught:
        raise_too_large(big, 1000)
    assert caught.value.code == "record_too_large"
    assert "2067 bytes" in caught.value.detail


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


class FakeClient:
    cluster = FakeCluster()


class ClusterProducer(FakeProducer):
    client = FakeClient()


async def test_a_request_giving_up_on_a_full_batch_does_not_fail_the_others() -> None:
    from bridge.publisher import Publisher
    from bridge.settings import Settings

    producer = ClusterProducer(capacity=1)
    producer.gate = asyncio.Event()  # the producer takes nothing for now
    publisher = Publisher(settings=Settings(kafka_auto_create_topics=False))
    publisher._use(producer)
    first = asyncio.create_task(publisher.publish([record("a"), record("b")], timeout_seconds=5))
    await settle()  # the sender holds "a"; "b" fills the next batch
    impatient = asyncio.create_task(
        publisher.publish([record("c"), record("d")], timeout_seconds=0.05)
    )
    patient = asyncio.create_task(publisher.publish([record("e")], timeout_seconds=5))
    await asyncio.sleep(0.1)
    assert impatient.done()
    assert not patient.done()  # still waiting for room, not failed with the impatient one
    producer.gate.set()
    for _ in range(20):
        await settle()
        for outcome in producer.outcomes:
            if not outcome.done():
                outcome.set_result(None)
    assert (await patient).records == 1
    assert (await first).records == 2
    handed = [value for _, _, values in producer.handed for value in values]
    assert b"e" in handed
