"""The two admission budgets: bodies read before authentication, and publishing slots."""

from __future__ import annotations

import asyncio
import time
from unittest import mock

import pytest
from aiohttp import StreamReader

from bridge.admission import BodyNotRead, BodyReads, BodyTooLarge, LoopLag, Slots


def stream(data: bytes = b"", *, complete: bool = False) -> StreamReader:
    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    if data:
        reader.feed_data(data)
    if complete:
        reader.feed_eof()
    return reader


async def test_a_body_that_came_with_the_headers_takes_no_place() -> None:
    reads = BodyReads(1)
    body = await reads.read(stream(b"{}", complete=True), limit=10, timeout_seconds=1)
    assert body == b"{}"
    assert len(reads) == 0


async def test_a_body_over_the_limit_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        await BodyReads(1).read(stream(b"x" * 11, complete=True), limit=10, timeout_seconds=1)
    slow = stream(b"x" * 6)
    task = asyncio.create_task(BodyReads(1).read(slow, limit=10, timeout_seconds=1))
    await asyncio.sleep(0.01)
    slow.feed_data(b"x" * 6)
    with pytest.raises(BodyTooLarge):
        await task


async def test_a_trickling_body_times_out() -> None:
    reads = BodyReads(4)
    with pytest.raises(BodyNotRead) as caught:
        await reads.read(stream(b"{"), limit=100, timeout_seconds=0.05)
    assert caught.value.outcome == "timeout"
    assert len(reads) == 0


async def test_when_full_the_oldest_read_makes_room() -> None:
    reads = BodyReads(2, min_age_seconds=0.01)
    stalled = [
        asyncio.create_task(reads.read(stream(), limit=100, timeout_seconds=5)) for _ in "ab"
    ]
    await asyncio.sleep(0.05)
    fresh = stream(b'{"a"')
    newcomer = asyncio.create_task(reads.read(fresh, limit=100, timeout_seconds=5))
    await asyncio.sleep(0.01)
    fresh.feed_data(b": 1}")
    fresh.feed_eof()

    assert await newcomer == b'{"a": 1}'
    with pytest.raises(BodyNotRead) as caught:
        await stalled[0]
    assert caught.value.outcome == "evicted"
    assert not stalled[1].done()  # only the oldest was cut short
    stalled[1].cancel()


async def test_young_reads_are_not_evicted() -> None:
    reads = BodyReads(1, min_age_seconds=10)
    first = asyncio.create_task(reads.read(stream(), limit=100, timeout_seconds=5))
    await asyncio.sleep(0.01)
    with pytest.raises(BodyNotRead) as caught:
        await reads.read(stream(), limit=100, timeout_seconds=5)
    assert caught.value.outcome == "busy"
    assert not first.done()
    first.cancel()


def test_slots_trip_on_the_limit_and_on_queueing_while_the_loop_lags() -> None:
    now = [100.0]
    lag = LoopLag(window_seconds=1.0)
    slots = Slots(max_inflight=2, max_queue_delay_seconds=1.5, lag=lag, clock=lambda: now[0])
    assert slots.saturated() is None
    first = slots.enter()
    now[0] += 1.0
    second = slots.enter()
    assert slots.saturated() == "limit"
    slots.leave(second)
    assert slots.saturated() is None
    now[0] += 0.6  # the first has been in flight 1.6 s: Kafka may just be slow
    assert slots.saturated() is None
    lag.add(now[0], 0.3)  # the loop runs late: the process has no CPU left
    assert slots.saturated() == "delay"
    lag.add(now[0] + 2.0, 0.0)  # the lag is over
    assert slots.saturated() is None
    slots.leave(first)
    assert slots.idle.is_set()


async def test_the_loop_lag_is_measured() -> None:
    lag = LoopLag(interval_seconds=0.01, window_seconds=5)
    seen: list[float] = []
    task = asyncio.create_task(lag.run(seen.append))
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # noqa: ASYNC251 - block the loop, as a CPU-bound burst would
    await asyncio.sleep(0.05)
    task.cancel()
    assert lag.recent >= 0.15
    assert max(seen) == lag.recent
