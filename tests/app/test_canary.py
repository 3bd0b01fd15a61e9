"""``alm-bridge canary`` as a user runs it: the real command, the real app, the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from bridge.config.settings import RoutingSettings
from tests.app.conftest import SECRET, MakeBridge, receiver_settings
from tests.kafka_fixtures import consume_all

pytestmark = pytest.mark.kafka


async def _canary(url: str, bootstrap: str, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "canary",
        url,
        "--account-id",
        "1234",
        "--timeout",
        "30",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(90):
        out, err = await process.communicate()
    assert process.returncode is not None
    lines = out.decode().strip().splitlines()
    return process.returncode, json.loads(lines[-1]) if lines else {}, err.decode()


@pytest.mark.timeout(180)
async def test_the_canary_goes_through_and_reaches_only_its_own_topic(
    make_bridge: MakeBridge, kafka_bootstrap: str
) -> None:
    prefix = "canary" + os.urandom(4).hex()
    spec = receiver_settings(
        prefix,
        routing=RoutingSettings(
            topic_template=f"{prefix}.{{event}}",
            canary_topic=f"{prefix}.canary",
            # Whatever the routing says of other names, the canary keeps its own topic.
            unlisted="catchall",
            catchall_topic=f"{prefix}.other",
        ),
    )
    bridge = await make_bridge(receivers=[spec], prefix=prefix)
    url = str(bridge.client.make_url("/webhooks/alm"))

    code, result, err = await _canary(
        url, kafka_bootstrap, "--topic", f"{prefix}.canary", "--secret", SECRET.decode()
    )

    assert code == 0, (result, err)
    assert result["ok"] is True
    assert result["status"] == 200
    assert result["topic"] == f"{prefix}.canary"
    assert 0 < result["answer_ms"] <= result["end_to_end_ms"]
    records = await consume_all(kafka_bootstrap, f"{prefix}.canary")
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [result["event_id"]]
    assert bridge.metric("almbridge_canary_last_success_timestamp_seconds", receiver="alm") > 0
    # Not an account's delivery: liveness is not fed by the canary.
    assert (
        bridge.metric("almbridge_last_accepted_timestamp_seconds", receiver="alm", account="other")
        == 0
    )
    assert bridge.metric("almbridge_events_published_total", receiver="alm", family="other") == 1
    other = await consume_all(kafka_bootstrap, f"{prefix}.other", timeout_s=3)
    assert other == [], "the canary reached a topic of the consumers"


@pytest.mark.timeout(120)
async def test_a_canary_refused_by_the_receiver_fails_with_the_answer(
    make_bridge: MakeBridge, kafka_bootstrap: str
) -> None:
    bridge = await make_bridge()
    url = str(bridge.client.make_url("/webhooks/alm"))

    code, result, _ = await _canary(url, kafka_bootstrap, "--secret", "not-the-secret")

    assert code == 1
    assert result["ok"] is False
    assert result["status"] == 401
    assert "401" in result["error"]
