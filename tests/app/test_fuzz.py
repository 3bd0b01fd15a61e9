"""Mutated ALM bodies through the real app: every answer is a clear status, never a 500."""

from __future__ import annotations

import random

import orjson
import pytest

from bridge.config.settings import DeadLetterSettings
from tests.app.conftest import MakeBridge, receiver_settings, sample

pytestmark = pytest.mark.kafka

SAMPLES = ("enrollment-batch", "mixed-realtime", "setup-guide-dialect")
SPLICES: tuple[bytes, ...] = (b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\xff")
SPLICES += (b"\\ud800", b"1e999", b"18446744073709551616", b'"accountId": 1,')
SPLICES += (b'"eventId": 1,', b"null", b"\x00")


def mutate(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(data) + 1)
        if choice < 0.3 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.5:
            del data[at : at + rng.randint(1, 20)]
        elif choice < 0.8:
            data[at:at] = rng.choice(SPLICES)
        else:
            data = data[:at]
    return bytes(data)


def bodies(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    originals = [sample(name) for name in SAMPLES]
    return [mutate(rng.choice(originals), rng) for _ in range(count)]


@pytest.mark.parametrize("policy", ["deadletter", "reject"])
async def test_mutated_bodies_never_get_a_500(make_bridge: MakeBridge, policy: str) -> None:
    prefix = f"tfuzz{policy}"
    receiver = receiver_settings(
        prefix,
        dead_letter=DeadLetterSettings(policy=policy, topic=f"{prefix}.deadletter"),  # type: ignore[arg-type]
    )
    bridge = await make_bridge(receivers=[receiver], prefix=prefix)
    statuses: dict[int, int] = {}

    for body in bodies(150, seed=7 if policy == "reject" else 11):
        response = await bridge.post(body)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        payload = orjson.loads(await response.read())
        if response.status == 400:
            assert payload["error"]
            assert payload["detail"]

    assert set(statuses) <= {200, 400}, statuses
    if policy == "reject":
        assert statuses.get(400, 0) > 0
    else:
        assert set(statuses) == {200}, statuses
        dead = await bridge.consume(bridge.dead_letter_topic, timeout_s=5)
        dead_lettered = sum(1 for r in dead if dict(r.headers).get("dlq_reason"))
        assert dead_lettered > 0


async def test_event_larger_than_a_record_is_dead_lettered(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(max_record_bytes=4096)
    event = {
        "eventId": "big-1",
        "eventName": "COURSE_COMPLETED",
        "data": {"userId": 1, "loInstanceId": "course:1_2", "note": "x" * 8000},
    }
    body = orjson.dumps({"accountId": 9, "events": [event]})

    response = await bridge.post(body)

    assert response.status == 200
    summary = await response.json()
    assert summary["deadLetterReason"] == "record_too_large"
    records = await bridge.consume(bridge.dead_letter_topic, expected=1)
    headers = dict(records[0].headers)
    assert headers["dlq_reason"] == b"record_too_large"
    assert headers["dlq_truncated_from_bytes"] == str(len(body)).encode()
    stored = records[0].value
    assert 0 < len(stored) < len(body)
    assert body.startswith(stored)
