"""What strangers and odd senders can do, through the real app and a real Kafka broker.

Admission (who may use a slot), the account allow-list before anything else, topic names
that cannot be trusted, and Kafka's permanent refusals dead-lettered per event.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.config.settings import DeadLetterSettings, RoutingSettings
from tests.app.conftest import MakeBridge, receiver_settings
from tests.contract import contract_for
from tests.kafka_fixtures import consume_all

pytestmark = pytest.mark.kafka


def body_of(*events: dict[str, Any], account_id: int = 1234) -> bytes:
    return orjson.dumps({"accountId": account_id, "events": list(events)})


def ev(name: str, event_id: str, **data: Any) -> dict[str, Any]:
    return {"eventId": event_id, "eventName": name, "timestamp": 1755771300, "data": data}


async def topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(f"{prefix}."))
    finally:
        await admin.close()


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


async def test_an_odd_name_does_not_hold_back_the_batch(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    body = body_of(
        ev("COURSE_UNENROLLMENT", "u1", userId=1, loInstanceId="course:1_1"),
        ev("Course.Enrollment", "u2"),
        ev("DEADLETTER", "u3"),
    )

    first = await bridge.post(body)
    again = await bridge.post(body)

    assert first.status == 200
    assert await first.json() == {
        "received": 3,
        "published": 3,
        "duplicates": 0,
        "deadLettered": 0,
    }
    assert (await again.json())["duplicates"] == 3
    unenrolled = await bridge.consume(bridge.topic("course_unenrollment"))
    assert [orjson.loads(r.value)["eventId"] for r in unenrolled] == ["u1"]
    other = await consume_all(bridge.bootstrap, "alm.other", timeout_s=3)
    mine = [r for r in other if orjson.loads(r.value)["eventId"] in {"u2", "u3"}]
    assert bridge.settings is not None
    contract_for(bridge.settings).check_records(mine)
    assert {orjson.loads(r.value)["eventId"] for r in mine} >= {"u2", "u3"}
    assert bridge.metric("almbridge_topic_fallbacks_total", receiver="alm", reason="name_pattern")
    assert bridge.metric("almbridge_topic_fallbacks_total", receiver="alm", reason="reserved_topic")
    assert await bridge.consume(bridge.dead_letter_topic, timeout_s=2) == []


async def test_new_names_past_the_topic_limit_go_to_the_catchall(make_bridge: MakeBridge) -> None:
    prefix = f"tlim{uuid.uuid4().hex[:8]}"
    receiver = receiver_settings(
        prefix,
        routing=RoutingSettings(
            topic_template=f"{prefix}.{{event}}", catchall_topic=f"{prefix}.catchall"
        ),
    )
    bridge = await make_bridge(receivers=[receiver], prefix=prefix, kafka_max_topics=5)
    body = body_of(*(ev(f"NEW_NAME_{i}", f"n{i}") for i in range(40)))

    response = await bridge.post(body)

    assert response.status == 200
    assert (await response.json())["published"] == 40
    topics = await topics_with_prefix(bridge.bootstrap, prefix)
    # Five from the template, the catch-all and the dead-letter topic.
    assert len(topics) == 7
    assert {f"{prefix}.catchall", bridge.dead_letter_topic} <= set(topics)
    assert (
        bridge.metric("almbridge_topic_fallbacks_total", receiver="alm", reason="topic_limit") == 35
    )


async def test_a_topic_kafka_refuses_dead_letters_only_its_events(
    make_bridge: MakeBridge, kafka_bootstrap: str
) -> None:
    prefix = f"tcol{uuid.uuid4().hex[:8]}"
    # Another team's topic, which a name with '.' collides with in Kafka.
    await create_topic(kafka_bootstrap, f"{prefix}.a_b")
    receiver = receiver_settings(
        prefix,
        routing=RoutingSettings(
            topic_template=f"{prefix}.{{event}}", event_name_pattern=r"[A-Z._]+"
        ),
    )
    bridge = await make_bridge(receivers=[receiver], prefix=prefix)
    body = body_of(ev("COURSE_COMPLETED", "c1"), ev("A.B", "c2"), ev("COURSE_COMPLETED", "c3"))

    first = await bridge.post(body)
    again = await bridge.post(body)

    assert first.status == 200
    assert await first.json() == {
        "received": 3,
        "published": 2,
        "duplicates": 0,
        "deadLettered": 1,
        "deadLetterReasons": {"topic_collision": 1},
    }
    assert (await again.json())["duplicates"] == 3
    letters = await bridge.consume(bridge.dead_letter_topic, expected=1)
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["dlq_reason"] == b"topic_collision"
    assert headers["dlq_topic"] == f"{prefix}.a.b".encode()
    assert b"collides" in headers["dlq_error"]
    assert headers["ce_id"] == b"c2"
    assert orjson.loads(letters[0].value)["eventId"] == "c2"
    completed = await bridge.consume(bridge.topic("course_completed"), expected=2)
    assert [orjson.loads(r.value)["eventId"] for r in completed] == ["c1", "c3"]
    assert (
        bridge.metric("almbridge_dead_letters_total", receiver="alm", reason="topic_collision") == 1
    )
    ready = await bridge.client.get("/readyz")
    assert ready.status == 200


async def test_a_refused_topic_is_400_before_anything_is_stored_under_reject(
    make_bridge: MakeBridge, kafka_bootstrap: str
) -> None:
    prefix = f"trej{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, f"{prefix}.a_b")
    receiver = receiver_settings(
        prefix,
        routing=RoutingSettings(
            topic_template=f"{prefix}.{{event}}", event_name_pattern=r"[A-Z._]+"
        ),
        dead_letter=DeadLetterSettings(policy="reject", topic=f"{prefix}.deadletter"),
    )
    bridge = await make_bridge(receivers=[receiver], prefix=prefix)

    response = await bridge.post(body_of(ev("COURSE_COMPLETED", "c1"), ev("A.B", "c2")))

    assert response.status == 400
    assert (await response.json())["error"] == "topic_collision"
    assert await bridge.consume(bridge.topic("course_completed"), timeout_s=2) == []


async def test_a_missing_topic_without_auto_creation_is_dead_lettered(
    make_bridge: MakeBridge, kafka_bootstrap: str
) -> None:
    prefix = f"tmis{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, f"{prefix}.deadletter")
    await create_topic(kafka_bootstrap, f"{prefix}.course_completed")
    bridge = await make_bridge(prefix=prefix, kafka_auto_create_topics=False)

    response = await bridge.post(
        body_of(ev("COURSE_COMPLETED", "m1"), ev("LEARNER_PROGRESS", "m2"))
    )

    assert response.status == 200
    summary = await response.json()
    assert (summary["published"], summary["deadLetterReasons"]) == (1, {"topic_missing": 1})
    letters = await bridge.consume(bridge.dead_letter_topic, expected=1)
    assert dict(letters[0].headers)["dlq_topic"] == f"{prefix}.learner_progress".encode()
