"""Two real bridge processes sharing their duplicates through the fleet topic.

What an operator of an autoscaled deployment checks: ALM's re-send of an acknowledged
batch reaches another replica (or the same one after a restart) and is answered as a
duplicate, with every event in Kafka once. Without ``BRIDGE_DEDUPE_FLEET_TOPIC`` the
behaviour is the old one: the other replica publishes the batch again. A topic that is
not compacted stops the process at start with one line and exit code 3.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.system.harness import (
    BridgeFactory,
    BridgeProcess,
    event_ids_of,
    read_prefix,
    signed_batch,
    unique_prefix,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka, pytest.mark.timeout(180)]

EVENTS = 20
LEARNT = 'almbridge_dedupe_fleet_entries_loaded_total{receiver="alm"}'
SUPPRESSED = 'almbridge_dedupe_fleet_suppressed_total{receiver="alm"}'


def fleet_env(topic: str) -> dict[str, str]:
    # The fleet topic is outside the run's prefix: read_prefix checks every record of the
    # prefix against the consumers' contract, and the fleet's records are the bridge's own.
    return {"BRIDGE_DEDUPE_FLEET_TOPIC": topic}


async def post(process: BridgeProcess, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(process.webhook_url, data=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def wait_metric(process: BridgeProcess, series: str, at_least: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as session:
        while (value := await process.metric(session, series) or 0.0) < at_least:
            assert loop.time() < deadline, f"{series} stayed at {value}:\n{process.log_tail()}"
            await asyncio.sleep(0.1)


async def test_a_resend_to_the_other_replica_and_after_a_restart_is_a_duplicate(
    kafka_bootstrap: str, bridges: BridgeFactory
) -> None:
    prefix = unique_prefix("fleet")
    env = fleet_env(f"fleet.{uuid.uuid4().hex[:10]}")
    first = bridges.spawn(kafka_bootstrap, prefix=prefix, env=env)
    second = bridges.spawn(kafka_bootstrap, prefix=prefix, env=env)
    await first.wait_ready()
    await second.wait_ready()
    body, headers = signed_batch(EVENTS, seed=7)
    ids = event_ids_of(body)

    assert (await post(first, body, headers))["published"] == EVENTS
    await wait_metric(second, LEARNT, EVENTS)
    resent = await post(second, body, headers)

    assert (resent["published"], resent["duplicates"]) == (0, EVENTS)
    await wait_metric(second, SUPPRESSED, EVENTS)

    # Both replicas restart (a rollout); the new one loads what the fleet acknowledged.
    first.stop()
    second.stop()
    restarted = bridges.spawn(kafka_bootstrap, prefix=prefix, env=env)
    await restarted.wait_ready()
    again = await post(restarted, body, headers)

    assert (again["published"], again["duplicates"]) == (0, EVENTS)
    assert "dedupe_fleet_loaded" in restarted.event_names()
    contents = await read_prefix(kafka_bootstrap, prefix)
    assert contents.event_ids == {event_id: 1 for event_id in ids}


async def test_without_the_setting_the_other_replica_publishes_again(
    kafka_bootstrap: str, bridges: BridgeFactory
) -> None:
    prefix = unique_prefix("no-fleet")
    first = bridges.spawn(kafka_bootstrap, prefix=prefix)
    second = bridges.spawn(kafka_bootstrap, prefix=prefix)
    await first.wait_ready()
    await second.wait_ready()
    body, headers = signed_batch(EVENTS, seed=8)

    assert (await post(first, body, headers))["published"] == EVENTS
    resent = await post(second, body, headers)

    assert (resent["published"], resent["duplicates"]) == (EVENTS, 0)
    contents = await read_prefix(kafka_bootstrap, prefix)
    assert contents.event_ids == {event_id: 2 for event_id in event_ids_of(body)}
    assert not any(name.startswith("dedupe_fleet") for name in first.event_names())


async def test_a_topic_that_is_not_compacted_stops_the_start_with_one_line(
    kafka_bootstrap: str, bridges: BridgeFactory
) -> None:
    topic = f"fleet.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])  # the broker's default: delete
    finally:
        await admin.close()

    process = bridges.spawn(kafka_bootstrap, prefix=unique_prefix("refused"), env=fleet_env(topic))

    assert await process.wait_exit(60) == 3, process.log_tail()
    last = process.log_path.read_text().splitlines()[-1]
    assert last == (
        f"alm-bridge: BRIDGE_DEDUPE_FLEET_TOPIC {topic}: the topic exists but is not compacted "
        "(cleanup.policy=delete): set cleanup.policy=compact,delete on it, or name another topic"
    )
