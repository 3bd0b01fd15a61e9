"""The admission budgets: bytes held before authentication, and publishing slots."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from unittest import mock

import pytest
from aiohttp import StreamReader

from bridge.service.admission import (
    BodyNotRead,
    BodyReads,
    BodyTooLarge,
    BudgetFull,
    ByteBudget,
    LoopLag,
    Slots,
    inflate,
)
from tests.clocks import DrivenClock
from tests.conditions import until


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
    reads = BodyReads(1)
    task = asyncio.create_task(reads.read(slow, limit=10, timeout_seconds=1))
    await until(lambda: len(reads) == 1)
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
    now = [100.0]
    reads = BodyReads(2, min_age_seconds=0.01, clock=lambda: now[0])
    stalled = []
    for _ in "ab":
        stalled.append(asyncio.create_task(reads.read(stream(), limit=100, timeout_seconds=5)))
        await until(lambda: len(reads) == len(stalled))
        now[0] += 0.05  # the first is the older
    fresh = stream(b'{"a"')
    newcomer = asyncio.create_task(reads.read(fresh, limit=100, timeout_seconds=5))
    await until(lambda: stalled[0].done())
    fresh.feed_data(b": 1}")
    fresh.feed_eof()

    assert await newcomer == b'{"a": 1}'
    with pytest.raises(BodyNotRead) as caught:
        await stalled[0]
    assert caught.value.outcome == "evicted"
    assert not stalled[1].done()  # only the oldest was cut short
    stalled[1].cancel()


async def test_young_reads_are_not_evicted() -> None:
    now = [100.0]
    reads = BodyReads(1, min_age_seconds=10, clock=lambda: now[0])
    first = asyncio.create_task(reads.read(stream(), limit=100, timeout_seconds=5))
    await until(lambda: len(reads) == 1)
    now[0] += 9.9
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
    clock = DrivenClock()
    lag = LoopLag(interval_seconds=0.01, window_seconds=5, clock=clock, sleep=clock.sleep)
    seen: list[float] = []
    task = asyncio.create_task(lag.run(seen.append))
    await until(lambda: len(seen) >= 5)
    clock.stalls.append(0.2)  # the loop held, as a CPU-bound burst would
    await until(lambda: len(seen) >= 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lag.recent == pytest.approx(0.2)
    assert max(seen) == lag.recent


# ------------------------------------------------------------------ bytes before auth


def test_the_byte_budget_cuts_the_oldest_holders_short_to_make_room() -> None:
    now = [0.0]
    budget = ByteBudget(100, min_age_seconds=1.0, clock=lambda: now[0])
    cut: list[str] = []
    first = budget.open(lambda: cut.append("first"))
    budget.grow(first, 60)
    now[0] = 0.5
    second = budget.open(lambda: cut.append("second"))
    budget.grow(second, 30)
    now[0] = 2.0
    third = budget.open(lambda: cut.append("third"))

    budget.grow(third, 50)  # only the oldest is cut: 60 bytes are enough

    assert cut == ["first"]
    assert first.evicted
    assert first.nbytes == 0
    assert budget.used == 80
    with pytest.raises(BudgetFull):
        budget.grow(first, 1)  # a holder that was cut gets nothing more


def test_a_full_byte_budget_refuses_when_every_holder_is_young() -> None:
    now = [0.0]
    budget = ByteBudget(100, min_age_seconds=1.0, clock=lambda: now[0])
    held = budget.open(lambda: pytest.fail("a young holder was cut"))
    budget.grow(held, 90)
    newcomer = budget.open(lambda: None)

    with pytest.raises(BudgetFull):
        budget.grow(newcomer, 20)

    assert budget.used == 90
    budget.release(held)
    budget.grow(newcomer, 20)
    assert budget.used == 20


async def test_a_body_is_charged_its_content_length_before_it_arrives() -> None:
    budget = ByteBudget(1000, min_age_seconds=0.0)
    reads = BodyReads(10, budget, min_age_seconds=0.0)
    stalled = asyncio.create_task(
        reads.read(stream(b"{"), limit=1000, timeout_seconds=5, expected=800)
    )
    await until(lambda: budget.used == 800)  # one byte arrived; the announced size is held

    fresh = stream(b'{"a": 1}')
    newcomer = asyncio.create_task(reads.read(fresh, limit=1000, timeout_seconds=5, expected=400))
    await until(lambda: stalled.done())
    fresh.feed_eof()

    assert await newcomer == b'{"a": 1}'
    with pytest.raises(BodyNotRead) as cut:
        await stalled
    assert cut.value.outcome == "evicted"
    assert budget.used == 0
    assert budget.evictions == 1


async def test_a_chunked_body_is_charged_as_it_arrives_and_refused_when_no_room() -> None:
    budget = ByteBudget(200 * 1024, min_age_seconds=10.0)
    reads = BodyReads(10, budget, min_age_seconds=10.0)
    young = budget.open(lambda: None)
    budget.grow(young, 100 * 1024)
    chunked = stream(b"x" * (150 * 1024))

    with pytest.raises(BodyNotRead) as refused:
        await reads.read(chunked, limit=1 << 20, timeout_seconds=1)

    assert refused.value.outcome == "busy"
    assert budget.used == 100 * 1024


def test_inflating_is_bounded_by_the_limit_the_ratio_and_the_budget() -> None:
    budget = ByteBudget(10 << 20)
    body = b'{"accountId": 1, "events": []}'
    assert inflate(gzip.compress(body), "gzip", limit=1 << 20, max_ratio=100, budget=budget) == body
    assert inflate(zlib.compress(body), "deflate", limit=1 << 20, max_ratio=100, budget=budget) == (
        body
    )
    bomb = gzip.compress(b" " * (4 << 20))  # about 4 KiB that inflate to 4 MiB
    with pytest.raises(BodyTooLarge):
        inflate(bomb, "gzip", limit=5 << 20, max_ratio=100, budget=budget)
    with pytest.raises(BodyTooLarge):
        inflate(gzip.compress(b" " * 5000), "gzip", limit=4096, max_ratio=1000, budget=budget)
    with pytest.raises(ValueError, match="ends early"):
        inflate(gzip.compress(body)[:-8], "gzip", limit=1 << 20, max_ratio=100, budget=budget)
    with pytest.raises(ValueError, match="header"):
        inflate(b"not gzip at all", "gzip", limit=1 << 20, max_ratio=100, budget=budget)
    small = ByteBudget(64 * 1024)
    taken = small.open(lambda: None)
    small.grow(taken, 64 * 1024)
    with pytest.raises(BodyNotRead):
        inflate(gzip.compress(body), "gzip", limit=1 << 20, max_ratio=100, budget=small)
    assert budget.used == 0


# ------------------------------------------------------------ receivers' fair shares


def test_a_receiver_alone_may_use_more_than_half_of_the_capacity() -> None:
    slots = Slots(max_inflight=8, max_queue_delay_seconds=1.0, receivers=("prod", "partner"))
    entered = 0
    while slots.saturated("partner") is None:
        slots.enter("partner")
        entered += 1

    assert entered == 6  # 8 less prod's kept share of 8 / (2 * 2)
    assert slots.saturated("partner") == "share"
    assert slots.saturated("prod") is None  # prod's share is still there
    slots.enter("prod")
    slots.enter("prod")
    assert slots.saturated("prod") == "limit"


def test_bytes_in_flight_are_shared_like_slots() -> None:
    slots = Slots(
        max_inflight=64,
        max_queue_delay_seconds=1.0,
        max_bytes=1000,
        receivers=("prod", "partner"),
    )
    assert slots.reachable_bytes() == 750
    first = slots.enter("partner", 600)
    assert slots.saturated("partner", 200) == "share"  # would leave prod less than 250
    assert slots.saturated("prod", 250) is None
    assert slots.bytes_in_flight == 600
    slots.resize(first, 100)  # its estimate, once its body was read
    assert slots.bytes_in_flight == 100
    assert slots.saturated("partner", 500) is None
    slots.leave(first)
    assert slots.bytes_in_flight == 0
    assert slots.saturated("partner", 750) is None


def test_a_saturated_process_throttles_the_receivers_holding_the_most_first() -> None:
    lag = LoopLag()
    now = [0.0]
    slots = Slots(
        max_inflight=64,
        max_queue_delay_seconds=1.0,
        receivers=("prod", "partner"),
        lag=lag,
        clock=lambda: now[0],
    )
    for _ in range(10):
        slots.enter("partner")
    slots.enter("prod")
    now[0] = 2.0
    lag.add(2.0, 0.5)

    assert slots.saturated("partner") == "delay"
    assert slots.saturated("prod") is None  # 1 of 11 batches: less than an equal part


async def test_an_authenticated_body_is_read_whatever_strangers_hold() -> None:
    budget = ByteBudget(100, min_age_seconds=10.0)
    reads = BodyReads(1, budget, min_age_seconds=10.0)
    stranger = budget.open(lambda: pytest.fail("the stranger was cut for a known sender"))
    budget.grow(stranger, 100)
    body = stream(b"x" * 1000)
    reading = asyncio.create_task(
        reads.read(body, limit=2000, timeout_seconds=1, expected=1000, authenticated=True)
    )
    body.feed_eof()

    assert await reading == b"x" * 1000
    assert budget.used == 100
    assert len(reads) == 0
