"""The event-loop lag histogram: a stalled loop shows up in it, and the app exports it."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bridge.admission import LoopLag
from bridge.metrics import Metrics
from tests.app.conftest import MakeBridge

LAG = "almbridge_event_loop_lag_seconds"


def _bucket(registry: CollectorRegistry, le: str) -> float:
    return registry.get_sample_value(f"{LAG}_bucket", {"le": le}) or 0.0


async def test_a_blocked_loop_is_observed_as_lag_and_an_idle_one_is_not() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    lag = LoopLag(interval_seconds=0.02)
    task = asyncio.create_task(lag.run(metrics.event_loop_lag.observe))
    try:
        await asyncio.sleep(0.3)  # idle: every wake-up on time
        idle_count = registry.get_sample_value(f"{LAG}_count") or 0.0
        assert idle_count >= 5
        assert _bucket(registry, "+Inf") - _bucket(registry, "0.1") == 0
        time.sleep(0.3)  # noqa: ASYNC251  (the stall under test)
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stalled = _bucket(registry, "+Inf") - _bucket(registry, "0.25")
    assert stalled == 1, "the 0.3 s stall is one late wake-up, 0.25-0.5 s late"
    assert lag.recent >= 0.25, "admission sees the same lag"
    assert (registry.get_sample_value(f"{LAG}_sum") or 0.0) >= 0.28


@pytest.mark.kafka
async def test_the_app_exports_the_lag_histogram(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    await asyncio.sleep(0.8)
    response = await bridge.client.get("/metrics")
    text = await response.text()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == LAG]
    assert family.type == "histogram"
    count = next(s.value for s in family.samples if s.name == f"{LAG}_count")
    assert count >= 5, "a wake-up every 50 ms"
