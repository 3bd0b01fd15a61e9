"""examples/alm_consumer.py against records two bridge replicas published to a real broker:
each event handled once, dead letters apart, offsets committed only after processing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from alm_consumer import DeadLetter, Event, SeenWindow, Stats, run
from opentelemetry import trace
from opentelemetry.propagate import extract

from tests.app.conftest import Bridge, MakeBridge, sample
from tests.conditions import within

pytestmark = pytest.mark.kafka

BATCHES = ("mixed-realtime", "enrollment-batch", "setup-guide-dialect")


def _identities(*names: str) -> set[tuple[str, str]]:
    found = set()
    for name in names:
        batch = orjson.loads(sample(name))
        found |= {(str(batch["accountId"]), str(e["eventId"])) for e in batch["events"]}
    return found


async def _replicas(make_bridge: MakeBridge) -> tuple[str, list[Bridge]]:
    """Two replicas on the same topics: each has its own duplicates window, so a batch
    re-sent to the other replica is published again, as consumers must expect."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return prefix, [await make_bridge(prefix=prefix), await make_bridge(prefix=prefix)]


def _start(
    bootstrap: str,
    prefix: str,
    group: str,
    handle: Callable[[Event], Awaitable[None]],
    dead: list[DeadLetter],
    stop: asyncio.Event,
    stats: Stats,
) -> asyncio.Task[Stats]:
    async def handle_dead_letter(letter: DeadLetter) -> None:
        dead.append(letter)

    return asyncio.create_task(
        run(
            bootstrap=bootstrap,
            group=group,
            handle=handle,
            handle_dead_letter=handle_dead_letter,
            pattern=rf"^{prefix}\.(?!deadletter$)",
            dead_letter_topic=f"{prefix}.deadletter",
            window=SeenWindow(max_entries=1000, max_age_seconds=3600),
            stop=stop,
            stats=stats,
        )
    )


async def _committed_and_end(
    bootstrap: str, group: str, topics: set[str]
) -> dict[TopicPartition, tuple[int | None, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(entry["topic"], part["partition"])
        for entry in described
        for part in entry["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {tp: (await consumer.committed(tp), ends[tp]) for tp in partitions}
    finally:
        await consumer.stop()


async def test_example_consumer_handles_each_event_once_and_dead_letters_apart(
    make_bridge: MakeBridge,
) -> None:
    prefix, (first, second) = await _replicas(make_bridge)
    traced = "4bf92f3577b34da6a3ce929d0e0e4736"
    for name in BATCHES:
        headers = {"traceparent": f"00-{traced}-00f067aa0ba902b7-01"} if name == BATCHES[0] else {}
        assert (await first.post(sample(name), headers=headers)).status == 200
    # ALM re-sends a batch; it reaches the other replica, which publishes it again.
    assert (await second.post(sample("mixed-realtime"))).status == 200
    malformed = b'{"accountId": 1234, "events": {"not": "a list"}}'
    assert (await first.post(malformed)).status == 200  # dead-lettered
    expected = _identities(*BATCHES)
    resent = len(_identities("mixed-realtime"))

    handled: list[Event] = []
    dead: list[DeadLetter] = []

    async def handle(event: Event) -> None:
        handled.append(event)

    stop, stats, group = asyncio.Event(), Stats(), f"{prefix}-consumer"
    task = _start(first.bootstrap, prefix, group, handle, dead, stop, stats)
    await within(
        30,
        lambda: len(handled) >= len(expected) and stats.duplicates >= resent and dead != [],
        every=0.1,
    )
    stop.set()
    await task

    assert sorted((e.account_id, e.event_id) for e in handled) == sorted(expected)
    assert stats.duplicates == resent
    assert len(stats.topics) >= 6  # found by the pattern, no topic listed
    assert f"{prefix}.deadletter" not in stats.topics
    by_id = {e.event_id: e for e in handled}
    setup = by_id["9b3e1f44-6c02-4a8d-b5f1-3e7a0c9d2f68"]
    assert setup.data["loInstanceId"] == "course:1250_3301"  # eventData, the setup dialect
    assert [(d.reason, d.value) for d in dead] == [("invalid_envelope", malformed)]
    # The handler continues the request's trace, with OpenTelemetry as a consumer would.
    first_batch = _identities(BATCHES[0])
    continued = [e for e in handled if (e.account_id, e.event_id) in first_batch]
    assert continued
    assert {e.trace_id for e in continued} == {traced}
    with trace.get_tracer("consumer").start_as_current_span(
        "handle", context=extract(continued[0].headers)
    ) as span:
        assert f"{span.get_span_context().trace_id:032x}" == traced
    assert all(len(e.trace_id) == 32 for e in handled), "every record carries a trace"
    # Everything processed is committed: a restart of the group reads nothing again.
    offsets = await _committed_and_end(first.bootstrap, group, stats.topics)
    assert offsets
    assert all(committed == end for committed, end in offsets.values()), offsets
    dead_offsets = await _committed_and_end(
        first.bootstrap, f"{group}.deadletters", {f"{prefix}.deadletter"}
    )
    assert all(committed == end for committed, end in dead_offsets.values()), dead_offsets


async def test_a_record_whose_processing_failed_is_delivered_again(
    make_bridge: MakeBridge,
) -> None:
    bridge = await make_bridge()
    prefix = bridge.prefix
    assert (await bridge.post(sample("enrollment-batch"))).status == 200
    topic = f"{prefix}.course_enrollment_batch"
    records = await bridge.consume(topic, timeout_s=5)
    assert len(records) >= 2
    failing_id = dict(records[1].headers)["ce_id"].decode()

    handled: list[str] = []
    dead: list[DeadLetter] = []

    async def fail_once(event: Event) -> None:
        if event.event_id == failing_id:
            raise RuntimeError("the downstream database is down")
        handled.append(event.event_id)

    group = f"{prefix}-consumer"
    task = _start(bridge.bootstrap, prefix, group, fail_once, dead, asyncio.Event(), Stats())
    with pytest.raises(RuntimeError, match="database is down"):
        await asyncio.wait_for(task, 30)
    (committed, _end), *_ = (await _committed_and_end(bridge.bootstrap, group, {topic})).values()
    assert committed == records[1].offset  # the failed record is the next one to read

    async def succeed(event: Event) -> None:
        handled.append(event.event_id)

    stop, stats = asyncio.Event(), Stats()
    task = _start(bridge.bootstrap, prefix, group, succeed, dead, stop, stats)
    await within(30, lambda: failing_id in handled, every=0.1)
    stop.set()
    await task
    assert handled[0] == dict(records[0].headers)["ce_id"].decode()
    assert handled.count(failing_id) == 1
    assert handled[1] == failing_id  # redelivered first, nothing before it twice


def test_seen_window_is_bounded_by_count_and_age() -> None:
    now = [0.0]
    window = SeenWindow(max_entries=2, max_age_seconds=10, clock=lambda: now[0])
    window.add(("1", "a"))
    window.add(("1", "b"))
    window.add(("2", "a"))

    assert ("1", "a") not in window  # the oldest left when a third came
    assert ("1", "b") in window
    assert ("2", "a") in window
    now[0] = 10.5
    window.add(("3", "c"))
    now[0] = 11.0
    assert ("1", "b") not in window  # older than 10 s
    assert ("3", "c") in window
    assert len(window) == 1
