"""Every status of the contract, through the real app and a real Kafka broker."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from bridge.config.settings import RoutingSettings
from tests.app.conftest import MakeBridge, receiver_settings, sample

pytestmark = pytest.mark.kafka


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


async def test_sample_batch_lands_on_topics_with_keys_and_cloudevents_headers(
    make_bridge: MakeBridge,
) -> None:
    bridge = await make_bridge()
    body = sample("mixed-realtime")

    response = await bridge.post(body)

    assert response.status == 200
    assert await response.json() == {
        "received": 5,
        "published": 5,
        "duplicates": 0,
        "deadLettered": 0,
    }
    completed = await bridge.consume(bridge.topic("course_completed"), expected=1)
    assert len(completed) == 1
    record = completed[0]
    assert record.key == b"1234:51001:course:771203_902114"
    value = orjson.loads(record.value)
    assert value["accountId"] == 1234
    assert value["data"]["hasPassed"] is True
    headers = headers_of(record)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == b"c1d8a0b2-1111-4e6f-9a3b-000000000001"
    assert headers["ce_type"] == b"com.adobe.learningmanager.COURSE_COMPLETED"
    assert headers["ce_source"] == b"https://learningmanager.adobe.com/accounts/1234"
    assert headers["ce_time"] == b"2025-11-02T10:30:00.000Z"
    assert headers["content-type"] == b"application/json"
    assert headers["alm_account_id"] == b"1234"
    assert headers["alm_event_name"] == b"COURSE_COMPLETED"
    assert headers["alm_receiver"] == b"alm"
    responses = await bridge.consume(
        bridge.topic("response_asyncapi_usergroup_user_added"), expected=1
    )
    assert responses[0].key == b"1234:user-group-sync-2026-11-02-0001"
    stats = await bridge.consume(bridge.topic("ci_stats"), expected=1)
    assert stats[0].key == b"1234:course:771203_902114"
    lo = await bridge.consume(bridge.topic("learning_object_modification"), expected=1)
    assert lo[0].key == b"1234:course:771203"
    assert bridge.metric("almbridge_batches_total", receiver="alm", outcome="published") == 1
    assert (
        bridge.metric("almbridge_events_published_total", receiver="alm", family="completion") == 1
    )


async def test_setup_guide_dialect_is_accepted_and_kept_as_received(
    make_bridge: MakeBridge,
) -> None:
    bridge = await make_bridge()

    response = await bridge.post(sample("setup-guide-dialect"))

    assert response.status == 200
    records = await bridge.consume(bridge.topic("course_enrollment_batch"), expected=1)
    value = orjson.loads(records[0].value)
    assert value["eventData"]["loInstanceId"] == "course:1250_3301"
    assert value["eventInitiator"] == "1173"
    assert records[0].key == b"1010:1238:course:1250_3301"
    assert headers_of(records[0])["ce_time"] == b"2025-11-02T09:30:00.000Z"


async def test_batch_order_is_kept_for_records_sharing_a_key(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    events = [
        {
            "eventId": f"order-{i}",
            "eventName": "LEARNER_PROGRESS",
            "timestamp": 1762079400000 + i,
            "data": {"userId": 7, "loInstanceId": "course:1_2", "progressPercent": i * 10},
        }
        for i in range(10)
    ]
    body = orjson.dumps({"accountId": 5, "events": events})

    assert (await bridge.post(body)).status == 200

    records = await bridge.consume(bridge.topic("learner_progress"), expected=10)
    assert [orjson.loads(r.value)["eventId"] for r in records] == [f"order-{i}" for i in range(10)]


async def test_resent_batch_publishes_nothing_new(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    body = sample("enrollment-batch")

    first = await bridge.post(body)
    second = await bridge.post(body)

    assert (await first.json())["published"] == 2
    assert await second.json() == {
        "received": 2,
        "published": 0,
        "duplicates": 2,
        "deadLettered": 0,
    }
    records = await bridge.consume(bridge.topic("course_enrollment_batch"), timeout_s=5)
    assert len(records) == 2
    assert bridge.metric("almbridge_duplicates_suppressed_total", receiver="alm") == 2


async def test_empty_batch_is_acknowledged(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()

    response = await bridge.post(b'{"accountId": 1, "events": []}')

    assert response.status == 200
    assert (await response.json())["received"] == 0


async def test_malformed_batch_is_dead_lettered_and_acknowledged(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    body = b'{"accountId": "1234", "events": []}'

    response = await bridge.post(body)

    assert response.status == 200
    summary = await response.json()
    assert summary["deadLettered"] == 1
    assert summary["deadLetterReason"] == "invalid_envelope"
    records = await bridge.consume(bridge.dead_letter_topic, expected=1)
    assert len(records) == 1
    assert records[0].value == body
    headers = headers_of(records[0])
    assert headers["dlq_reason"] == b"invalid_envelope"
    assert b"accountId" in headers["dlq_error"]
    assert headers["alm_receiver"] == b"alm"
    assert (
        bridge.metric("almbridge_dead_letters_total", receiver="alm", reason="invalid_envelope")
        == 1
    )


@pytest.mark.parametrize(
    ("policy", "expected_topic"),
    [("template", "made_up_event_x"), ("catchall", "catchall"), ("deadletter", "deadletter")],
)
async def test_unknown_event_name_follows_the_policy(
    make_bridge: MakeBridge, policy: str, expected_topic: str
) -> None:
    prefix = f"tunl{policy}"
    receiver = receiver_settings(
        prefix,
        routing=RoutingSettings(
            topic_template=f"{prefix}.{{event}}",
            unlisted=policy,  # type: ignore[arg-type]
            catchall_topic=f"{prefix}.catchall",
        ),
    )
    bridge = await make_bridge(receivers=[receiver], prefix=prefix)
    body = orjson.dumps(
        {
            "accountId": 3,
            "events": [{"eventId": "u1", "eventName": "MADE_UP:EVENT_X", "data": {}}],
        }
    )

    response = await bridge.post(body)

    assert response.status == 200
    summary = await response.json()
    assert summary["received"] == 1
    assert summary["published"] + summary["deadLettered"] == 1
    records = await bridge.consume(f"{prefix}.{expected_topic}", expected=1)
    assert [orjson.loads(r.value)["eventId"] for r in records] == ["u1"]
    if policy == "deadletter":
        assert headers_of(records[0])["dlq_reason"] == b"unlisted_event"


async def test_kafka_unreachable_answers_503_with_retry_after(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(kafka_bootstrap_servers="127.0.0.1:1", publish_timeout_ms=500)

    response = await bridge.post(sample("enrollment-batch"))
    ready = await bridge.client.get("/readyz")

    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert ready.status == 503
    assert bridge.metric("almbridge_batches_total", receiver="alm", outcome="unavailable") == 1


async def test_linger_is_honoured(make_bridge: MakeBridge) -> None:
    lingering = await make_bridge(kafka_linger_ms=300)
    await lingering.post(sample("enrollment-batch"))  # topics made, metadata known

    started = time.monotonic()
    response = await lingering.post(sample("mixed-realtime"))
    waited = time.monotonic() - started

    assert response.status == 200
    assert waited >= 0.3  # the lone batch waited for company, as linger_ms says
