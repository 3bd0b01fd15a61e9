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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientResponse
from pydantic import SecretStr

from bridge.config.settings import AuthSettings, DeadLetterSettings
from bridge.core.auth import basic_authorization, sign_hmac
from bridge.service.admission import LoopLag
from tests.app.conftest import SECRET, Bridge, MakeBridge, receiver_settings, sample
from tests.clocks import DrivenClock
from tests.conditions import until


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


async def test_json_with_charset_is_accepted(make_offline_bridge: MakeBridge) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(
        b'{"accountId": 1, "events": []}',
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )

    assert response.status == 200


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


# ------------------------------------------------------------------ refused requests


Send = Callable[[Bridge], Awaitable[ClientResponse]]


def _post(
    body: bytes,
    *,
    receiver: str | None = None,
    signed: bool = True,
    headers: dict[str, str] | None = None,
) -> Send:
    async def send(bridge: Bridge) -> ClientResponse:
        response: ClientResponse = await bridge.post(
            body, receiver=receiver, signed=signed, headers=headers
        )
        return response

    return send


async def _chunked_over_the_cap(bridge: Bridge) -> ClientResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    response: ClientResponse = await bridge.client.post(
        "/webhooks/alm",
        data=chunks(),
        headers={"Content-Type": "application/json", "X-ALM-Signature": "00" * 32},
    )
    return response


def _take_every_slot(bridge: Bridge) -> None:
    bridge.state.slots.enter()
    bridge.state.slots.enter()


def _reject(prefix: str) -> dict[str, Any]:
    return {"dead_letter": DeadLetterSettings(policy="reject", topic=f"{prefix}.dlq")}


def _accounts(*accounts: int) -> Callable[[str], dict[str, Any]]:
    return lambda prefix: {"accounts": list(accounts)}


@dataclass(frozen=True)
class Refused:
    """A request the bridge must refuse, and everything its answer must show."""

    send: Send
    status: int
    error: str  # the reason code of the JSON answer
    settings: dict[str, Any] = field(default_factory=dict)
    receiver: Callable[[str], dict[str, Any]] | None = None
    before: Callable[[Bridge], None] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    detail: str | None = None
    # Prometheus samples (name, labels) and the value each must have afterwards.
    metrics: tuple[tuple[str, dict[str, str], float], ...] = ()


def _bad_signature(headers: dict[str, str], reason: str) -> Refused:
    return Refused(
        _post(sample("enrollment-batch"), signed=False, headers=headers),
        401,
        f"auth_{reason}",
        metrics=(("almbridge_auth_failures_total", {"receiver": "alm", "reason": reason}, 1),),
    )


def _foreign(body: bytes) -> Refused:
    return Refused(
        _post(body),
        403,
        "account_not_accepted",
        receiver=_accounts(1234),
    )


_BATCH = sample("enrollment-batch")

REFUSED: dict[str, Refused] = {
    "unknown-receiver": Refused(_post(_BATCH, receiver="nope"), 404, "unknown_receiver"),
    "signature-missing": _bad_signature({}, "missing"),
    "signature-not-hex": _bad_signature({"X-ALM-Signature": "zz-not-hex"}, "malformed"),
    "signature-mismatch": _bad_signature({"X-ALM-Signature": "00" * 32}, "mismatch"),
    "signature-of-another-body": Refused(
        _post(
            _BATCH.replace(b"51001", b"51009"),
            signed=False,
            headers={"X-ALM-Signature": sign_hmac(_BATCH, SECRET)},
        ),
        401,
        "auth_mismatch",
    ),
    "signature-missing-body-not-read": Refused(
        _post(_BATCH + b" " * 8000, signed=False),
        401,
        "auth_missing",
        headers={"Connection": "close"},
    ),
    "content-length-over-the-cap": Refused(
        _post(b'{"accountId": 1, "events": [' + b" " * 4096 + b"]}"),
        413,
        "body_too_large",
        settings={"max_body_bytes": 2048},
    ),
    "chunked-over-the-cap": Refused(
        _chunked_over_the_cap, 413, "body_too_large", settings={"max_body_bytes": 2048}
    ),
    "not-json": Refused(
        _post(_BATCH, headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type"
    ),
    "malformed-under-reject": Refused(
        _post(b'{"accountId": 1, "events": [{"eventName": "COURSE_COMPLETED"}]}'),
        400,
        "invalid_event",
        receiver=_reject,
        detail="events[0].eventId",
        metrics=(("almbridge_batches_total", {"receiver": "alm", "outcome": "rejected"}, 1),),
    ),
    "account-not-accepted": Refused(
        _post(_BATCH), 403, "account_not_accepted", receiver=_accounts(99)
    ),
    "inflight-limit": Refused(
        _post(_BATCH),
        429,
        "too_many_batches",
        settings={"max_inflight_batches": 2},
        before=_take_every_slot,
        headers={"Retry-After": "1"},
        metrics=(("almbridge_batches_total", {"receiver": "alm", "outcome": "throttled"}, 1),),
    ),
    # A foreign account is refused before the body is judged: whatever else is wrong.
    "foreign-account": _foreign(b'{"accountId": 999, "events": [{"eventId": "x"}]}'),
    "account-id-string": _foreign(b'{"accountId": "1234", "events": [{"eventId": "x"}]}'),
    "account-id-float": _foreign(b'{"accountId": 1234.0, "events": []}'),
    "no-account-id": _foreign(b'{"events": [{"eventId": "x", "eventName": "COURSE_ENROLLMENT"}]}'),
    "account-id-twice": _foreign(b'{"accountId": 1234, "accountId": 999, "events": []}'),
    "truncated-json": _foreign(b'{"accountId": 1234, "events": ['),
    "a-list": _foreign(b"[1234]"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
async def test_a_refused_request(make_offline_bridge: MakeBridge, case: Refused) -> None:
    prefix = f"tref{uuid.uuid4().hex[:8]}"
    changes = case.receiver(prefix) if case.receiver else {}
    bridge = await make_offline_bridge(
        receivers=[receiver_settings(prefix, **changes)], prefix=prefix, **case.settings
    )
    if case.before is not None:
        case.before(bridge)
    taken = bridge.state.inflight

    response = await case.send(bridge)

    assert response.status == case.status
    answer = await response.json()
    assert answer["error"] == case.error
    assert case.detail is None or case.detail in answer["detail"]
    for name, value in case.headers.items():
        assert response.headers[name] == value
    for metric, labels, expected in case.metrics:
        assert bridge.metric(metric, **labels) == expected
    assert bridge.stored() == [], "nothing published, not even a dead letter"
    assert bridge.state.inflight == taken, "a refused request holds no slot"
