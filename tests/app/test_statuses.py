"""Every status of the contract through the real app, with an in-memory Kafka.

These tests check answers, metrics and what was (or was not) handed to Kafka, so they
need no broker and run in ``make test-fast``; what really lands in Kafka is checked
against a real broker in the other modules of this folder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from bridge.admission import LoopLag
from bridge.auth import basic_authorization, sign_hmac
from bridge.settings import AuthSettings, DeadLetterSettings
from tests.app.conftest import SECRET, MakeBridge, receiver_settings, sample
from tests.clocks import DrivenClock
from tests.conditions import until


async def test_unknown_receiver_is_404(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(sample("enrollment-batch"), receiver="nope")

    assert response.status == 404
    assert (await response.json())["error"] == "unknown_receiver"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-ALM-Signature": "zz-not-hex"}, "malformed"),
        ({"X-ALM-Signature": "00" * 32}, "mismatch"),
    ],
)
async def test_bad_signature_is_401_and_nothing_published(
    make_offline_bridge: MakeBridge, headers: dict[str, str], reason: str
) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(sample("enrollment-batch"), signed=False, headers=headers)

    assert response.status == 401
    assert (await response.json())["error"] == f"auth_{reason}"
    assert bridge.metric("almbridge_auth_failures_total", receiver="alm", reason=reason) == 1
    assert bridge.stored() == []


async def test_signature_of_another_body_is_rejected(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()
    body = sample("enrollment-batch")
    tampered = body.replace(b"51001", b"51009")

    response = await bridge.post(
        tampered, signed=False, headers={"X-ALM-Signature": sign_hmac(body, SECRET)}
    )

    assert response.status == 401


async def test_basic_auth_receiver(make_offline_bridge: MakeBridge) -> None:
    prefix = "tbasic" + base64.b32encode(SECRET[:5]).decode().lower()
    receiver = receiver_settings(
        prefix,
        auth=AuthSettings(
            method="basic", credentials=[SecretStr("alm:pw1"), SecretStr("other:pw2")]
        ),
    )
    bridge = await make_offline_bridge(receivers=[receiver], prefix=prefix)

    ok = await bridge.post(
        b'{"accountId": 1, "events": []}',
        signed=False,
        headers={"Authorization": basic_authorization("other", "pw2")},
    )
    wrong = await bridge.post(
        b'{"accountId": 1, "events": []}',
        signed=False,
        headers={"Authorization": basic_authorization("alm", "nope")},
    )

    assert ok.status == 200
    assert wrong.status == 401


async def test_body_over_the_cap_is_413_from_content_length(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(max_body_bytes=2048)
    body = b'{"accountId": 1, "events": [' + b" " * 4096 + b"]}"

    response = await bridge.post(body)

    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"


async def test_chunked_body_over_the_cap_is_413(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge(max_body_bytes=2048)

    async def chunks() -> Any:
        for _ in range(8):
            yield b" " * 1024

    response = await bridge.client.post(
        "/webhooks/alm",
        data=chunks(),
        headers={"Content-Type": "application/json", "X-ALM-Signature": "00" * 32},
    )

    assert response.status == 413


async def test_non_json_content_type_is_415(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(sample("enrollment-batch"), headers={"Content-Type": "text/plain"})

    assert response.status == 415


async def test_json_with_charset_is_accepted(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(
        b'{"accountId": 1, "events": []}',
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )

    assert response.status == 200


async def test_malformed_batch_is_400_naming_the_field_under_reject_policy(
    make_offline_bridge: MakeBridge,
) -> None:
    prefix = "treject"
    receiver = receiver_settings(
        prefix, dead_letter=DeadLetterSettings(policy="reject", topic="treject.dlq")
    )
    bridge = await make_offline_bridge(receivers=[receiver], prefix=prefix)
    body = b'{"accountId": 1, "events": [{"eventName": "COURSE_COMPLETED"}]}'

    response = await bridge.post(body)

    assert response.status == 400
    error = await response.json()
    assert error["error"] == "invalid_event"
    assert "events[0].eventId" in error["detail"]
    assert bridge.metric("almbridge_batches_total", receiver="alm", outcome="rejected") == 1


async def test_account_not_accepted_is_403_and_nothing_published(
    make_offline_bridge: MakeBridge,
) -> None:
    prefix = "tacct"
    bridge = await make_offline_bridge(
        receivers=[receiver_settings(prefix, accounts=[99])], prefix=prefix
    )

    response = await bridge.post(sample("enrollment-batch"))

    assert response.status == 403
    assert (await response.json())["error"] == "account_not_accepted"


async def test_get_challenge_is_echoed_as_text(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.client.get("/webhooks/alm", params={"challenge": "abc-123"})

    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "abc-123"


async def test_post_challenge_is_echoed_even_without_a_signature(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(b'{"challenge": "xyz"}', signed=False)

    assert response.status == 200
    assert await response.json() == {"challenge": "xyz"}


@pytest.mark.parametrize("value", ["", "a" * 300, "bad\nvalue"])
async def test_challenge_that_is_not_short_printable_is_400(
    make_offline_bridge: MakeBridge, value: str
) -> None:
    bridge = await make_offline_bridge()

    got = await bridge.client.get("/webhooks/alm", params={"challenge": value})
    posted = await bridge.post(json.dumps({"challenge": value}).encode())

    assert got.status == 400
    assert posted.status == 400


async def test_plain_get_is_a_reachability_probe(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.client.get("/webhooks/alm")

    assert response.status == 200
    assert await response.read() == b""


async def test_inflight_limit_answers_429_with_retry_after(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge(max_inflight_batches=2)
    bridge.state.slots.enter()
    bridge.state.slots.enter()

    response = await bridge.post(sample("enrollment-batch"))

    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert bridge.metric("almbridge_batches_total", receiver="alm", outcome="throttled") == 1


async def test_health_ready_and_metrics(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    health = await bridge.client.get("/healthz")
    ready = await bridge.client.get("/readyz")
    metrics = await bridge.client.get("/metrics")

    assert health.status == 200
    assert ready.status == 200
    assert (await ready.json())["kafka"] is True
    text = await metrics.text()
    assert "almbridge_build_info" in text
    assert "almbridge_kafka_up 1.0" in text


async def test_every_answer_says_nosniff(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()
    answers = [
        await bridge.client.get("/webhooks/alm?challenge=%3Cscript%3E"),
        await bridge.client.get("/webhooks/nobody"),
        await bridge.post(sample("enrollment-batch")),
        await bridge.post(b"{}", signed=False),
        await bridge.client.get("/metrics"),
        await bridge.client.get("/nowhere"),
    ]
    assert [a.status for a in answers] == [200, 404, 200, 401, 200, 404]
    assert all(a.headers["X-Content-Type-Options"] == "nosniff" for a in answers)
    assert answers[0].headers["Content-Type"].startswith("text/plain")


async def test_a_missing_signature_is_401_without_reading_the_body(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge()
    body = sample("enrollment-batch") + b" " * 8000  # larger than a challenge

    response = await bridge.post(body, signed=False)

    assert response.status == 401
    assert (await response.json())["error"] == "auth_missing"
    assert response.headers["Connection"] == "close"
    assert bridge.state.inflight == 0


async def test_unauthenticated_requests_never_take_a_slot(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge(max_inflight_batches=1)
    bridge.state.slots.enter()  # the only slot is taken

    wrong = await bridge.post(sample("enrollment-batch"), headers={"X-ALM-Signature": "0" * 64})
    right = await bridge.post(sample("enrollment-batch"))

    assert wrong.status == 401  # judged as what it is, not throttled
    assert right.status == 429
    assert bridge.metric("almbridge_batches_total", receiver="alm", outcome="throttled") == 1


async def test_a_batch_queued_too_long_throttles_newcomers_only_on_a_lagging_loop(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(max_queue_delay_ms=50)
    slots = bridge.state.slots
    clock = DrivenClock()
    slots.clock = clock
    slots.lag = LoopLag(clock=clock, sleep=clock.sleep)  # measured on the driven clock
    slots.enter("alm")
    clock.advance(0.1)  # a batch that has waited long: Kafka may just be slow
    waited = await bridge.post(sample("enrollment-batch"))
    measuring = asyncio.create_task(slots.lag.run())
    clock.stalls.append(0.3)  # the loop runs late, as when the CPU is saturated
    await until(lambda: slots.lag.recent > 0)
    measuring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await measuring

    response = await bridge.post(sample("enrollment-batch"))

    assert waited.status == 200
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert "queued" in (await response.json())["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"accountId": 999, "events": [{"eventId": "x"}]}',
        b'{"accountId": "1234", "events": [{"eventId": "x"}]}',
        b'{"accountId": 1234.0, "events": []}',
        b'{"events": [{"eventId": "x", "eventName": "COURSE_ENROLLMENT"}]}',
        b'{"accountId": 1234, "accountId": 999, "events": []}',
        b'{"accountId": 1234, "events": [',
        b"[1234]",
    ],
)
async def test_a_foreign_account_is_403_before_the_body_is_judged(
    make_offline_bridge: MakeBridge, body: bytes
) -> None:
    prefix = f"tacc{uuid.uuid4().hex[:8]}"
    bridge = await make_offline_bridge(
        receivers=[receiver_settings(prefix, accounts=[1234])], prefix=prefix
    )

    response = await bridge.post(body)

    assert response.status == 403
    assert (await response.json())["error"] == "account_not_accepted"
    assert bridge.stored() == []  # not even a dead letter


async def test_an_accepted_account_with_a_bad_event_is_still_dead_lettered(
    make_offline_bridge: MakeBridge,
) -> None:
    prefix = f"tacc{uuid.uuid4().hex[:8]}"
    bridge = await make_offline_bridge(
        receivers=[receiver_settings(prefix, accounts=[1234])], prefix=prefix
    )

    response = await bridge.post(b'{"accountId": 1234, "events": [{"eventId": "x"}]}')

    assert response.status == 200
    assert (await response.json())["deadLetterReason"] == "invalid_event"
