"""The fleet's memory of duplicates on a real broker: two replicas of the real app.

Each replica is the real app (``create_app``) with its own producer, windows and fleet
reader, as two pods would be. A batch acknowledged by one and re-sent to the other must
be answered as a duplicate, with every event in Kafka once; a replica started later (a
restart) must know what the fleet acknowledged before; without the setting, nothing
changes. Topics the fleet cannot use are refused at start with one clear line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bridge.config.settings import Settings
from bridge.core.dedupe import read_fleet_record
from bridge.kafka.fleet import FleetTopicRefused
from bridge.service.app import create_app
from tests.app.conftest import Bridge, receiver_settings
from tests.kafka_fixtures import LocalKafka, consume_all

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ACCOUNT = 5150
EVENT = "COURSE_ENROLLMENT"


def batch(count: int) -> tuple[bytes, list[str]]:
    ids = [f"fleet-{uuid.uuid4().hex}" for _ in range(count)]
    events = [
        {
            "eventId": event_id,
            "eventName": EVENT,
            "timestamp": "2026-11-02T09:30:00.000Z",
            "data": {"userId": 61000 + n, "loInstanceId": "course:1_2", "loType": "course"},
        }
        for n, event_id in enumerate(ids)
    ]
    return orjson.dumps({"accountId": ACCOUNT, "events": events}), ids


class Replicas:
    """Bridges on one broker sharing a topic prefix and, when given, a fleet topic."""

    def __init__(self, client: AiohttpClient, bootstrap: str, fleet_topic: str) -> None:
        self.client = client
        self.bootstrap = bootstrap
        self.fleet_topic = fleet_topic
        self.prefix = f"fl{uuid.uuid4().hex[:10]}"

    def settings(self, **changes: Any) -> Settings:
        values: dict[str, Any] = {
            "receivers": [receiver_settings(self.prefix)],
            "kafka_bootstrap_servers": self.bootstrap,
            "kafka_topic_partitions": 1,
            "dedupe_fleet_topic": self.fleet_topic,
            **changes,
        }
        return Settings(**values)

    async def start(self, **changes: Any) -> Bridge:
        settings = self.settings(**changes)
        registry = CollectorRegistry()
        client = await self.client(create_app(settings, registry=registry))
        bridge = Bridge(client, registry, self.prefix, self.bootstrap, settings=settings)
        await wait_until(lambda: ready(bridge), "the replica is not ready")
        return bridge

    @property
    def topic(self) -> str:
        return f"{self.prefix}.{EVENT.lower()}"


async def ready(bridge: Bridge) -> bool:
    response = await bridge.client.get("/readyz")
    return response.status == 200


async def wait_until(
    check: Callable[[], Awaitable[bool]], message: str, timeout_s: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.05)


async def learnt(bridge: Bridge, count: float) -> bool:
    return bridge.metric("almbridge_dedupe_fleet_entries_loaded_total", receiver="alm") >= count


def fleet_name() -> str:
    return f"fleet.{uuid.uuid4().hex[:10]}"


async def test_a_resend_to_another_replica_is_a_duplicate(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    replicas = Replicas(aiohttp_client, kafka_bootstrap, fleet_name())
    first, second = await replicas.start(), await replicas.start()
    body, ids = batch(5)

    answer = await first.post(body)
    assert answer.status == 200
    assert (await answer.json())["published"] == 5
    # What a user waits for: the other replica has read the five digests.
    await wait_until(lambda: learnt(second, 5), "the other replica never learnt the events")
    again = await second.post(body)

    assert again.status == 200
    summary = await again.json()
    assert (summary["published"], summary["duplicates"]) == (0, 5)
    assert second.metric("almbridge_dedupe_fleet_suppressed_total", receiver="alm") == 5
    assert second.metric("almbridge_duplicates_suppressed_total", receiver="alm") == 5
    records = await first.consume(replicas.topic)
    assert sorted(orjson.loads(r.value)["eventId"] for r in records) == sorted(ids)
    # The fleet topic holds one record per event: its digest and the receiver.
    fleet = await consume_all(kafka_bootstrap, replicas.fleet_topic)
    entries = [read_fleet_record(r.key, r.value) for r in fleet]
    assert sorted(e[0] for e in entries if e is not None) == ["alm"] * 5
    assert first.metric("almbridge_dedupe_fleet_writes_total") == 5


async def test_a_replica_started_later_remembers(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    replicas = Replicas(aiohttp_client, kafka_bootstrap, fleet_name())
    first = await replicas.start()
    body, _ = batch(4)
    assert (await first.post(body)).status == 200
    await wait_until(
        lambda: _true(first.metric("almbridge_dedupe_fleet_writes_total") >= 4),
        "the digests were never written",
    )

    restarted = await replicas.start()

    # Ready means loaded here: the load of four entries ends well within the bound.
    assert restarted.metric("almbridge_dedupe_fleet_loaded") == 1
    assert restarted.metric("almbridge_dedupe_fleet_entries_loaded_total", receiver="alm") == 4
    again = await restarted.post(body)
    summary = await again.json()
    assert (again.status, summary["published"], summary["duplicates"]) == (200, 0, 4)
    assert len(await first.consume(replicas.topic)) == 4


async def test_entries_older_than_the_window_are_not_loaded(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    replicas = Replicas(aiohttp_client, kafka_bootstrap, fleet_name())
    first = await replicas.start()
    body, _ = batch(3)
    assert (await first.post(body)).status == 200
    await wait_until(
        lambda: _true(first.metric("almbridge_dedupe_fleet_writes_total") >= 3),
        "the digests were never written",
    )
    await asyncio.sleep(1.2)  # the entries get older than the next replica's window

    later = await replicas.start(dedupe_max_age_seconds=1.0)

    assert later.metric("almbridge_dedupe_fleet_entries_loaded_total", receiver="alm") == 0
    assert (await (await later.post(body)).json())["published"] == 3


async def test_without_the_setting_a_resend_to_another_replica_is_published_again(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    replicas = Replicas(aiohttp_client, kafka_bootstrap, "")
    first, second = await replicas.start(), await replicas.start()
    body, _ = batch(3)

    assert (await (await first.post(body)).json())["published"] == 3
    summary = await (await second.post(body)).json()

    assert (summary["published"], summary["duplicates"]) == (3, 0)
    assert len(await first.consume(replicas.topic, expected=6)) == 6
    response = await second.client.get("/readyz")
    assert "dedupeFleet" not in await response.json()


async def test_the_created_topic_is_compacted_with_retention_of_the_window(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    replicas = Replicas(aiohttp_client, kafka_bootstrap, fleet_name())
    await replicas.start(dedupe_max_age_seconds=7200)

    configs = await topic_configs(kafka_bootstrap, replicas.fleet_topic)

    assert configs["cleanup.policy"] == "compact,delete"
    assert configs["retention.ms"] == "7200000"


async def test_a_topic_that_is_not_compacted_is_refused(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    name = fleet_name()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"cleanup.policy": "delete"})]
        )
    finally:
        await admin.close()
    replicas = Replicas(aiohttp_client, kafka_bootstrap, name)

    message = await refused_at_start(replicas.settings())

    assert "\n" not in message
    assert f"BRIDGE_DEDUPE_FLEET_TOPIC {name}" in message
    assert "not compacted (cleanup.policy=delete)" in message


async def refused_at_start(settings: Settings) -> str:
    """The one line a start-up with ``settings`` is refused with."""
    runner = web.AppRunner(create_app(settings, registry=CollectorRegistry()))
    try:
        with pytest.raises(FleetTopicRefused) as refused:
            await runner.setup()
    finally:
        await runner.cleanup()
    return refused.value.detail


async def topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    entries = response.resources[0][4]
    return {entry[0]: entry[1] for entry in entries}


async def _true(value: bool) -> bool:
    return value


async def test_a_topic_the_bridge_may_not_read_is_refused(acl_kafka: LocalKafka) -> None:
    """An ACL that lets the bridge write the topic but not read it: refused at start."""
    prefix = f"fl{uuid.uuid4().hex[:10]}"
    name = f"fleet-acl.{uuid.uuid4().hex[:10]}"
    allow = ["--add", "--allow-principal", "User:bridge"]
    everything = ["--operation", "Write", "--operation", "Describe", "--operation", "Create"]
    acl_kafka.acls(*allow, *everything, "--topic", prefix, "--resource-pattern-type", "prefixed")
    acl_kafka.acls(
        *allow,
        *["--operation", "Write", "--operation", "Describe", "--operation", "DescribeConfigs"],
        "--topic",
        name,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=acl_kafka.bootstrap)
    await admin.start()
    try:
        compacted = {"cleanup.policy": "compact,delete"}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=compacted)])
    finally:
        await admin.close()
    settings = Settings(
        receivers=[receiver_settings(prefix)],
        kafka_bootstrap_servers=acl_kafka.sasl_plaintext_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr(acl_kafka.scram_users["bridge"]),
        kafka_topic_partitions=1,
        dedupe_fleet_topic=name,
    )

    message = await refused_at_start(settings)

    assert "\n" not in message
    assert f"BRIDGE_DEDUPE_FLEET_TOPIC {name}: the bridge may not read the topic" in message
    assert "TopicAuthorizationFailedError" in message
    assert "Read" in message
