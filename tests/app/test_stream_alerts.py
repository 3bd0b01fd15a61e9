"""The streams' alerts, from the real app to a real Prometheus evaluating the shipped rules.

The rules are deploy/prometheus/alerts.yml with their windows and ``for`` durations made
seconds long, so that an account falling silent, a secret rotated on one side only and a
slow ALM each raise their own alert within a test. deploy/prometheus/alerts.test.yml
checks the same rules at their real durations with promtool.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from pydantic import SecretStr

from bridge.cli.canary import canary_batch
from bridge.config.settings import AuthSettings, LivenessSettings
from tests.app.conftest import Bridge, MakeBridge, receiver_settings, sample
from tests.deploy.toolbox import find_tool
from tests.kafka_fixtures import free_ports
from tests.prometheus import running_prometheus

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
STREAM_ALERTS = (
    "AlmBridgeAccountSilent",
    "AlmBridgeReceiverOnlyRefusing",
    "AlmBridgeEventsLate",
    "AlmBridgeCanaryFailing",
)


def _fast_rules(folder: Path) -> Path:
    """The stream alerts of the shipped rules, their durations shortened to seconds."""
    rules = yaml.safe_load(ALERTS.read_text())
    chosen = []
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] in STREAM_ALERTS:
            rule["for"] = "0s"
            rule["expr"] = re.sub(r"\[(10|15)m\]", "[20s]", rule["expr"])
            # Canaries stop counting as recent after 3 s instead of 30 minutes.
            rule["expr"] = rule["expr"].replace("> 1800", "> 3")
            chosen.append(rule)
    assert [r["alert"] for r in chosen] == list(STREAM_ALERTS)
    path = folder / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "fast", "rules": chosen}]}))
    return path


@pytest.fixture
async def watched(
    make_offline_bridge: MakeBridge, tmp_path: Path
) -> AsyncIterator[tuple[Bridge, str]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    receivers = [
        # Expects a batch every 2 s from account 1234.
        receiver_settings(
            prefix, accounts=[1234], liveness=LivenessSettings(max_silence_seconds=2)
        ),
        # Expects nothing: its silence raises nothing.
        receiver_settings(prefix, name="quiet", liveness=LivenessSettings(max_silence_seconds=0)),
        # ALM delivers its events 20 minutes after they happened.
        receiver_settings(prefix, name="late"),
        # ALM was given a new secret that this receiver does not have.
        receiver_settings(
            prefix,
            name="rotated",
            auth=AuthSettings(method="hmac", secrets=[SecretStr("a-secret-alm-no-longer-has")]),
        ),
    ]
    bridge = await make_offline_bridge(receivers=receivers, prefix=prefix)
    target = f"127.0.0.1:{bridge.client.server.port}"
    async with running_prometheus(
        find_tool("prometheus"),
        free_ports(1)[0],
        tmp_path,
        target,
        rule_files=[_fast_rules(tmp_path)],
    ) as url:
        yield bridge, url


async def _firing(session: aiohttp.ClientSession, base: str) -> list[dict[str, str]]:
    try:
        async with session.get(f"{base}/api/v1/alerts") as response:
            body = orjson.loads(await response.read())
    except (aiohttp.ClientError, orjson.JSONDecodeError):
        return []  # not up yet
    return [a["labels"] for a in body["data"]["alerts"] if a["state"] == "firing"]


def _canary() -> bytes:
    return canary_batch(1234, f"canary-{uuid.uuid4()}", datetime.now(UTC))


def _aged(minutes: float) -> bytes:
    """The enrollment sample with new event ids and a time ``minutes`` ago."""
    batch = json.loads(sample("enrollment-batch"))
    when = datetime.now(UTC) - timedelta(minutes=minutes)
    for event in batch["events"]:
        event["eventId"] = str(uuid.uuid4())
        event["timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(batch).encode()


@pytest.mark.timeout(120)
async def test_silence_a_one_sided_rotation_and_late_events_each_raise_their_alert(
    watched: tuple[Bridge, str],
) -> None:
    bridge, prometheus = watched
    assert (await bridge.post(_aged(0))).status == 200  # then account 1234 falls silent
    assert (await bridge.post(_aged(0), receiver="quiet")).status == 200
    # One canary gets through the "public URL" of receiver quiet, then the path breaks.
    assert (await bridge.post(_canary(), receiver="quiet")).status == 200
    wanted = {
        ("AlmBridgeAccountSilent", "alm", "1234"),
        ("AlmBridgeReceiverOnlyRefusing", "rotated", ""),
        ("AlmBridgeEventsLate", "late", ""),
        ("AlmBridgeCanaryFailing", "quiet", ""),
    }
    found: set[tuple[str, str, str]] = set()
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    async with aiohttp.ClientSession() as session:
        while not wanted <= found and loop.time() < deadline:
            # ALM keeps retrying with the secret the receiver does not have.
            assert (await bridge.post(_aged(0), receiver="rotated")).status == 401
            assert (await bridge.post(_aged(20), receiver="late")).status == 200
            seen = await _firing(session, prometheus)
            found = {(a["alertname"], a["receiver"], a.get("account", "")) for a in seen}
            await asyncio.sleep(1)

    assert wanted <= found, seen
    silent = [a for a in seen if a["alertname"] == "AlmBridgeAccountSilent"]
    assert not [a for a in silent if a["receiver"] == "quiet"], "an expectation of 0 fired"
    canaries = [a for a in seen if a["alertname"] == "AlmBridgeCanaryFailing"]
    assert [a["receiver"] for a in canaries] == ["quiet"], "only a receiver that had canaries"
    assert (
        bridge.metric("almbridge_last_accepted_timestamp_seconds", receiver="alm", account="1234")
        > 0
    )
    assert bridge.metric("almbridge_receiver_max_silence_seconds", receiver="alm") == 2
    late_elsewhere = [
        a for a in seen if a["alertname"] == "AlmBridgeEventsLate" and a["receiver"] != "late"
    ]
    assert not late_elsewhere, late_elsewhere
    young = bridge.metric(
        "almbridge_event_lag_seconds_bucket", receiver="late", family="enrollment", le="600.0"
    )
    assert young == 0, "events 20 minutes old were measured as younger"
    on_time = bridge.metric(
        "almbridge_event_lag_seconds_bucket", receiver="alm", family="enrollment", le="60.0"
    )
    assert on_time == 2, "events just made were measured as older than a minute"
