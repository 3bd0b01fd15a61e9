"""The real bridge process under load while Kafka or the bridge itself fails.

Every scenario plays ALM (:func:`bridge.cli.sender.run_send`) against the process, reads back
every topic of the run and checks the promise of a 2xx: each event of an acknowledged
batch is in Kafka. Duplicates are allowed and counted. Durations come from
ALM_BRIDGE_FAULT_BROKER_DOWN_SECONDS (default 30) and ALM_BRIDGE_FAULT_LOAD_SECONDS
(default 12).
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass

import pytest

from tests.kafka_fixtures import LocalKafka
from tests.system.harness import (
    ALM_RESPONSE_LIMIT_MS,
    BROKER_DOWN_SECONDS,
    LOAD_SECONDS,
    BridgeFactory,
    BridgeProcess,
    Load,
    ReadyzProbe,
    RssProbe,
    background,
    load_options,
    read_prefix,
    report,
    tally,
    unique_prefix,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

# Requests per second of the steady load: four ALM webhooks, each waiting for its answer.
RATE = 25.0
SENDERS = 4
BROKER_START_TIMEOUT_S = 90.0
RSS_LIMIT_KIB = 250 * 1024
# Once the broker answers again, every batch must be acknowledged within this.
RECOVERY_SECONDS = 45.0
# An outage is worth a line a second per pending batch, not a flood.
OUTAGE_LOG_LINES_PER_SECOND = 100
# Python's own exit after the last log line, on a busy machine.
EXIT_MARGIN_SECONDS = 1.5


def _load_count() -> int:
    return max(20, int(RATE * LOAD_SECONDS))


@pytest.mark.timeout(BROKER_DOWN_SECONDS + LOAD_SECONDS + RECOVERY_SECONDS + 150)
async def test_broker_outage_during_load(kafka_broker: LocalKafka, bridges: BridgeFactory) -> None:
    prefix = unique_prefix("outage")
    bridge = bridges.spawn(kafka_broker.bootstrap, prefix=prefix)
    await bridge.wait_ready()
    pid = bridge.pid
    load = Load(
        load_options(
            bridge.webhook_url,
            count=_load_count(),
            concurrency=SENDERS,
            rate=RATE,
            max_retry_seconds=BROKER_DOWN_SECONDS + BROKER_START_TIMEOUT_S + RECOVERY_SECONDS,
        )
    )
    readyz = ReadyzProbe(bridge)
    async with background(readyz.run()):
        sending = asyncio.create_task(load.run())
        await asyncio.sleep(LOAD_SECONDS / 3)
        assert not sending.done(), "the load ended before the fault; raise the load duration"
        await asyncio.to_thread(kafka_broker.stop)
        down_at = time.monotonic()
        lines_before, cpu_before = bridge.log_lines(), bridge.cpu_seconds() or 0.0
        await asyncio.sleep(BROKER_DOWN_SECONDS)
        up_at = time.monotonic()
        log_rate = (bridge.log_lines() - lines_before) / (up_at - down_at)
        cpu_share = ((bridge.cpu_seconds() or 0.0) - cpu_before) / (up_at - down_at)
        await asyncio.to_thread(kafka_broker.start, BROKER_START_TIMEOUT_S)
        try:
            summary = await asyncio.wait_for(sending, RECOVERY_SECONDS + LOAD_SECONDS)
        except TimeoutError:
            summary = None
        if summary is not None and summary.all_acknowledged:
            await bridge.wait_ready(30)
    contents = await read_prefix(kafka_broker.bootstrap, prefix)
    row = tally(f"broker down {BROKER_DOWN_SECONDS:g}s", load.results, contents)
    report(row)
    print(f"while the broker was down: {log_rate:.0f} log lines/s, CPU {cpu_share:.0%}")

    assert row.lost == 0, f"acknowledged but not in Kafka: {row.lost_ids}"
    assert bridge.running(), f"the bridge exited\n{bridge.log_tail()}"
    assert bridge.pid == pid
    assert bridge.event_names().count("bridge_started") == 1, "the bridge restarted"
    unacknowledged = len({r.index for r in load.results}) - len(
        {r.index for r in load.results if r.acknowledged}
    )
    assert summary is not None, (
        f"the bridge did not recover within {RECOVERY_SECONDS + LOAD_SECONDS:g}s after the "
        f"broker was back: {unacknowledged} batches still unacknowledged; the bridge's "
        f"reasons for 5xx: {bridge.unavailable_reasons()}"
    )
    assert summary.all_acknowledged, (
        f"{summary.batches_failed} batches never acknowledged; the bridge's reasons for 5xx: "
        f"{bridge.unavailable_reasons()}"
    )
    statuses = load.statuses()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, "no 503 during the outage: the fault was not seen"
    assert not load.without_retry_after(), "a 503 without Retry-After"
    slow = load.slow()
    assert not slow, (
        f"{len(slow)} answers took {ALM_RESPONSE_LIMIT_MS:g} ms or more, the slowest "
        f"{max(r.latency_ms for r in slow):.0f} ms"
    )
    during = readyz.statuses_between(down_at, up_at)
    assert 503 in during, f"/readyz during the outage: {sorted(set(map(str, during)))}"
    assert None not in during, "/readyz did not answer during the outage"
    assert readyz.samples[-1][1] == 200
    assert log_rate < OUTAGE_LOG_LINES_PER_SECOND, (
        f"{log_rate:.0f} log lines/s while the broker was down "
        f"(CPU {cpu_share:.0%}); the most frequent: {bridge.frequent_log_events()}"
    )


@dataclass(frozen=True)
class Restart:
    """The bridge that was signalled: how and when it ended."""

    first: BridgeProcess
    exit_code: int | None
    exit_seconds: float


async def _restart_during_load(
    bootstrap: str, bridges: BridgeFactory, scenario: str, sig: signal.Signals
) -> Restart:
    """Load, ``sig`` to the bridge a third of the way in, a new bridge on the same port."""
    prefix = unique_prefix(scenario)
    first = bridges.spawn(bootstrap, prefix=prefix)
    await first.wait_ready()
    load = Load(
        load_options(first.webhook_url, count=_load_count(), concurrency=SENDERS, rate=RATE)
    )
    sending = asyncio.create_task(load.run_for(3 * LOAD_SECONDS + 60))
    await asyncio.sleep(LOAD_SECONDS / 3)
    assert not sending.done(), "the load ended before the fault; raise the load duration"
    signalled = time.monotonic()
    first.send_signal(sig)
    code = await first.wait_exit(first.shutdown_timeout_seconds + 10)
    exit_seconds = time.monotonic() - signalled
    second = bridges.spawn(bootstrap, prefix=prefix, port=first.port)
    await second.wait_ready()
    summary = await sending
    contents = await read_prefix(bootstrap, prefix)
    row = tally(scenario, load.results, contents)
    report(row)

    assert row.lost == 0, f"acknowledged but not in Kafka: {row.lost_ids}"
    assert summary is not None, "the load did not finish in time"
    assert summary.all_acknowledged, f"{summary.batches_failed} batches never acknowledged"
    assert not load.without_retry_after(), "a 503 or 429 without Retry-After"
    slow = load.slow()
    assert not slow, f"{len(slow)} answers took {ALM_RESPONSE_LIMIT_MS:g} ms or more"
    statuses = load.statuses()
    assert set(statuses) <= {200, 503, "connection_error"}, statuses
    assert second.running()
    return Restart(first, code, exit_seconds)


@pytest.mark.timeout(3 * LOAD_SECONDS + 150)
async def test_rolling_restart_sigterm(kafka_bootstrap: str, bridges: BridgeFactory) -> None:
    restart = await _restart_during_load(
        kafka_bootstrap, bridges, "sigterm restart", signal.SIGTERM
    )

    first = restart.first
    timeout = first.shutdown_timeout_seconds
    assert restart.exit_code == 0, f"exit code {restart.exit_code}\n{first.log_tail()}"
    assert restart.exit_seconds <= timeout + EXIT_MARGIN_SECONDS, (
        f"took {restart.exit_seconds:.1f}s to exit (shutdown timeout {timeout:g}s)"
    )
    events = first.event_names()
    assert "shutdown_started" in events
    assert "bridge_stopped" in events
    assert events.index("shutdown_started") < events.index("bridge_stopped")


@pytest.mark.timeout(3 * LOAD_SECONDS + 150)
async def test_crash_and_restart_sigkill(kafka_bootstrap: str, bridges: BridgeFactory) -> None:
    restart = await _restart_during_load(
        kafka_bootstrap, bridges, "sigkill restart", signal.SIGKILL
    )

    assert restart.exit_code == -signal.SIGKILL
    assert "bridge_stopped" not in restart.first.event_names()


@pytest.mark.timeout(120)
async def test_flood_beyond_the_inflight_limit(
    kafka_bootstrap: str, bridges: BridgeFactory
) -> None:
    prefix = unique_prefix("flood")
    bridge = bridges.spawn(kafka_bootstrap, prefix=prefix, env={"BRIDGE_MAX_INFLIGHT_BATCHES": "4"})
    await bridge.wait_ready()
    senders = 64
    load = Load(
        load_options(bridge.webhook_url, count=senders * 40, concurrency=senders, retry=False)
    )
    rss = RssProbe(bridge)
    async with background(rss.run()):
        await load.run()
    contents = await read_prefix(kafka_bootstrap, prefix)
    row = tally("flood 64 > 4 in flight", load.results, contents)
    report(row)
    print(f"peak RSS {rss.peak_kib / 1024:.1f} MiB over {rss.samples} samples")

    statuses = load.statuses()
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[429] > 0, "no 429: the flood never went beyond the limit"
    assert not load.without_retry_after(), "a 429 or 503 without Retry-After"
    slow = load.slow()
    assert not slow, f"{len(slow)} answers took {ALM_RESPONSE_LIMIT_MS:g} ms or more"
    assert row.lost == 0, f"acknowledged but not in Kafka: {row.lost_ids}"
    assert rss.samples > 0
    assert rss.peak_kib < RSS_LIMIT_KIB, f"peak RSS {rss.peak_kib} KiB"
    assert bridge.running()
