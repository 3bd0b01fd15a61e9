"""Start-up and shutdown of the real process: the order of a graceful stop, and no Kafka yet.

A slow batch is one the bridge cannot publish because the broker is stopped: it stays in
flight until the publish deadline, which gives a signal something to drain.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.kafka_fixtures import LocalKafka
from tests.system.harness import (
    BridgeFactory,
    BridgeProcess,
    event_ids_of,
    read_prefix,
    serve_command,
    signed,
    signed_batch,
    unique_prefix,
    with_new_ids,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

SHUTDOWN_TIMEOUT_SECONDS = 8.0
PUBLISH_TIMEOUT_MS = 4000
EXIT_MARGIN_SECONDS = 1.5
# How soon after the signal /readyz and new requests must say "shutting down".
AT_ONCE_SECONDS = 0.5
BROKER_START_TIMEOUT_S = 90.0
SETTINGS = {
    "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
    "BRIDGE_PUBLISH_TIMEOUT_MS": str(PUBLISH_TIMEOUT_MS),
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None
    seconds: float


async def post_batch(
    session: aiohttp.ClientSession, bridge: BridgeProcess, size: int, *, seed: int
) -> Answer:
    body, _ = signed_batch(size, seed=seed)
    return await post_body(session, bridge, body)


async def post_body(session: aiohttp.ClientSession, bridge: BridgeProcess, body: bytes) -> Answer:
    started = time.monotonic()
    async with session.post(
        bridge.webhook_url,
        data=body,
        headers=signed(body),
        timeout=aiohttp.ClientTimeout(total=15),
    ) as response:
        doc = await response.json(content_type=None)
        return Answer(
            response.status,
            doc if isinstance(doc, dict) else {},
            response.headers.get("Retry-After"),
            time.monotonic() - started,
        )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


SLOW_BATCH_SIZE = 10
SLOW_BATCH_SEED = 1


async def _ready_bridge_without_broker(
    kafka_broker: LocalKafka,
    bridges: BridgeFactory,
    session: aiohttp.ClientSession,
    label: str,
) -> BridgeProcess:
    """A ready bridge that has published to the slow batch's topics; then the broker stops.

    Its producer knows every topic and leader of the slow batch, so the batch's records wait
    in the producer's buffer, as they do when a cluster in use goes away.
    """
    bridge = bridges.spawn(kafka_broker.bootstrap, prefix=unique_prefix(label), env=SETTINGS)
    await bridge.wait_ready()
    body, _ = signed_batch(SLOW_BATCH_SIZE, seed=SLOW_BATCH_SEED)
    warm = await post_body(session, bridge, with_new_ids(body, "warm-up"))
    assert warm.status == 200, warm
    await asyncio.to_thread(kafka_broker.stop)
    return bridge


async def _slow_batch(
    session: aiohttp.ClientSession, bridge: BridgeProcess
) -> asyncio.Task[Answer]:
    """A batch that stays in flight until the publish deadline; returns once it is."""
    task = asyncio.create_task(post_batch(session, bridge, SLOW_BATCH_SIZE, seed=SLOW_BATCH_SEED))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUBLISH_TIMEOUT_MS / 1000 / 2
    while loop.time() < deadline:
        if (await bridge.inflight(session) or 0) >= 1:
            return task
        assert not task.done(), f"the batch was answered at once: {task.result()}"
        await asyncio.sleep(0.01)
    task.cancel()
    raise AssertionError("the slow batch never showed up as in flight")


async def _shutting_down_seen(
    session: aiohttp.ClientSession, bridge: BridgeProcess, timeout_s: float
) -> tuple[int, dict[str, Any]] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = None
    while loop.time() < deadline:
        last = await bridge.readyz(session)
        if last is not None and last[1].get("shuttingDown") is True:
            return last
        await asyncio.sleep(0.02)
    return last


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_graceful_shutdown_drains_in_order(
    kafka_broker: LocalKafka,
    bridges: BridgeFactory,
    session: aiohttp.ClientSession,
    sig: signal.Signals,
) -> None:
    bridge = await _ready_bridge_without_broker(kafka_broker, bridges, session, f"drain-{sig.name}")
    in_flight = await _slow_batch(session, bridge)

    signalled = time.monotonic()
    bridge.send_signal(sig)
    readyz = await _shutting_down_seen(session, bridge, AT_ONCE_SECONDS)
    refused = await post_batch(session, bridge, 3, seed=2)
    answered = await in_flight
    code = await bridge.wait_exit(SHUTDOWN_TIMEOUT_SECONDS + 10)
    exit_seconds = time.monotonic() - signalled
    print(
        f"\n{sig.name}: in-flight batch answered {answered.status} after {answered.seconds:.2f}s,"
        f" new batch {refused.status}, exit {code} {exit_seconds:.2f}s after the signal"
    )

    assert readyz is not None, "/readyz did not answer during the drain"
    assert readyz[0] == 503, readyz
    assert readyz[1]["shuttingDown"] is True, readyz
    assert refused.status == 503, refused
    assert refused.body.get("error") == "shutting_down", refused
    assert refused.retry_after, refused
    # The broker is gone: the batch in flight is finished with a truthful 503, never a 2xx.
    assert answered.status == 503, answered
    assert answered.body.get("error") == "kafka_unavailable", answered
    assert answered.retry_after, answered
    assert code == 0, f"exit code {code}\n{bridge.log_tail()}"
    assert exit_seconds <= SHUTDOWN_TIMEOUT_SECONDS + EXIT_MARGIN_SECONDS, (
        f"exited {exit_seconds:.1f}s after {sig.name}; the shutdown timeout is "
        f"{SHUTDOWN_TIMEOUT_SECONDS:g}s\n{bridge.log_tail(15)}"
    )
    events = bridge.log_events()
    names = [e.get("event") for e in events]
    assert "shutdown_started" in names
    assert "bridge_stopped" in names
    assert names.index("shutdown_started") < names.index("bridge_stopped")
    started = events[names.index("shutdown_started")]
    assert started.get("signal") == sig.name


@pytest.mark.timeout(120)
async def test_second_signal_exits_at_once(
    kafka_broker: LocalKafka, bridges: BridgeFactory, session: aiohttp.ClientSession
) -> None:
    bridge = await _ready_bridge_without_broker(kafka_broker, bridges, session, "second-signal")
    in_flight = await _slow_batch(session, bridge)

    bridge.send_signal(signal.SIGTERM)
    assert await _shutting_down_seen(session, bridge, AT_ONCE_SECONDS) is not None
    again = time.monotonic()
    bridge.send_signal(signal.SIGTERM)
    code = await bridge.wait_exit(5)
    exit_seconds = time.monotonic() - again
    with pytest.raises(aiohttp.ClientError):
        await in_flight

    assert code is not None, "still running 5 s after the second SIGTERM"
    assert code != 0
    assert exit_seconds <= 1.0, f"exited {exit_seconds:.2f}s after the second SIGTERM"
    assert "second_signal_exiting_now" in bridge.event_names()


@pytest.mark.timeout(180)
async def test_starts_without_kafka_and_becomes_ready_by_itself(
    kafka_broker: LocalKafka, bridges: BridgeFactory, session: aiohttp.ClientSession
) -> None:
    await asyncio.to_thread(kafka_broker.stop)
    prefix = unique_prefix("late-kafka")
    bridge = bridges.spawn(
        kafka_broker.bootstrap,
        prefix=prefix,
        env=SETTINGS,
        command=serve_command(script=True),
    )
    started = time.monotonic()
    await bridge.wait_listening(30)
    listening_seconds = time.monotonic() - started
    pid = bridge.pid

    unready = await bridge.readyz(session)
    early = await post_batch(session, bridge, 3, seed=3)
    await asyncio.to_thread(kafka_broker.start, BROKER_START_TIMEOUT_S)
    await bridge.wait_ready(40)
    body, _ = signed_batch(5, seed=4)
    accepted = await post_batch(session, bridge, 5, seed=4)
    contents = await read_prefix(kafka_broker.bootstrap, prefix)

    assert listening_seconds < 20, f"took {listening_seconds:.1f}s to listen"
    assert unready is not None
    assert unready[0] == 503, unready
    assert unready[1]["kafka"] is False, unready
    assert unready[1]["shuttingDown"] is False, unready
    assert early.status == 503, early
    assert early.retry_after, early
    assert early.seconds < 5, early
    assert accepted.status == 200, accepted
    assert accepted.body["published"] == 5, accepted
    assert set(event_ids_of(body)) <= set(contents.event_ids)
    assert bridge.running()
    assert bridge.pid == pid
