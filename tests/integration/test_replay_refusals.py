"""``alm-bridge replay`` of the events Kafka refused, on a broker that enforces ACLs.

For each of Kafka's refusals the real app dead-letters the completion of a batch (as in
test_kafka_refusals.py), the operator fixes the cause (an ACL granted, the topic created,
its configuration changed, a routing override, other topic settings), and the replay,
connected as the same SCRAM user as the bridge, publishes it exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bridge.cli.deadletters import Filters
from bridge.cli.replay import ReplayOptions, replay
from bridge.config.settings import RoutingSettings, Settings
from bridge.service.app import create_app
from tests.app.conftest import Bridge, receiver_settings
from tests.contract import contract_for
from tests.integration.test_kafka_refusals import (
    COMPLETED,
    DEAD_LETTER_KEY,
    ENROLLED,
    create_topics,
    dead_letter_topic,
    post_dead_lettering_the_completion,
    records_of,
    topic,
    two_events,
)
from tests.kafka_fixtures import ACL_KAFKA_MAX_PARTITIONS, LocalKafka

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
RUN = f"rep{uuid.uuid4().hex[:8]}"
FREE = f"{RUN}-free"
# Granted topic by topic: the completions' topic only once the test grants it.
LATER = f"{RUN}-acl.later"


def progress_topic(prefix: str) -> str:
    return f"{prefix}.replay-progress"


@pytest.fixture(scope="module")
def cluster(acl_kafka: LocalKafka) -> LocalKafka:
    allow = ["--add", "--allow-principal", "User:bridge"]
    ops = [arg for op in ("Write", "Describe", "Create", "Read") for arg in ("--operation", op)]
    acl_kafka.acls(*allow, *ops, "--topic", f"{FREE}.", "--resource-pattern-type", "prefixed")
    granted = [topic(LATER, ENROLLED), dead_letter_topic(LATER), progress_topic(LATER)]
    acl_kafka.acls(*allow, *ops, *[arg for name in granted for arg in ("--topic", name)])
    return acl_kafka


def settings_for(
    broker: LocalKafka, prefix: str, *, routing: dict[str, Any] | None = None, **kw: Any
) -> Settings:
    """The bridge's (and the replay's) settings: the SCRAM user ``bridge`` over SASL."""
    kw.setdefault("kafka_topic_partitions", 1)
    receiver = receiver_settings(
        prefix, routing=RoutingSettings(topic_template=f"{prefix}.{{event}}", **(routing or {}))
    )
    return Settings(
        receivers=[receiver],
        kafka_bootstrap_servers=broker.sasl_plaintext_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr(broker.scram_users["bridge"]),
        **kw,
    )


async def admin_of(broker: LocalKafka) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    return admin


async def alter_topic(broker: LocalKafka, name: str, configs: dict[str, str]) -> None:
    admin = await admin_of(broker)
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
    finally:
        await admin.close()


@dataclass
class Case:
    """How the bridge comes to refuse the completion, and how the operator fixes it."""

    prefix: str
    bridge: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    completed_data: dict[str, Any] = field(default_factory=dict)
    key: bytes | None = DEAD_LETTER_KEY
    destination: str = ""


async def arrange(reason: str, broker: LocalKafka) -> tuple[Case, Callable[[], Awaitable[None]]]:
    """The case of ``reason``, and the operator's fix."""
    prefix = LATER if reason == "topic_not_authorized" else f"{FREE}.{reason}"
    case = Case(prefix, destination=topic(prefix, COMPLETED))
    completed = topic(prefix, COMPLETED)
    fix: Callable[[], Awaitable[None]]

    async def nothing() -> None:
        return None

    fix = nothing
    if reason == "topic_not_authorized":

        async def grant() -> None:
            ops = [arg for op in ("Write", "Describe", "Create") for arg in ("--operation", op)]
            await asyncio.to_thread(
                broker.acls, "--add", "--allow-principal", "User:bridge", *ops, "--topic", completed
            )

        fix = grant
    elif reason == "topic_collision":
        await create_topics(broker, NewTopic(f"{prefix}.course.completed", 1, 1))
        case.replay = {"routing": {"overrides": {COMPLETED: f"{prefix}.completions"}}}
        case.destination = f"{prefix}.completions"
    elif reason in ("topic_policy", "topic_config"):
        # The topics that exist work; the bridge asks for a new one the cluster refuses.
        await create_topics(
            broker,
            NewTopic(topic(prefix, ENROLLED), 1, 1),
            NewTopic(dead_letter_topic(prefix), 1, 1),
        )
        case.bridge = (
            {"kafka_topic_partitions": ACL_KAFKA_MAX_PARTITIONS + 4}
            if reason == "topic_policy"
            else {"kafka_topic_replication_factor": 3}
        )
    elif reason == "topic_missing":
        await create_topics(
            broker,
            NewTopic(topic(prefix, ENROLLED), 1, 1),
            NewTopic(dead_letter_topic(prefix), 1, 1),
            # Without topic creation the operator makes the progress topic too.
            NewTopic(progress_topic(prefix), 1, 1, topic_configs={"cleanup.policy": "compact"}),
        )
        case.bridge = case.replay = {"kafka_auto_create_topics": False}

        async def create() -> None:
            await create_topics(broker, NewTopic(completed, 1, 1))

        fix = create
    elif reason == "record_too_large":
        await create_topics(
            broker, NewTopic(completed, 1, 1, topic_configs={"max.message.bytes": "2048"})
        )
        case.completed_data = {"note": "x" * 8000}

        async def enlarge() -> None:
            await alter_topic(broker, completed, {"max.message.bytes": "1048588"})

        fix = enlarge
    elif reason == "kafka_refused":
        # A compacted topic takes no record without a key.
        await create_topics(
            broker, NewTopic(completed, 1, 1, topic_configs={"cleanup.policy": "compact"})
        )
        case.routing = {"key": "none"}
        case.key = None

        async def delete_policy() -> None:
            await alter_topic(broker, completed, {"cleanup.policy": "delete"})

        fix = delete_policy
    return case, fix


REASONS = [
    "topic_not_authorized",
    "topic_collision",
    "topic_policy",
    "topic_config",
    "topic_missing",
    "record_too_large",
    "kafka_refused",
]


@pytest.mark.parametrize("reason", REASONS)
async def test_event_kafka_refused_is_replayed_once_after_the_fix(
    aiohttp_client: AiohttpClient, cluster: LocalKafka, reason: str
) -> None:
    case, fix = await arrange(reason, cluster)
    prefix = case.prefix
    bridge_settings = settings_for(cluster, prefix, routing=case.routing, **case.bridge)
    registry = CollectorRegistry()
    client = await aiohttp_client(create_app(bridge_settings, registry=registry))
    bridge = Bridge(client, registry, prefix, cluster.bootstrap)
    body, enrolled_id, completed_id = two_events(completed_data=case.completed_data or None)
    dead, _ = await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, reason, key=case.key
    )
    replay_routing = {**case.routing, **case.replay.pop("routing", {})}
    fixed = settings_for(cluster, prefix, routing=replay_routing, **case.replay)
    options = ReplayOptions(apply=True, progress_topic=progress_topic(prefix))
    preview = await replay(fixed, ReplayOptions(progress_topic=progress_topic(prefix)))
    assert preview.by_reason == {reason: 1}
    assert preview.by_destination == {case.destination: 1}

    if reason == "topic_not_authorized":
        # Before the grant: still refused, left in place, the run says so.
        early = await replay(fixed, options)
        assert early.failing == {"topic_not_authorized": 1}
        assert not early.complete
        assert await records_of(cluster, case.destination) == []
    await fix()
    # A grant or a configuration change reaches the broker a moment later.
    for _ in range(20):
        applied = await replay(fixed, options)
        if applied.complete:
            break
        await asyncio.sleep(0.5)
    again = await replay(fixed, options)

    assert (applied.replayed, applied.complete) == (1, True)
    assert (again.replayed, again.already) == (0, 1)
    (stored,) = await records_of(cluster, case.destination)
    contract_for(fixed).check_records([stored])
    assert orjson.loads(stored.value)["eventId"] == completed_id
    assert stored.value == dead.value
    assert stored.key == case.key
    headers = dict(stored.headers)
    assert headers["replay_source"] == f"{dead.topic}:{dead.partition}:{dead.offset}".encode()
    assert headers["replay_dlq_reason"] == reason.encode()
    assert headers["ce_id"] == completed_id.encode()
    assert "dlq_topic" not in headers
    # Nothing else moved: the enrolment once, the dead letter still there.
    assert len(await records_of(cluster, topic(prefix, ENROLLED))) == 1
    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


async def test_reason_filter_replays_only_that_reason(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    prefix = f"{FREE}.mixed"
    await create_topics(cluster, NewTopic(f"{prefix}.course.completed", 1, 1))
    settings = settings_for(cluster, prefix, routing={"unlisted": "deadletter"})
    registry = CollectorRegistry()
    client = await aiohttp_client(create_app(settings, registry=registry))
    bridge = Bridge(client, registry, prefix, cluster.bootstrap)
    body, _, _ = two_events()
    assert (await (await bridge.post(body)).json())["deadLetterReasons"] == {"topic_collision": 1}
    custom = orjson.dumps(
        {"accountId": 4242, "events": [{"eventId": "u-1", "eventName": "CUSTOM_THING"}]}
    )
    assert (await (await bridge.post(custom)).json())["deadLetterReasons"] == {"unlisted_event": 1}
    fixed = settings_for(cluster, prefix, routing={"unlisted": "template"})
    options = ReplayOptions(
        apply=True,
        progress_topic=progress_topic(prefix),
        filters=Filters(reasons=frozenset({"unlisted_event"})),
    )

    applied = await replay(fixed, options)

    assert (applied.selected, applied.replayed, applied.complete) == (1, 1, True)
    assert [
        orjson.loads(r.value)["eventId"]
        for r in await records_of(cluster, f"{prefix}.custom_thing")
    ] == ["u-1"]
    assert applied.failing == {}
