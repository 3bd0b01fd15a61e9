"""Lanes: records of concurrent requests coalesced into one batch per partition.

The producer here is a fake of the parts of aiokafka the lanes touch: the public
``create_batch`` and the private accumulator members (``_message_accumulator``,
``_batches``, ``_append_batch``, ``_closed``, ``_exception``, a batch's ``_drain_waiter``).
It has no ``send_batch``: the lanes never call it. The fake encodes our own model of
aiokafka's accumulator, so these tests check the lanes' logic, not aiokafka; the real
producer is exercised by the app, integration and fault tests.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from bridge.core.errors import PublishUnavailable
from bridge.core.records import Record
from bridge.kafka.batching import LaneClosed, Lanes
from tests.clocks import drive_the_loop_clock
from tests.conditions import until


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


class FakeBatch:
    def __init__(self, builder: FakeBuilder) -> None:
        loop = asyncio.get_running_loop()
        self.values = list(builder.values)
        self.future: asyncio.Future[None] = loop.create_future()
        self._drain_waiter: asyncio.Future[None] = loop.create_future()


class FakeAccumulator:
    """aiokafka's accumulator as the lanes use it: one undrained batch per partition."""

    def __init__(self) -> None:
        self._batches: dict[Any, collections.deque[FakeBatch]] = {}
        self._closed = False
        self._exception: BaseException | None = None
        self.appended: list[tuple[str, int, list[bytes]]] = []
        self.drained: list[FakeBatch] = []

    def _append_batch(self, builder: FakeBuilder, tp: Any) -> FakeBatch:
        assert builder.closed, "a batch is closed before it is handed over"
        batch = FakeBatch(builder)
        self._batches.setdefault(tp, collections.deque()).append(batch)
        self.appended.append((tp.topic, tp.partition, batch.values))
        return batch

    def drain(self) -> list[FakeBatch]:
        """What the sender does: take the first batch of every partition."""
        taken = []
        for tp in list(self._batches):
            batch = self._batches[tp].popleft()
            if not self._batches[tp]:
                del self._batches[tp]
            batch._drain_waiter.set_result(None)
            taken.append(batch)
        self.drained.extend(taken)
        return taken


class FakeProducer:
    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self._message_accumulator = FakeAccumulator()

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder(self.capacity)

    @property
    def handed(self) -> list[tuple[str, int, list[bytes]]]:
        return self._message_accumulator.appended


def record(value: str) -> Record:
    return Record("alm.t", b"k", value.encode(), [("h", b"v")])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_records_of_a_request_make_one_batch_in_order() -> None:
    producer = FakeProducer()
    lanes = Lanes(producer)
    lane = lanes.lane("alm.t", 2)
    handles = [lane.append(record(str(i))) for i in range(5)]
    assert len(set(handles)) == 1
    assert producer.handed == []  # nothing goes before the request has added everything
    lanes.flush()
    assert producer.handed == [("alm.t", 2, [b"0", b"1", b"2", b"3", b"4"])]
    (batch,) = producer._message_accumulator.drain()
    assert not handles[0].done()
    batch.future.set_result(None)
    await settle()
    assert handles[0].done()
    assert handles[0].exception() is None


async def test_records_arriving_while_a_batch_waits_form_the_next_batch() -> None:
    producer = FakeProducer()
    lanes = Lanes(producer)
    lane = lanes.lane("alm.t", 0)
    first = lane.append(record("a"))
    lanes.flush()  # "a" waits in the accumulator: the sender has not taken it yet
    second = [lane.append(record(v)) for v in ("b", "c")]
    lanes.flush()
    assert second[0] is second[1] is not first
    assert [values for _, _, values in producer.handed] == [[b"a"]]
    producer._message_accumulator.drain()
    await settle()
    assert [values for _, _, values in producer.handed] == [[b"a"], [b"b", b"c"]]


async def test_linger_lets_later_requests_join_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = drive_the_loop_clock(monkeypatch)
    producer = FakeProducer()
    lanes = Lanes(producer, linger_seconds=0.05)
    lane = lanes.lane("alm.t", 0)
    first = lane.append(record("a"))
    lanes.flush()
    clock.advance(0.01)
    await settle()
    second = lane.append(record("b"))  # another request, within the linger
    lanes.flush()
    clock.advance(0.039)
    await settle()
    assert producer.handed == []  # the batch is younger than the linger
    clock.advance(0.002)  # the linger of the first record is over
    await settle()
    assert first is second
    assert producer.handed == [("alm.t", 0, [b"a", b"b"])]


async def test_a_full_batch_does_not_linger() -> None:
    producer = FakeProducer(capacity=2)
    lanes = Lanes(producer, linger_seconds=10)
    lane = lanes.lane("alm.t", 0)
    for value in "abc":
        lane.append(record(value))
    lanes.flush()
    assert producer.handed == [("alm.t", 0, [b"a", b"b"])]  # "c" waits for its linger
    lanes.close()


async def test_a_full_batch_waits_and_makes_room_when_handed_over() -> None:
    producer = FakeProducer(capacity=2)
    lanes = Lanes(producer)
    lanes.lane("alm.t", 0).append(record("x"))
    lanes.flush()  # the accumulator holds "x": the lane must wait for the sender
    lane = lanes.lane("alm.t", 0)
    handles = [lane.append(record(v)) for v in ("a", "b", "c")]
    assert lane.full
    assert handles[0] is handles[1] is not handles[2]
    room = lane.room()
    lanes.flush()
    assert not room.done()
    producer._message_accumulator.drain()
    await settle()
    assert room.done()
    assert not lane.full
    producer._message_accumulator.drain()
    await settle()
    assert [values for _, _, values in producer.handed] == [[b"x"], [b"a", b"b"], [b"c"]]


async def test_a_failed_batch_fails_its_records_only() -> None:
    producer = FakeProducer()
    lanes = Lanes(producer)
    lane = lanes.lane("alm.t", 0)
    first = lane.append(record("a"))
    lanes.flush()
    (batch_a,) = producer._message_accumulator.drain()
    await settle()
    second = lane.append(record("b"))
    lanes.flush()
    (batch_b,) = producer._message_accumulator.drain()
    batch_a.future.set_exception(RuntimeError("broker said no"))
    batch_b.future.set_result(None)
    await settle()
    assert isinstance(first.exception(), RuntimeError)
    assert second.exception() is None


async def test_a_closed_accumulator_fails_the_batch() -> None:
    producer = FakeProducer()
    producer._message_accumulator._closed = True
    lanes = Lanes(producer)
    handle = lanes.lane("alm.t", 0).append(record("a"))
    lanes.flush()
    assert handle.done()
    assert handle.exception() is not None
    assert producer.handed == []


async def test_closing_fails_what_was_not_handed_over() -> None:
    producer = FakeProducer(capacity=1)
    lanes = Lanes(producer)
    lane = lanes.lane("alm.t", 0)
    handles = [lane.append(record(v)) for v in ("a", "b", "c")]
    lanes.flush()  # "a" is handed over; "b" and "c" wait behind it
    lanes.close()
    producer._message_accumulator.drain()  # a drain after closing hands nothing more
    await settle()
    assert not handles[0].done()
    assert all(isinstance(h.exception(), LaneClosed) for h in handles[1:])
    assert [values for _, _, values in producer.handed] == [[b"a"]]


async def test_outcomes_nobody_awaits_are_not_reported_as_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = FakeProducer()
    lanes = Lanes(producer)
    lanes.lane("alm.t", 0).append(record("a"))
    lanes.flush()
    (batch,) = producer._message_accumulator.drain()
    batch.future.set_exception(RuntimeError("late failure"))
    await settle()
    del lanes, batch
    import gc

    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_the_installed_aiokafka_has_what_the_lanes_use() -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import MessageBatch
    from aiokafka.structs import TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    await producer.stop()  # never started: nothing to connect, but closed for the test
    accumulator = producer._message_accumulator
    assert accumulator._batches == {}
    assert isinstance(accumulator._closed, bool)
    assert accumulator._exception is None
    builder = producer.create_batch()
    builder.append(timestamp=None, key=b"k", value=b"v", headers=[])
    builder.close()
    batch = accumulator._append_batch(builder, TopicPartition("t", 0))
    assert isinstance(batch, MessageBatch)
    assert list(accumulator._batches[TopicPartition("t", 0)]) == [batch]
    assert isinstance(batch._drain_waiter, asyncio.Future)
    assert isinstance(batch.future, asyncio.Future)


def test_a_record_larger_than_a_request_is_known_before_appending() -> None:
    big = record("x" * 2000)
    assert big.exceeds(1000)
    assert big.size == 2067
    assert not record("x" * 100).exceeds(1000)


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


class FakeClient:
    cluster = FakeCluster()


class ClusterProducer(FakeProducer):
    client = FakeClient()


async def test_a_request_giving_up_on_a_full_batch_does_not_fail_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge.config.settings import Settings
    from bridge.kafka.publisher import Publisher

    clock = drive_the_loop_clock(monkeypatch)
    producer = ClusterProducer(capacity=1)
    publisher = Publisher(settings=Settings(kafka_auto_create_topics=False))
    publisher._use(producer)
    accumulator = producer._message_accumulator
    # "a" goes to the accumulator, which the sender does not drain for now; "b" waits.
    first = asyncio.create_task(publisher.publish([record("a"), record("b")], timeout_seconds=5))
    await settle()
    impatient = asyncio.create_task(
        publisher.publish([record("c"), record("d")], timeout_seconds=0.05)
    )
    patient = asyncio.create_task(publisher.publish([record("e")], timeout_seconds=5))
    await settle()
    assert not impatient.done()
    clock.advance(0.1)  # past the impatient request's deadline, far from the others'
    await until(impatient.done)
    assert isinstance(impatient.exception(), PublishUnavailable)
    assert not patient.done()  # still waiting for room, not failed with the impatient one
    for _ in range(10):  # the sender drains, Kafka acknowledges
        for batch in accumulator.drain():
            batch.future.set_result(None)
        await settle()
    assert (await patient).records == 1
    assert (await first).records == 2
    handed = [value for _, _, values in producer.handed for value in values]
    assert handed == [b"a", b"b", b"c", b"e"]
