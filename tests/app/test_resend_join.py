"""A re-send while an earlier attempt is still in the producer: one attempt chain, one copy.

ALM re-sends a batch answered 503. When the 503 came from a cluster that could not
acknowledge in time (below its in-sync replicas, a leader election), the earlier
attempt's records are still in the producer and may yet be stored. These tests hold
records in flight with the in-memory Kafka and check that a re-send waits for them
instead of producing them again, that a late acknowledgement makes the next re-send a
duplicate, and that an attempt that fails after all is produced again.
"""

from __future__ import annotations

import asyncio
import json

from bridge.core.reasons import DeadLetterReason
from bridge.core.sink import Refusal
from tests.app.conftest import Bridge, MakeBridge, sample
from tests.conditions import until

# Short, so that a held attempt is answered 503 quickly.
TIMEOUT_MS = 300


def _joined(bridge: Bridge) -> float:
    return bridge.metric("almbridge_resent_events_joined_total", receiver="alm")


def _with_event(body: bytes, event_id: str) -> bytes:
    batch = json.loads(body)
    extra = dict(batch["events"][0], eventId=event_id)
    batch["events"].append(extra)
    return json.dumps(batch).encode()


async def test_resend_of_an_unsettled_attempt_is_not_produced_again(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(publish_timeout_ms=TIMEOUT_MS)
    assert bridge.sink is not None
    sink = bridge.sink
    body = sample("enrollment-batch")
    sink.hold = True

    first = await bridge.post(body)
    second = await bridge.post(body)

    assert (first.status, second.status) == (503, 503)
    assert sink.produced == 2, "the re-send produced its events again"
    sink.release()
    third = await bridge.post(body)

    assert third.status == 200
    answer = await third.json()
    assert answer["duplicates"] == 2, "the late acknowledgement did not mark the events seen"
    assert answer["published"] == 0
    assert len(bridge.stored()) == 2


async def test_resend_waits_for_the_earlier_attempt_and_counts_its_events(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(publish_timeout_ms=2000)
    assert bridge.sink is not None
    sink = bridge.sink
    body = sample("enrollment-batch")
    sink.hold = True
    first = asyncio.create_task(bridge.post(body))
    await sink.holding.wait()

    resend = asyncio.create_task(bridge.post(body))
    await until(lambda: resend.done() or _joined(bridge) >= 2)
    assert not resend.done(), await resend.result().text()
    sink.release()
    answers = [await first, await resend]

    assert [a.status for a in answers] == [200, 200]
    joined = await answers[1].json()
    assert joined["published"] == 2, joined
    assert sink.produced == 2
    assert len(bridge.stored()) == 2
    published = bridge.metric(
        "almbridge_events_published_total", receiver="alm", family="enrollment"
    )
    assert published == 4, "each answer counts the events it saw stored"


async def test_an_attempt_that_fails_after_all_is_produced_again(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(publish_timeout_ms=TIMEOUT_MS)
    assert bridge.sink is not None
    sink = bridge.sink
    body = sample("enrollment-batch")
    sink.hold = True
    assert (await bridge.post(body)).status == 503
    sink.fail_held()
    sink.hold = False

    again = await bridge.post(body)

    assert again.status == 200
    assert (await again.json())["published"] == 2
    assert sink.produced == 4
    assert len(bridge.stored()) == 2


async def test_only_the_events_in_flight_join(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge(publish_timeout_ms=TIMEOUT_MS)
    assert bridge.sink is not None
    sink = bridge.sink
    body = sample("enrollment-batch")
    sink.hold = True
    assert (await bridge.post(body)).status == 503
    sink.hold = False
    sink.release()
    grown = _with_event(body, "7c0e4a52-0000-4000-8000-000000000001")

    answer = await bridge.post(grown)

    assert answer.status == 200
    assert await answer.json() == {
        "received": 3,
        "published": 1,
        "duplicates": 2,
        "deadLettered": 0,
    }
    assert sink.produced == 3


async def test_a_resend_joins_the_dead_letters_of_its_earlier_attempt(
    make_offline_bridge: MakeBridge,
) -> None:
    """The topic is refused for good; its dead letters wait in the producer; ALM re-sends."""
    bridge = await make_offline_bridge(publish_timeout_ms=TIMEOUT_MS)
    assert bridge.sink is not None
    sink = bridge.sink
    body = sample("enrollment-batch")
    topics = {bridge.topic(e["eventName"].lower()) for e in json.loads(body)["events"]}
    for topic in topics:
        sink.refuse[topic] = Refusal(
            DeadLetterReason.TOPIC_NOT_AUTHORIZED, "TopicAuthorizationFailedError"
        )
    sink.hold = True

    first = await bridge.post(body)
    second = await bridge.post(body)

    assert (first.status, second.status) == (503, 503)
    assert sink.produced == 2, "the re-send dead-lettered its events again"
    sink.release()
    sink.hold = False
    third = await bridge.post(body)

    assert third.status == 200
    assert (await third.json())["duplicates"] == 2
    stored = bridge.stored()
    assert [r.topic for r in stored] == [bridge.dead_letter_topic] * 2


async def test_a_resend_joining_dead_letters_counts_them_as_dead_letters(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(publish_timeout_ms=2000)
    assert bridge.sink is not None
    sink = bridge.sink
    body = sample("enrollment-batch")
    for event in json.loads(body)["events"]:
        sink.refuse[bridge.topic(event["eventName"].lower())] = Refusal(
            DeadLetterReason.TOPIC_NOT_AUTHORIZED, "TopicAuthorizationFailedError"
        )
    sink.hold = True
    first = asyncio.create_task(bridge.post(body))
    await sink.holding.wait()

    resend = asyncio.create_task(bridge.post(body))
    await until(lambda: resend.done() or _joined(bridge) >= 2)
    assert not resend.done(), await resend.result().text()
    sink.release()
    answers = [await first, await resend]

    assert [a.status for a in answers] == [200, 200]
    joined = await answers[1].json()
    assert joined["published"] == 0, joined
    assert joined["deadLettered"] == 2, joined
    assert joined["deadLetterReasons"] == {"topic_not_authorized": 2}, joined
    assert sink.produced == 2
