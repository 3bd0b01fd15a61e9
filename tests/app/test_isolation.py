"""Two receivers on one bridge: one receiver's traffic never costs the other its topics or
its duplicates window. In-memory Kafka, no broker (like ``test_statuses.py``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from bridge.config.settings import AuthSettings, DeadLetterSettings, RoutingSettings
from bridge.core.auth import basic_authorization
from tests.app.conftest import Bridge, MakeBridge, receiver_settings

ACCOUNT = 1234
PARTNER = {"Authorization": basic_authorization("partner", "pw")}


def body_of(*events: tuple[str, str]) -> bytes:
    return json.dumps(
        {
            "accountId": ACCOUNT,
            "events": [
                {"eventId": event_id, "eventName": name, "timestamp": 1755771300000, "data": {}}
                for name, event_id in events
            ],
        }
    ).encode()


async def two_receivers(make_offline_bridge: MakeBridge, **settings: Any) -> Bridge:
    prefix = "tiso"
    prod = receiver_settings(
        prefix,
        name="prod",
        routing=RoutingSettings(
            topic_template=f"{prefix}.{{event}}",
            overrides={"LEARNER_PROGRESS": f"{prefix}.progress"},
        ),
    )
    # partner's template and name pattern can spell prod's topics: "_COURSE_COMPLETED"
    # collides with prod's tiso.course_completed in Kafka, ".COURSE_COMPLETED" is it.
    partner = receiver_settings(
        prefix,
        name="partner",
        auth=AuthSettings(method="basic", credentials=[SecretStr("partner:pw")]),
        routing=RoutingSettings(
            topic_template=f"{prefix}{{event}}",
            event_name_pattern=r"[A-Z0-9._]+",
            catchall_topic=f"{prefix}.partner-other",
        ),
        dead_letter=DeadLetterSettings(topic=f"{prefix}.partner-deadletter"),
    )
    return await make_offline_bridge(receivers=[prod, partner], prefix=prefix, **settings)


async def post_partner(bridge: Bridge, body: bytes) -> dict[str, Any]:
    response = await bridge.post(body, receiver="partner", signed=False, headers=PARTNER)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def post_prod(bridge: Bridge, body: bytes) -> dict[str, Any]:
    response = await bridge.post(body, receiver="prod")
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def test_a_flood_of_names_leaves_the_other_receivers_topics_alone(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await two_receivers(make_offline_bridge, kafka_max_topics=5)
    flood = [(f"NEW_NAME_{i}", f"n-{i}") for i in range(40)]
    stealing = [("_COURSE_COMPLETED", "s-1"), (".COURSE_COMPLETED", "s-2"), (".PROGRESS", "s-3")]

    partner = await post_partner(bridge, body_of(*stealing, *flood))
    prod = await post_prod(
        bridge,
        body_of(("COURSE_COMPLETED", "p-1"), ("LEARNER_PROGRESS", "p-2"), ("PROD_NEW", "p-3")),
    )

    assert partner["published"] == 43
    assert prod["published"] == 3
    topics = {r.event_id: r.topic for r in bridge.stored()}
    assert [topics[i] for i in ("p-1", "p-2", "p-3")] == [
        "tiso.course_completed",
        "tiso.progress",
        "tiso.prod_new",
    ]
    assert {topics[i] for i in ("s-1", "s-2", "s-3")} == {"tiso.partner-other"}
    partner_topics = {topics[f"n-{i}"] for i in range(40)}
    assert len(partner_topics - {"tiso.partner-other"}) == 5  # partner's own budget
    fallbacks = "almbridge_topic_fallbacks_total"
    assert bridge.metric(fallbacks, receiver="partner", reason="topic_limit") == 35
    assert bridge.metric(fallbacks, receiver="partner", reason="topic_collision") == 2
    assert bridge.metric(fallbacks, receiver="partner", reason="reserved_topic") == 1
    for reason in ("topic_limit", "topic_collision", "reserved_topic", "name_pattern"):
        assert bridge.metric(fallbacks, receiver="prod", reason=reason) == 0


async def test_a_flood_of_ids_leaves_the_other_receivers_duplicates_window_alone(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await two_receivers(make_offline_bridge, dedupe_max_entries=50)
    mine = body_of(("COURSE_COMPLETED", "same-id-1"), ("COURSE_ENROLLMENT", "same-id-2"))
    assert (await post_prod(bridge, mine))["published"] == 2

    # partner sends the same ids (its own events, its own window), then 200 more.
    assert (await post_partner(bridge, mine))["published"] == 2
    flood = [("COURSE_ENROLLMENT", f"flood-{i}-" + "\U0001f600" * 100) for i in range(200)]
    assert (await post_partner(bridge, body_of(*flood)))["published"] == 200

    again = await post_prod(bridge, mine)
    assert (again["published"], again["duplicates"]) == (0, 2)
    # partner's own window holds its latest 50 events only.
    resent = await post_partner(bridge, body_of(*flood[-50:], ("COURSE_COMPLETED", "same-id-1")))
    assert (resent["published"], resent["duplicates"]) == (1, 50)
    assert bridge.metric("almbridge_duplicates_suppressed_total", receiver="prod") == 2
    assert bridge.metric("almbridge_duplicates_suppressed_total", receiver="partner") == 50
