"""Kafka's refusals, each met on a real broker that enforces ACLs, through the real app.

The broker (``acl_kafka``) runs Kafka's StandardAuthorizer, with topic auto-creation off
and a create-topic policy that caps partitions. The bridge connects as the SCRAM user
``bridge``, which may only do what the ACLs below grant; the tests create "other teams'"
topics and read records as super users.

A refusal that can never pass for an event dead-letters that event alone, with the topic it
was meant for in ``dlq_topic``; the others are published and the batch is answered 200.
A retriable condition is a 503 with Retry-After. Either way, whatever Kafka acknowledged is
marked seen, so ALM's re-send publishes nothing twice, and ``/readyz`` follows the
connection to the cluster only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bridge.config.settings import DeadLetterSettings, RoutingSettings, Settings
from bridge.kafka import topics as bridge_topics
from bridge.service.app import create_app
from tests.app.conftest import Bridge, receiver_settings
from tests.kafka_fixtures import ACL_KAFKA_MAX_PARTITIONS, LocalKafka, consume_all

# One broker start and three kafka-acls runs for the module come before its first test.
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ACCOUNT = 4242
# Each run gets its own topic names; the ACLs are granted once, for the whole module.
RUN = f"ref{uuid.uuid4().hex[:8]}"
# Under this prefix the bridge may create, describe and write every topic.
FREE = f"{RUN}-free"
ENROLLED, COMPLETED = "COURSE_ENROLLMENT", "COURSE_COMPLETED"


def scoped(name: str) -> str:
    """The topic prefix of one scenario whose rights are granted topic by topic."""
    return f"{RUN}-acl.{name}"


def free(name: str) -> str:
    """The topic prefix of one scenario under which the bridge may do everything."""
    return f"{FREE}.{name}"


def topic(prefix: str, event_name: str) -> str:
    return f"{prefix}.{event_name.lower()}"


def dead_letter_topic(prefix: str) -> str:
    return f"{prefix}.deadletter"


@dataclass(frozen=True)
class Grants:
    """Which topics the user ``bridge`` may create (C), describe (D) and write (W)."""

    # W, D, C on each literal topic.
    producer: tuple[str, ...]
    # D and C but never W.
    no_write: tuple[str, ...]


GRANTS = Grants(
    producer=(
        topic(scoped("create"), ENROLLED),
        dead_letter_topic(scoped("create")),
        topic(scoped("write-existing"), ENROLLED),
        dead_letter_topic(scoped("write-existing")),
        topic(scoped("write-created"), ENROLLED),
        dead_letter_topic(scoped("write-created")),
        topic(scoped("dlq"), ENROLLED),
        topic(scoped("grant-later"), ENROLLED),
        dead_letter_topic(scoped("grant-later")),
    ),
    no_write=(
        topic(scoped("write-existing"), COMPLETED),
        topic(scoped("write-created"), COMPLETED),
        dead_letter_topic(scoped("dlq")),
    ),
)


def _topic_args(topics: tuple[str, ...]) -> list[str]:
    return [arg for name in topics for arg in ("--topic", name)]


@pytest.fixture(scope="module")
def cluster(acl_kafka: LocalKafka) -> LocalKafka:
    """The module's broker with the ACLs of every scenario in place."""
    allow = ["--add", "--allow-principal", "User:bridge"]
    ops = ["--operation", "Write", "--operation", "Describe", "--operation", "Create"]
    acl_kafka.acls(*allow, *ops, "--topic", f"{FREE}.", "--resource-pattern-type", "prefixed")
    acl_kafka.acls(*allow, *ops, *_topic_args(GRANTS.producer))
    acl_kafka.acls(
        *allow, "--operation", "Describe", "--operation", "Create", *_topic_args(GRANTS.no_write)
    )
    return acl_kafka


def _event(event_id: str, name: str, user_id: int, **data: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventName": name,
        "timestamp": "2026-11-02T09:30:00.000Z",
        "data": {"userId": user_id, "loInstanceId": "course:771203_902114", **data},
    }


def two_events(*, completed_data: dict[str, Any] | None = None) -> tuple[bytes, str, str]:
    """A batch of one enrollment and one completion; returns it and the two event ids."""
    enrolled_id, completed_id = f"enr-{uuid.uuid4().hex}", f"cmp-{uuid.uuid4().hex}"
    body = orjson.dumps(
        {
            "accountId": ACCOUNT,
            "events": [
                _event(enrolled_id, ENROLLED, 51001, loType="course"),
                _event(completed_id, COMPLETED, 51002, **(completed_data or {})),
            ],
        }
    )
    return body, enrolled_id, completed_id


async def make_bridge(
    aiohttp_client: AiohttpClient,
    broker: LocalKafka,
    prefix: str,
    *,
    receiver: dict[str, Any] | None = None,
    **settings: Any,
) -> Bridge:
    """The real app, connected as ``bridge`` over SASL; records are read as super user."""
    settings.setdefault("kafka_topic_partitions", 1)
    config = Settings(
        receivers=[receiver_settings(prefix, **(receiver or {}))],
        kafka_bootstrap_servers=broker.sasl_plaintext_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr(broker.scram_users["bridge"]),
        **settings,
    )
    registry = CollectorRegistry()
    client = await aiohttp_client(create_app(config, registry=registry))
    return Bridge(client, registry, prefix, broker.bootstrap)


async def create_topics(broker: LocalKafka, *topics: NewTopic) -> None:
    """Topics made by someone else (another team, the platform): the super user ``admin``."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=broker.sasl_plaintext_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="admin",
        sasl_plain_password=broker.scram_users["admin"],
    )
    await admin.start()
    try:
        await admin.create_topics(list(topics))
    finally:
        await admin.close()


async def existing_topics(broker: LocalKafka) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def records_of(broker: LocalKafka, name: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``name``, read as a super user; none if the topic does not exist."""
    if name not in await existing_topics(broker):
        return []
    return await consume_all(broker.bootstrap, name)


def event_ids(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    return [orjson.loads(r.value)["eventId"] for r in records]


# The completion's key (its user and learning object) in two_events().
DEAD_LETTER_KEY: Final = f"{ACCOUNT}:51002:course:771203_902114".encode()


def assert_dead_lettered(
    record: ConsumerRecord[bytes, bytes],
    *,
    event_id: str,
    meant_for: str,
    reason: str,
    key: bytes | None = DEAD_LETTER_KEY,
) -> dict[str, bytes]:
    """The event itself (value, key, CloudEvents headers) plus why and where it was going."""
    headers = dict(record.headers)
    value = orjson.loads(record.value)
    assert value["eventId"] == event_id
    assert value["accountId"] == ACCOUNT
    assert headers["ce_id"] == event_id.encode()
    assert headers["alm_event_name"] == COMPLETED.encode()
    assert record.key == key
    assert headers["dlq_reason"] == reason.encode()
    assert headers["dlq_topic"] == meant_for.encode()
    assert headers["dlq_error"]
    datetime.fromisoformat(headers["dlq_time"].decode())
    return headers


async def post_dead_lettering_the_completion(
    bridge: Bridge,
    cluster: LocalKafka,
    prefix: str,
    body: bytes,
    enrolled_id: str,
    completed_id: str,
    reason: str,
    *,
    key: bytes | None = DEAD_LETTER_KEY,
) -> tuple[ConsumerRecord[bytes, bytes], dict[str, bytes]]:
    """POST :func:`two_events`: 200, the enrolment published, the completion dead-lettered.

    Returns the dead-letter record and its headers.
    """
    response = await bridge.post(body)

    assert response.status == 200
    summary = await response.json()
    assert summary["published"] == 1
    assert summary["deadLettered"] == 1
    assert summary["deadLetterReasons"] == {reason: 1}
    await assert_ready(bridge)
    assert event_ids(await records_of(cluster, topic(prefix, ENROLLED))) == [enrolled_id]
    dead = await records_of(cluster, dead_letter_topic(prefix))
    assert len(dead) == 1
    headers = assert_dead_lettered(
        dead[0], event_id=completed_id, meant_for=topic(prefix, COMPLETED), reason=reason, key=key
    )
    return dead[0], headers


async def assert_ready(bridge: Bridge) -> None:
    response = await bridge.client.get("/readyz")
    assert response.status == 200, await response.text()
    assert (await response.json())["kafka"] is True


async def assert_resend_is_all_duplicates(bridge: Bridge, body: bytes) -> None:
    response = await bridge.post(body)
    assert response.status == 200
    summary = await response.json()
    assert summary["published"] == 0
    assert summary["duplicates"] == 2
    assert summary["deadLettered"] == 0


def dead_letter_count(bridge: Bridge, reason: str) -> float:
    return bridge.metric("almbridge_dead_letters_total", receiver="alm", reason=reason)


# Topic creation refused -----------------------------------------------------------------


async def test_topic_colliding_with_another_teams_topic_dead_letters_only_that_event(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    prefix = free("collision")
    # Another team's topic: '.' and '_' collide in Kafka's topic names.
    theirs = f"{prefix}.course.completed"
    await create_topics(cluster, NewTopic(theirs, 1, 1))
    bridge = await make_bridge(aiohttp_client, cluster, prefix)
    body, enrolled_id, completed_id = two_events()

    response = await bridge.post(body)

    assert response.status == 200
    assert await response.json() == {
        "received": 2,
        "published": 1,
        "duplicates": 0,
        "deadLettered": 1,
        "deadLetterReasons": {"topic_collision": 1},
    }
    await assert_ready(bridge)
    assert event_ids(await records_of(cluster, topic(prefix, ENROLLED))) == [enrolled_id]
    dead = await records_of(cluster, dead_letter_topic(prefix))
    assert len(dead) == 1
    headers = assert_dead_lettered(
        dead[0],
        event_id=completed_id,
        meant_for=topic(prefix, COMPLETED),
        reason="topic_collision",
    )
    assert theirs.encode() in headers["dlq_error"]
    assert await records_of(cluster, theirs) == []
    assert topic(prefix, COMPLETED) not in await existing_topics(cluster)
    assert dead_letter_count(bridge, "topic_collision") == 1

    await assert_resend_is_all_duplicates(bridge, body)

    assert len(await records_of(cluster, topic(prefix, ENROLLED))) == 1
    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


async def test_topic_collision_under_reject_policy_is_400_and_publishes_nothing(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    prefix = free("collision-reject")
    await create_topics(cluster, NewTopic(f"{prefix}.course.completed", 1, 1))
    reject = DeadLetterSettings(policy="reject", topic=dead_letter_topic(prefix))
    bridge = await make_bridge(aiohttp_client, cluster, prefix, receiver={"dead_letter": reject})
    body, _, _ = two_events()

    response = await bridge.post(body)

    assert response.status == 400
    assert (await response.json())["error"] == "topic_collision"
    await assert_ready(bridge)
    assert await records_of(cluster, topic(prefix, ENROLLED)) == []
    assert await records_of(cluster, dead_letter_topic(prefix)) == []


async def test_topic_the_bridge_may_not_create_dead_letters_only_that_event(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    prefix = scoped("create")  # no ACL at all on its course_completed topic
    bridge = await make_bridge(aiohttp_client, cluster, prefix)
    body, enrolled_id, completed_id = two_events()

    await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "topic_not_authorized"
    )
    assert topic(prefix, COMPLETED) not in await existing_topics(cluster)
    assert dead_letter_count(bridge, "topic_not_authorized") == 1

    await assert_resend_is_all_duplicates(bridge, body)

    assert len(await records_of(cluster, topic(prefix, ENROLLED))) == 1
    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


async def test_topic_refused_then_granted_is_created_for_a_later_batch(
    aiohttp_client: AiohttpClient, cluster: LocalKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused topic is not taken for created: once the operator grants Create and Write,
    and the bridge's memory of the refusal has passed (30 s, shortened here), it is used."""
    monkeypatch.setattr(bridge_topics, "REFUSAL_MEMORY_SECONDS", 1.0)
    prefix = scoped("grant-later")
    bridge = await make_bridge(aiohttp_client, cluster, prefix)
    body, _, refused_id = two_events()
    first = await bridge.post(body)
    assert (await first.json())["deadLetterReasons"] == {"topic_not_authorized": 1}
    await asyncio.to_thread(
        cluster.acls,
        "--add",
        "--allow-principal",
        "User:bridge",
        "--operation",
        "Create",
        "--operation",
        "Write",
        "--operation",
        "Describe",
        "--topic",
        topic(prefix, COMPLETED),
    )
    # Until the grant reaches the broker and the memory has passed, completions still go to
    # the dead-letter topic; a later batch then uses the topic.
    refused = [refused_id]
    for _ in range(20):
        await asyncio.sleep(0.5)
        later, _, completed_id = two_events()
        response = await bridge.post(later)
        assert response.status == 200
        summary = await response.json()
        if summary["deadLettered"] == 0:
            break
        refused.append(completed_id)

    assert summary["published"] == 2
    assert event_ids(await records_of(cluster, topic(prefix, COMPLETED))) == [completed_id]
    assert event_ids(await records_of(cluster, dead_letter_topic(prefix))) == refused


@pytest.mark.parametrize("case", ["write-existing", "write-created"])
async def test_topic_the_bridge_may_not_write_dead_letters_only_that_event(
    aiohttp_client: AiohttpClient, cluster: LocalKafka, case: str
) -> None:
    """Describe and Create but no Write: on a topic that exists, or that the bridge creates."""
    prefix = scoped(case)
    if case == "write-existing":
        await create_topics(cluster, NewTopic(topic(prefix, COMPLETED), 1, 1))
    bridge = await make_bridge(aiohttp_client, cluster, prefix)
    body, enrolled_id, completed_id = two_events()

    await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "topic_not_authorized"
    )
    assert await records_of(cluster, topic(prefix, COMPLETED)) == []

    await assert_resend_is_all_duplicates(bridge, body)

    assert len(await records_of(cluster, topic(prefix, ENROLLED))) == 1
    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


async def test_missing_topic_while_auto_creation_is_off_dead_letters_only_that_event(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    """The platform team creates topics; the broker does not auto-create them either."""
    prefix = free("missing")
    await create_topics(
        cluster,
        NewTopic(topic(prefix, ENROLLED), 1, 1),
        NewTopic(dead_letter_topic(prefix), 1, 1),
    )
    bridge = await make_bridge(aiohttp_client, cluster, prefix, kafka_auto_create_topics=False)
    body, enrolled_id, completed_id = two_events()

    await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "topic_missing"
    )
    assert topic(prefix, COMPLETED) not in await existing_topics(cluster)

    await assert_resend_is_all_duplicates(bridge, body)

    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


async def test_replication_factor_the_cluster_cannot_meet_is_a_topic_config_refusal(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    """Three replicas asked of a one-broker cluster; the topics that exist still work."""
    prefix = free("replicas")
    await create_topics(
        cluster,
        NewTopic(topic(prefix, ENROLLED), 1, 1),
        NewTopic(dead_letter_topic(prefix), 1, 1),
    )
    bridge = await make_bridge(aiohttp_client, cluster, prefix, kafka_topic_replication_factor=3)
    body, enrolled_id, completed_id = two_events()

    _, headers = await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "topic_config"
    )
    assert b"replication" in headers["dlq_error"].lower()
    assert topic(prefix, COMPLETED) not in await existing_topics(cluster)


async def test_topic_the_clusters_policy_refuses_is_a_topic_policy_refusal(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    """The cluster's create-topic policy caps partitions; the bridge asks for more."""
    prefix = free("policy")
    await create_topics(
        cluster,
        NewTopic(topic(prefix, ENROLLED), 1, 1),
        NewTopic(dead_letter_topic(prefix), 1, 1),
    )
    partitions = ACL_KAFKA_MAX_PARTITIONS + 4
    bridge = await make_bridge(aiohttp_client, cluster, prefix, kafka_topic_partitions=partitions)
    body, enrolled_id, completed_id = two_events()

    _, headers = await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "topic_policy"
    )
    assert f"at most {ACL_KAFKA_MAX_PARTITIONS}".encode() in headers["dlq_error"]
    assert topic(prefix, COMPLETED) not in await existing_topics(cluster)


# Records refused --------------------------------------------------------------------------


async def test_record_too_large_for_its_topic_dead_letters_only_that_event(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    """The topic's own max.message.bytes is far below what the bridge allows a record."""
    prefix = free("large")
    await create_topics(
        cluster,
        NewTopic(topic(prefix, COMPLETED), 1, 1, topic_configs={"max.message.bytes": "2048"}),
    )
    bridge = await make_bridge(aiohttp_client, cluster, prefix)
    body, enrolled_id, completed_id = two_events(completed_data={"note": "x" * 8000})

    dead, _ = await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "record_too_large"
    )
    assert await records_of(cluster, topic(prefix, COMPLETED)) == []
    assert orjson.loads(dead.value)["data"]["note"] == "x" * 8000
    assert dead_letter_count(bridge, "record_too_large") == 1

    await assert_resend_is_all_duplicates(bridge, body)

    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


async def test_record_the_topic_cannot_take_is_dead_lettered_as_refused_by_kafka(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    """Another team compacts its topic; a compacted topic takes no record without a key."""
    prefix = free("compacted")
    await create_topics(
        cluster,
        NewTopic(topic(prefix, COMPLETED), 1, 1, topic_configs={"cleanup.policy": "compact"}),
    )
    routing = RoutingSettings(topic_template=f"{prefix}.{{event}}", key="none")
    bridge = await make_bridge(aiohttp_client, cluster, prefix, receiver={"routing": routing})
    body, enrolled_id, completed_id = two_events()

    await post_dead_lettering_the_completion(
        bridge, cluster, prefix, body, enrolled_id, completed_id, "kafka_refused", key=None
    )
    assert await records_of(cluster, topic(prefix, COMPLETED)) == []

    await assert_resend_is_all_duplicates(bridge, body)

    assert len(await records_of(cluster, dead_letter_topic(prefix))) == 1


# The dead-letter topic refuses: a partial failure ---------------------------------------


async def test_dead_letter_topic_not_writable_is_503_and_what_kafka_took_stays_seen(
    aiohttp_client: AiohttpClient, cluster: LocalKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enrollment is stored, the completion has nowhere to go: 503, ALM keeps re-sending.

    Re-sends never store the enrollment again; once the operator grants Write on the
    dead-letter topic, and the bridge's memory of the refusal has passed (30 s, shortened
    here), the next re-send dead-letters the completion and is answered 200.
    """
    monkeypatch.setattr(bridge_topics, "REFUSAL_MEMORY_SECONDS", 1.0)
    prefix = scoped("dlq")  # Describe/Create only on its dead-letter topic, nothing else
    await create_topics(cluster, NewTopic(dead_letter_topic(prefix), 1, 1))
    bridge = await make_bridge(aiohttp_client, cluster, prefix)
    body, enrolled_id, completed_id = two_events()

    for _ in range(2):
        response = await bridge.post(body)

        assert response.status == 503
        assert (await response.json())["error"] == "dead_letter_unavailable"
        assert response.headers["Retry-After"] == "5"
        await assert_ready(bridge)
        assert event_ids(await records_of(cluster, topic(prefix, ENROLLED))) == [enrolled_id]
        assert await records_of(cluster, dead_letter_topic(prefix)) == []

    await asyncio.to_thread(
        cluster.acls,
        "--add",
        "--allow-principal",
        "User:bridge",
        "--operation",
        "Write",
        "--topic",
        dead_letter_topic(prefix),
    )
    # ALM re-sends until it gets a 2xx.
    for _ in range(10):
        response = await bridge.post(body)
        if response.status != 503:
            break
        await asyncio.sleep(0.5)

    assert response.status == 200
    summary = await response.json()
    assert summary["published"] == 0
    assert summary["duplicates"] == 1
    assert summary["deadLettered"] == 1
    assert summary["deadLetterReasons"] == {"topic_not_authorized": 1}
    assert event_ids(await records_of(cluster, topic(prefix, ENROLLED))) == [enrolled_id]
    dead = await records_of(cluster, dead_letter_topic(prefix))
    assert len(dead) == 1
    assert_dead_lettered(
        dead[0],
        event_id=completed_id,
        meant_for=topic(prefix, COMPLETED),
        reason="topic_not_authorized",
    )


# Retriable: the broker is gone ----------------------------------------------------------


async def _wait_ready(bridge: Bridge, status: int, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        response = await bridge.client.get("/readyz")
        if response.status == status:
            return
        assert loop.time() < deadline, f"/readyz still {response.status} after {timeout_s}s"
        await asyncio.sleep(0.25)


async def test_stopped_broker_is_503_with_retry_after_and_readiness_follows_it(
    aiohttp_client: AiohttpClient, cluster: LocalKafka
) -> None:
    prefix = free("down")
    bridge = await make_bridge(aiohttp_client, cluster, prefix, publish_timeout_ms=1500)
    first, _, _ = two_events()
    assert (await bridge.post(first)).status == 200
    body, enrolled_id, completed_id = two_events()

    await asyncio.to_thread(cluster.stop)
    try:
        response = await bridge.post(body)

        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        await _wait_ready(bridge, 503, timeout_s=15)
        await asyncio.to_thread(cluster.start, 120)
        await _wait_ready(bridge, 200, timeout_s=60)
    finally:
        if not cluster.is_running():
            cluster.start(120)

    retried = await bridge.post(body)

    assert retried.status == 200
    summary = await retried.json()
    assert summary["published"] + summary["duplicates"] == 2
    assert summary["deadLettered"] == 0
    enrolled = event_ids(await records_of(cluster, topic(prefix, ENROLLED)))
    completed = event_ids(await records_of(cluster, topic(prefix, COMPLETED)))
    assert enrolled.count(enrolled_id) == 1
    assert completed.count(completed_id) == 1
    assert await records_of(cluster, dead_letter_topic(prefix)) == []
