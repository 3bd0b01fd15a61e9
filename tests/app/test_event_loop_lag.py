"""The event-loop lag histogram: a stalled loop shows up in it, and the app exports it."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bridge.service.admission import LoopLag
from bridge.telemetry.metrics import Metrics
from tests.app.conftest import MakeBridge
from tests.clocks import DrivenClock
from tests.conditions import until, within

LAG = "almbridge_event_loop_lag_seconds"


def _bucket(registry: CollectorRegistry, le: str) -> float:
    return registry.get_sample_value(f"{LAG}_bucket", {"le": le}) or 0.0


async def test_a_blocked_loop_is_observed_as_lag_and_an_idle_one_is_not() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    clock = DrivenClock()
    lag = LoopLag(interval_seconds=0.02, clock=clock, sleep=clock.sleep)

    def count() -> float:
        return registry.get_sample_value(f"{LAG}_count") or 0.0

    task = asyncio.create_task(lag.run(metrics.event_loop_lag.observe))
    try:
        await until(lambda: count() >= 10)  # idle: every wake-up on time
        assert _bucket(registry, "+Inf") - _bucket(registry, "0.005") == 0
        clock.stalls.append(0.3)  # a CPU-bound burst holds the loop 0.3 s
        before = count()
        await until(lambda: count() >= before + 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stalled = _bucket(registry, "+Inf") - _bucket(registry, "0.25")
    assert stalled == 1, "the 0.3 s stall is one late wake-up, 0.25-0.5 s late"
    assert lag.recent == pytest.approx(0.3), "admission sees the same lag"
    assert (registry.get_sample_value(f"{LAG}_sum") or 0.0) == pytest.approx(0.3)


@pytest.mark.kafka
async def test_the_app_exports_the_lag_histogram(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    # The app's own measurement, on the real loop: a wake-up every 50 ms.
    await within(10, lambda: bridge.metric(f"{LAG}_count") >= 5)
    response = await bridge.client.get("/metrics")
    text = await response.text()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == LAG]
    assert family.type == "histogram"
    count = next(s.value for s in family.samples if s.name == f"{LAG}_count")
    assert count >= 5, "a wake-up every 50 ms"
